"""What thinking cost, everywhere a user reads results: RunView, `harness show`, `harness suites show`,
`harness report` (with its model card and qualitative examples), the leaderboard site, the class config's
pinned reasoning mode and the DataFrames. Every case reads real runs made with replay files of Qwen3-style
texts: one closed `<think>` block, one that never closed (no answer: scored 0 though its thinking holds the
right number), one without thinking."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import harness as api
from harness.errors import UsageError
from harness.reasoning import ReasoningSpec
from harness.runs.catalog import RunView, build_catalog, load_run, load_runs
from harness.suite import SuiteOptions
from tests.conftest import cli_env
from tests.conftest import harness as run_cli

THINK = SuiteOptions(reasoning=ReasoningSpec("think-tags"))
CLOSED = "<think>16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.</think>The answer is 18."
UNCLOSED = "<think>Blue 2 bolts, white half of that: 1. Total 2 + 1 = 3. The answer is 3"
PLAIN = "The answer is 5."
NO_ANSWER_NOTE = "(none: ended inside reasoning)"


@dataclass(frozen=True)
class Boards:
    runs: Path  # both reasoning runs (parent and child) and a run without reasoning
    parent: Path  # run folders
    child: Path
    plain: Path
    ids: list[str]


def _replay(path: Path, texts: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sample_id": k, "text": v}) + "\n" for k, v in texts.items()))
    return path


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Boards:
    from harness.data import DataSource
    from suites import get_suite

    tmp = tmp_path_factory.mktemp("reasoning-display")
    ids = [s.id for s in get_suite("gsm8k").load(DataSource(data_dir), 3).samples]  # targets 18, 3, 70000
    parent = _replay(tmp / "parent.jsonl", dict(zip(ids, (CLOSED, UNCLOSED, PLAIN), strict=True)))
    child_texts = ("<think>Maybe 17?</think>The answer is 17.", "<think>2 + 1</think>The answer is 3.", PLAIN)
    child = _replay(tmp / "child.jsonl", dict(zip(ids, child_texts, strict=True)))
    runs = tmp / "runs"
    made = [
        api.evaluate(
            f"replay:{f}", "gsm8k", limit=3, runs=runs, data_dir=data_dir, scoring=THINK, progress=False
        )
        for f in (parent, child)
    ]
    same_texts = _replay(tmp / "plain.jsonl", dict(zip(ids, (CLOSED, UNCLOSED, PLAIN), strict=True)))
    plain = api.evaluate(
        f"replay:{same_texts}", "gsm8k", limit=3, runs=runs, data_dir=data_dir, progress=False
    )
    return Boards(runs, made[0].runs[0].run_dir, made[1].runs[0].run_dir, plain.runs[0].run_dir, ids)


# -- 1. RunView ----------------------------------------------------------------------------------


def test_run_view_reads_the_reasoning_block(boards: Boards) -> None:
    run = load_run(boards.parent)
    assert run.reasoning is not None
    assert run.reasoning.mode == "think-tags <think>...</think>"
    assert run.reasoning.ended_inside.value == pytest.approx(1 / 3) and run.reasoning.ended_inside.n == 3
    assert run.reasoning.unterminated == (boards.ids[1],)
    assert run.reasoning.token_count == "characters"  # a replay file counts no tokens
    thinking = [len("16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars."), len(UNCLOSED) - len("<think>"), 0]
    assert run.reasoning.reasoning_chars.mean == round(sum(thinking) / 3, 1)
    assert run.metrics[run.primary].value == pytest.approx(1 / 3)  # only the closed answer scored
    assert load_run(boards.plain).reasoning is None


@pytest.mark.parametrize(
    "block",
    [5, {"ended_inside_reasoning": {"value": "a third"}}, {"ended_inside_reasoning": {"value": 2.0, "n": 3}},
     {"ended_inside_reasoning": {"value": 0.5, "n": "three"}}],
)  # fmt: skip
def test_a_damaged_reasoning_block_reads_as_none_and_the_run_still_reads(
    boards: Boards, tmp_path: Path, block: Any
) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(boards.parent, copy)
    payload = json.loads((copy / "metrics.json").read_text())
    payload["reasoning"] = block
    (copy / "metrics.json").write_text(json.dumps(payload))
    run = load_run(copy)
    assert run.reasoning is None
    assert run.metrics[run.primary].value == pytest.approx(1 / 3)


# -- 2. harness show ---------------------------------------------------------------------------


def test_show_prints_the_reasoning_line_the_unterminated_ids_and_the_parts(boards: Boards) -> None:
    proc = run_cli("show", str(boards.parent), "--samples", "3", env=cli_env())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    summary = load_run(boards.parent).reasoning
    assert summary is not None and summary.describe() in out
    assert "ended inside reasoning 33.3% (1 of 3)" in out
    assert f"unterminated (no answer, scored 0): {boards.ids[1]}\n" in out
    assert "  thinking: 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n  answer:   The answer is 18.\n" in out
    assert f"  thinking: {UNCLOSED.removeprefix('<think>')}\n  answer:   {NO_ANSWER_NOTE}\n" in out
    assert "  thinking: (none)\n  answer:   The answer is 5.\n" in out
    assert "<think>" not in out.split("--- ")[1]  # the samples show parts, not the raw text


def test_show_without_reasoning_prints_the_response_whole(boards: Boards) -> None:
    proc = run_cli("show", str(boards.plain), "--samples", "2", env=cli_env())
    assert proc.returncode == 0, proc.stderr
    assert "ended inside reasoning" not in proc.stdout and "thinking:" not in proc.stdout
    assert f"  response: {CLOSED}\n" in proc.stdout


# -- 3. harness suites show --------------------------------------------------------------------


def test_suites_show_prints_the_default_thinking_budget() -> None:
    from suites import get_suite

    budget = get_suite("mbpp").thinking_budget
    proc = run_cli("suites", "show", "mbpp")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"thinking budget: {budget} tokens (with --reasoning think-tags|auto|field: added to max_tokens"
        in (proc.stdout)
    )


# -- 4. harness report -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(boards: Boards, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    pytest.importorskip("jinja2", reason="the site extra is not installed")
    out = tmp_path_factory.mktemp("report-out")
    env = cli_env(HARNESS_RUNS_DIR=str(boards.runs))
    proc = run_cli("report", str(boards.parent), str(boards.child), "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_report_shows_what_thinking_cost_beside_each_suite(boards: Boards, report: tuple[str, str]) -> None:
    md, page = report
    parent, child = load_run(boards.parent).reasoning, load_run(boards.child).reasoning
    assert parent is not None and child is not None
    summary = md[md.index("## Summary") : md.index("## Metrics")]
    mean = f"{parent.reasoning_chars.mean:g}"
    assert f"n=3; ended inside reasoning 33.3%; thinking {mean} characters (mean) |" in summary
    assert "n=3; ended inside reasoning 0.0%; thinking" in summary
    metrics = md[md.index("## Metrics") : md.index("## Plots")]
    assert "| ended inside reasoning (no answer, scored 0) | 33.3 | [6.1, 79.2] | 3 |" in metrics
    from reports.render import md_line

    assert f"\n{md_line(parent.describe())}\n" in metrics and f"\n{md_line(child.describe())}\n" in metrics
    assert f"Ended inside reasoning: {boards.ids[1]}" in metrics
    assert (
        '<tr class="reasoning"><td>ended inside reasoning (no answer, scored 0)</td><td class="num">33.3</td>'
        in page
    )
    assert f'<p class="reasoning">{parent.describe().replace("<", "&lt;").replace(">", "&gt;")}</p>' in page


def test_report_model_card_names_the_reasoning_mode(report: tuple[str, str]) -> None:
    md, page = report
    assert "- Reasoning mode: think-tags &lt;think&gt;...&lt;/think&gt; (thinking budget 2048 tokens)\n" in md
    assert (
        '<li id="card-reasoning">Reasoning mode: think-tags &lt;think&gt;...&lt;/think&gt; (thinking budget 2048 tokens)</li>'
        in page
    )
    assert "max_tokens=2560 (thinking_budget=2048 of them)" in md


def test_report_examples_show_the_answer_and_the_thinking_apart(
    boards: Boards, report: tuple[str, str]
) -> None:
    from reports.qualitative import NO_ANSWER

    md, page = report
    win = md[md.index(f"**Win: {boards.ids[1]}**") :]
    win = win[: win.index("**Loss")] if "**Loss" in win else win
    thinking = UNCLOSED.removeprefix("<think>")
    assert f"thinking ({len(thinking)} characters):\n\n```text\n{thinking}\n```" in win
    assert f"answer:\n\n```text\n{NO_ANSWER}\n```" in win  # the parent's side: no answer
    assert "answer (flex=3, strict=3):\n\n```text\nThe answer is 3.\n```" in win  # the child's
    assert "<think>" not in win
    assert f'<details class="thinking"><summary>thinking ({len(thinking)} characters)</summary>' in page
    assert "&lt;think&gt;" not in page[page.index('data-kind="win"') :].split("</div>\n</div>")[0]


def test_cost_per_point_counts_thinking_tokens(boards: Boards, tmp_path: Path) -> None:
    """Every adapter reports completion_tokens as all sampled tokens, thinking included (Tinker: the sampled
    sequences' lengths; OpenAI-compatible servers: usage.completion_tokens, of which reasoning_tokens are a
    part), and cost_usd prices them; the report's cost per point divides that cost by the primary's points."""
    import shutil

    from harness.pricing import Price
    from harness.types import Completion
    from reports.model_card import _run_settings

    price = Price(prompt=0.195, sample=0.60)
    thinking, answer, prompt = 900, 100, 50
    completion = Completion(
        texts=("<think>...</think>18",), finish_reasons=("stop",), prompt_tokens=prompt,
        completion_tokens=thinking + answer, reasoning_tokens=thinking,
        cost_usd=price.cost(prompt, thinking + answer),
    )  # fmt: skip
    assert completion.cost_usd == pytest.approx((prompt * 0.195 + (thinking + answer) * 0.60) / 1e6)
    assert completion.cost_usd > price.cost(prompt, answer)  # the thinking is paid for
    copy = tmp_path / "run"
    shutil.copytree(boards.parent, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["usage"] = {"prompt_tokens": 3 * prompt, "completion_tokens": 3 * (thinking + answer),
                         "cost_usd": 3 * completion.cost_usd}  # fmt: skip
    (copy / "manifest.json").write_text(json.dumps(manifest))
    settings = _run_settings("parent", load_run(copy))
    points = 100 / 3  # exact_match_flex 1 of 3
    assert settings.cost_per_point == pytest.approx(3 * completion.cost_usd / points, rel=1e-5)
    assert _run_settings("parent", load_run(boards.parent)).cost_per_point is None  # a replay costs nothing


# -- 5. leaderboard site -----------------------------------------------------------------------


def _global(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text[text.index("=") + 1 : text.rstrip().rindex(";")])


@pytest.fixture(scope="module")
def site(boards: Boards, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    pytest.importorskip("jinja2", reason="the site extra is not installed")
    from leaderboard.site import build_site

    out = tmp_path_factory.mktemp("site") / "site"
    build_site([boards.runs], out, Path("none"))
    return out, _global(out / "data" / "index.js")


def _cell(index: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    reference = load_run(run_dir).manifest.checkpoint
    rows = [r for r in index["rows"] if r["reference"] == reference]
    assert len(rows) == 1
    return dict(rows[0]["cells"]["gsm8k"])


def test_site_cells_carry_the_ended_inside_share_and_mean_thinking(
    boards: Boards, site: tuple[Path, dict[str, Any]]
) -> None:
    _, index = site
    parent = load_run(boards.parent).reasoning
    assert parent is not None
    cell = _cell(index, boards.parent)
    assert cell["reasoning"] == {
        "mode": "think-tags <think>...</think>", "ended": pytest.approx(1 / 3, abs=1e-6), "n": 3,
        "thinking": parent.reasoning_chars.mean, "unit": "characters",
    }  # fmt: skip


def test_site_pages_show_the_reasoning_line_and_split_samples(
    boards: Boards, site: tuple[Path, dict[str, Any]]
) -> None:
    out, index = site
    reference = load_run(boards.parent).manifest.checkpoint
    row = next(r for r in index["rows"] if r["reference"] == reference)
    page = (out / row["href"]).read_text()
    summary = load_run(boards.parent).reasoning
    assert summary is not None
    escaped = summary.describe().replace("<", "&lt;").replace(">", "&gt;")
    assert f'<p class="reasoning" id="reasoning-gsm8k">{escaped}</p>' in page
    assert f'#sample={boards.ids[1]}">{boards.ids[1]}</a>' in page
    run_data = _global(out / row["cells"]["gsm8k"]["run"].replace(".html", ".js"))
    by_id = {s["id"]: s for s in run_data["samples"]}
    assert by_id[boards.ids[0]]["responses"] == ["The answer is 18."]
    assert by_id[boards.ids[0]]["thinking"] == ["16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars."]
    assert by_id[boards.ids[1]]["responses"] == [None]  # ended inside its thinking: no answer
    assert by_id[boards.ids[1]]["thinking"] == [UNCLOSED.removeprefix("<think>")]
    assert escaped in (out / row["cells"]["gsm8k"]["run"]).read_text()
    plain = next(r for r in index["rows"] if r["cells"]["gsm8k"]["run"] != row["cells"]["gsm8k"]["run"]
                 and "reasoning" not in r["cells"]["gsm8k"])  # fmt: skip
    plain_data = _global(out / plain["cells"]["gsm8k"]["run"].replace(".html", ".js"))
    assert all("thinking" not in s for s in plain_data["samples"])
    js = (Path(__file__).resolve().parents[2] / "leaderboard" / "static" / "site.js").read_text()
    assert 'el("details", { "class": "field thinking" })' in js  # the thinking is collapsed


def test_a_rebuild_after_a_reasoning_block_changes_rewrites_that_page(boards: Boards, tmp_path: Path) -> None:
    """The reasoning block lives in metrics.json, whose stamp is in the checkpoint's fingerprint."""
    pytest.importorskip("jinja2", reason="the site extra is not installed")
    import shutil

    from leaderboard.site import build_site

    runs = tmp_path / "runs"
    shutil.copytree(boards.runs, runs)
    out = tmp_path / "site"
    build_site([runs], out, Path("none"))
    metrics = next(p for p in runs.rglob("metrics.json") if load_run(p.parent).reasoning is not None)
    payload = json.loads(metrics.read_text())
    payload["reasoning"]["unterminated"] = ["an-edited-id"]
    metrics.write_text(json.dumps(payload, indent=2))
    build_site([runs], out, Path("none"))
    pages = [p.read_text() for p in (out / "checkpoints").glob("*.html")]
    assert any("an-edited-id" in page for page in pages)


# -- 5/6. class config: differences named readably, reasoning pinned ------------------------------


def _config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _qualifies(runs: list[RunView], config_path: Path) -> dict[str, list[str]]:
    from leaderboard.class_config import expected_columns, load_class_config, row_reasons

    config = load_class_config(config_path)
    columns = expected_columns(config)
    catalog = build_catalog(runs, {s: c.key for s, c in columns.items()})
    return {c.reference: row_reasons(c, columns) for c in catalog.checkpoints}


def test_a_run_under_another_reasoning_mode_is_named_readably(boards: Boards, tmp_path: Path) -> None:
    runs = load_runs([boards.runs])
    reasons = _qualifies(runs, _config(tmp_path / "c.yaml", "name: x\nsuites: [gsm8k]\nlimit: 3\n"))
    parent = load_run(boards.parent).manifest.checkpoint
    assert reasons[parent] == [
        "gsm8k: run under other settings: max_tokens 2560 (class: 512); thinking_budget 2048 (class: none); "
        "reasoning think-tags (class: none)"
    ]


def test_a_class_config_pins_reasoning_and_its_runs_qualify(boards: Boards, tmp_path: Path) -> None:
    from leaderboard.class_config import class_eval, load_class_config

    path = _config(tmp_path / "c.yaml", "name: x\nsuites: [gsm8k]\nlimit: 3\nreasoning: {mode: think-tags}\n")
    runs = load_runs([boards.runs])
    reasons = _qualifies(runs, path)
    parent, child = (load_run(p).manifest.checkpoint for p in (boards.parent, boards.child))
    assert reasons[parent] == [] and reasons[child] == []
    plain = load_run(boards.plain).manifest.checkpoint
    assert reasons[plain] == [
        "gsm8k: run under other settings: max_tokens 512 (class: 2560); thinking_budget none (class: 2048); "
        "reasoning none (class: think-tags)"
    ]
    config = load_class_config(path)
    plan = class_eval(config, None, None, {}, None)
    assert plan.reasoning == ReasoningSpec("think-tags") and "thinking_budget" not in plan.generation
    assert config.describe()["reasoning"] == {
        "mode": "think-tags <think>...</think>",
        "thinking_budget": None,
    }
    # Other tags or another budget are other settings: named as such.
    tags = _config(tmp_path / "t.yaml", "name: x\nsuites: [gsm8k]\nlimit: 3\n"
                   "reasoning: {mode: think-tags, open_tag: '<reason>', close_tag: '</reason>', thinking_budget: 512}\n")  # fmt: skip
    assert _qualifies(runs, tags)[parent] == [
        "gsm8k: run under other settings: max_tokens 2560 (class: 1024); thinking_budget 2048 (class: 512); "
        "reasoning think-tags (class: think-tags <reason>...</reason>)"
    ]


def test_harness_eval_under_a_reasoning_class_makes_qualifying_runs(
    boards: Boards, tmp_path: Path, data_dir: Path
) -> None:
    from harness.api.evaluate import Generation
    from leaderboard.class_config import class_eval, load_class_config

    path = _config(tmp_path / "c.yaml", "name: x\nsuites: [gsm8k]\nlimit: 2\n"
                   "reasoning: {mode: think-tags, thinking_budget: 256}\n")  # fmt: skip
    plan = class_eval(load_class_config(path), None, None, {}, None)
    assert plan.generation == {"thinking_budget": 256}
    replay = next(boards.runs.parent.glob("parent.jsonl"))
    api.evaluate(
        f"replay:{replay}", list(plan.suites), limit=plan.limit, runs=tmp_path / "runs", data_dir=data_dir,
        generation=Generation(**plan.generation), scoring=SuiteOptions(reasoning=plan.reasoning), progress=False,
    )  # fmt: skip
    assert list(_qualifies(load_runs([tmp_path / "runs"]), path).values()) == [[]]


def test_class_eval_refuses_another_reasoning_mode(tmp_path: Path) -> None:
    from leaderboard.class_config import class_eval, load_class_config

    config = load_class_config(
        _config(tmp_path / "c.yaml", "name: x\nsuites: [gsm8k]\nreasoning: {mode: field}\n")
    )
    with pytest.raises(
        UsageError, match=r"--reasoning think-tags <think>...</think> differs from the class config"
    ):
        class_eval(config, None, None, {}, None, reasoning=ReasoningSpec("think-tags"))
    budget = _config(
        tmp_path / "b.yaml", "name: x\nsuites: [gsm8k]\nreasoning: {mode: auto, thinking_budget: 32}\n"
    )
    with pytest.raises(UsageError, match=r"--thinking-budget 64 differs"):
        class_eval(load_class_config(budget), None, None, {"thinking_budget": 64}, None)
    assert (
        class_eval(config, None, None, {}, None, reasoning=ReasoningSpec("field")).reasoning.mode == "field"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("reasoning: {mode: thinking}", r"'reasoning.mode' must be one of none, think-tags, auto, field"),
        ("reasoning: think-tags", r"'reasoning' must be a mapping"),
        (
            "reasoning: {mode: think-tags, budget: 5}",
            r"'reasoning.budget' is not a key \(known: mode, open_tag",
        ),
        ("reasoning: {mode: field, open_tag: '<t>'}", r"'reasoning.open_tag' is a string, and only for mode"),
        (
            "reasoning: {mode: think-tags, thinking_budget: -1}",
            r"'reasoning.thinking_budget' must be a non-negative",
        ),
        (
            "reasoning: {mode: none, thinking_budget: 5}",
            r"'reasoning.thinking_budget' needs a reasoning mode",
        ),
        ("reasoning: {mode: think-tags, open_tag: '<t>', close_tag: '<t>'}", r"'reasoning' is not usable: "),
    ],
)
def test_a_bad_reasoning_key_names_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    from leaderboard.class_config import load_class_config

    path = _config(tmp_path / "c.yaml", f"name: x\nsuites: [gsm8k]\n{body}\n")
    with pytest.raises(UsageError, match=re.escape(f"The class config {path}: ") + message):
        load_class_config(path)


# -- 7. DataFrames -----------------------------------------------------------------------------


def test_frames_carry_the_parts_and_the_ended_inside_share(boards: Boards) -> None:
    pandas = pytest.importorskip("pandas")
    from harness.api.frames import metrics_frame, samples_frame

    runs = [load_run(boards.parent), load_run(boards.plain)]
    samples = samples_frame(runs[:1]).set_index("sample_id")
    assert samples.loc[boards.ids[0], "answer"] == "The answer is 18."
    assert samples.loc[boards.ids[0], "reasoning"] == "16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars."
    assert samples.loc[boards.ids[1], "answer"] is None or pandas.isna(samples.loc[boards.ids[1], "answer"])
    assert samples.loc[boards.ids[0], "response"] == CLOSED  # the raw text stays
    assert "answer" not in samples_frame(runs[1:]).columns
    metrics = metrics_frame(runs)
    ended = metrics[metrics.metric == "ended_inside_reasoning"]
    assert len(ended) == 1 and ended.iloc[0].value == pytest.approx(1 / 3) and not ended.iloc[0].primary
    assert ended.iloc[0].run_dir == str(boards.parent)


def test_tinker_prices_the_thinking_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On Tinker (the `qwen3` renderer, thinking on) completion_tokens are every sampled token, the thinking
    the renderer takes out of the text included, and cost_usd prices all of them."""
    pytest.importorskip("tinker")
    pytest.importorskip("gguf")
    import asyncio

    from transformers import AutoTokenizer

    from adapters.llama_cpp import embedded_gguf_path
    from adapters.tinker import TinkerAdapter
    from adapters.tinker_renderers import RENDERER_ENV, TOKENIZER_ENV
    from harness.checkpoints import TinkerBaseRef, parse_checkpoint
    from harness.pricing import load_price_table
    from harness.types import GenerationSettings, Message, Request
    from tests.support.tinker_standin import StandinSamplingClient, StandinServiceClient, standin_factory

    gguf = embedded_gguf_path()
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    monkeypatch.setenv("TINKER_API_KEY", "tml-standin-not-a-real-key")
    monkeypatch.setenv(TOKENIZER_ENV, str(tmp_path))
    monkeypatch.setenv(RENDERER_ENV, "qwen3")  # SmolLM2 speaks ChatML, like Qwen3
    sampled = "<think>\nTwo and two: add them, 2 + 2 = 4.\n</think>\n\nIt is 4."
    service = StandinServiceClient(StandinSamplingClient("Qwen/Qwen3-8B", tokenizer, lambda p, i: sampled))
    ref = parse_checkpoint("tinker-base:Qwen/Qwen3-8B")
    assert isinstance(ref, TinkerBaseRef)
    prices = load_price_table(None)
    adapter = TinkerAdapter(ref, prices=prices, service_factory=standin_factory(service))
    request = Request("s1", GenerationSettings(max_tokens=256), messages=(Message("user", "2+2?"),))

    async def go() -> Any:
        try:
            return (await adapter.generate([request]))[0]
        finally:
            await adapter.aclose()

    completion = asyncio.run(go())
    every_token = len(tokenizer.encode(sampled, add_special_tokens=False)) + 1  # + the end-of-turn token
    answer_only = len(tokenizer.encode("It is 4.", add_special_tokens=False)) + 1
    assert completion.completion_tokens == every_token > answer_only + 10
    price = prices.lookup("Qwen/Qwen3-8B")
    assert price is not None
    assert completion.cost_usd == pytest.approx(price.cost(completion.prompt_tokens, every_token))
