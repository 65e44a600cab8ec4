"""report.md renders as text in a CommonMark viewer: card values, model responses, extracted answers and
checkpoint references holding HTML, links, images or Markdown never become elements.

Two registered checkpoints (sft-x -> dpo-x) answer alice-synth puzzles through replay files; the child's
wrong answers box hostile markup (so it shows up in the extracted answers of the qualitative examples),
the parent's replay file has markup in its very path (so in the checkpoint reference), and the card file
fills every field with markup. report.md is rendered with markdown-it-py (CommonMark, raw HTML enabled as
on GitHub, plus GFM tables) when it is installed; the escaped text is checked either way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.data import DataSource
from reports.render import code, md, md_line
from suites import get_suite
from tests.conftest import cli_env, eval_json, harness

pytest.importorskip("jinja2", reason="the site extra is not installed")

IMG = "<img src=x onerror=alert(1)>"
IFRAME = "<iframe src=javascript:alert(2)></iframe>"
N = 6


def _render(markdown: str) -> str | None:
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return None
    return str(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))


@pytest.fixture(scope="module")
def report_md(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> str:
    tmp = tmp_path_factory.mktemp("hostile-report")
    suite = get_suite("alice-synth")
    samples = suite.load(DataSource(data_dir), limit=N).samples
    parent = tmp / f"parent {IMG}.jsonl"  # markup in the path, so in the checkpoint reference
    child = tmp / "child.jsonl"
    parent.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": suite.gold_response(s)}) + "\n" for s in samples)
    )
    child.write_text(
        "".join(
            json.dumps(
                {"sample_id": s.id, "text": suite.gold_response(s) if i % 2 else f"\\boxed{{{IMG}{IFRAME}}}"}
            )
            + "\n"
            for i, s in enumerate(samples)
        )
    )
    runs = tmp / "runs"
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    for args in (
        ("sft-x", f"replay:{parent}", "--stage", "sft", "--base-model", "base"),
        ("dpo-x", f"replay:{child}", "--stage", "dpo", "--parent", "sft-x"),
    ):
        added = harness("checkpoints", "add", *args, env=env)
        assert added.returncode == 0, added.stderr
    for ref in ("sft:latest", "dpo:latest"):
        eval_json("--checkpoint", ref, "--suite", "alice-synth", "--limit", str(N), env=env)
    card = tmp / "card.json"
    card.write_text(
        json.dumps({
            "training_data": IMG,
            "intended_use": f"Research {IFRAME} only",
            "limitations": ["# not a heading", "`tick` <b>bold</b> & more", "[click](javascript:alert(3))",
                            "![pixel](http://tracker.example/p.png)", "1. not a list"],
            "license": "<script>alert(4)</script>",
            "notes": "a | b\n<details open ontoggle=alert(5)>x</details>\n    indented <img src=y>",
        })
    )  # fmt: skip
    out = tmp / "report"
    proc = harness("report", "sft:latest", "dpo:latest", "--out", str(out), "--card", str(card), env=env)
    assert proc.returncode == 0, proc.stderr
    return (out / "report.md").read_text(encoding="utf-8")


def test_no_raw_html_outside_code(report_md: str) -> None:
    # Outside fenced blocks and code spans, report.md holds no '<' at all: every one is an entity.
    prose = re.sub(r"^(`{3,})text\n.*?\n\1$", "", report_md, flags=re.S | re.M)
    prose = re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "", prose)
    assert "<" not in prose, [line for line in prose.splitlines() if "<" in line][:5]
    assert "&lt;img src=x onerror=alert(1)&gt;" in report_md  # the card value and the extracted answers
    assert "&lt;iframe src=javascript:alert(2)&gt;&lt;/iframe&gt;" in report_md
    assert "\\[click\\](javascript:alert(3))" in report_md and "!\\[pixel\\]" in report_md
    assert "- \\# not a heading" in report_md and "- 1\\. not a list" in report_md


def test_commonmark_renders_text_not_elements(report_md: str) -> None:
    page = _render(report_md)
    if page is None:
        pytest.skip("markdown-it-py is not installed (the escaped text is checked above)")
    for tag in ("<img", "<iframe", "<script", "<details", "<a ", "<b>"):
        assert tag not in page, (tag, [line for line in page.splitlines() if tag in line][:3])
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown as text
    assert "<h3>Training data (from the card file)</h3>" in page
    assert "<h1>not a heading" not in page and "# not a heading" in page
    assert page.count("<table>") >= 5  # the tables still render (cells with '|' stay in their column)
    # Model responses stay inside code blocks, checkpoint references inside code spans.
    assert (
        f'<pre><code class="language-text">\\boxed{{{IMG.replace("<", "&lt;").replace(">", "&gt;")}' in page
    )
    assert re.search(r"<code>replay:[^<]*parent &lt;img src=x onerror=alert\(1\)&gt;\.jsonl</code>", page)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        (IMG, "&lt;img src=x onerror=alert(1)&gt;"),
        ("a & b", "a &amp; b"),
        ("x | y", "x \\| y"),
        ("`code`", "\\`code\\`"),
        ("[a](b)", "\\[a\\](b)"),
        ("*em* and _em_ but snake_case", "\\*em\\* and \\_em\\_ but snake_case"),
        ("two\nlines\r\nhere", "two lines here"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_md_escapes_inline_text(text: str, escaped: str) -> None:
    assert md(text) == escaped


def test_md_line_and_code_spans() -> None:
    assert md_line("# title") == "\\# title" and md_line("  - item") == "\\- item"
    assert md_line("12) step") == "12\\) step" and md_line("plain") == "plain"
    assert code("a`b") == "``a`b``" and code("`x`") == "`` `x` ``"
    assert code("p|q", in_table=True) == "`p\\|q`" and code("") == ""
