"""`harness report`: real runs of registered checkpoints (replayed responses with known outcomes) turned
into report.md and report.html; the numbers, the comparison, the examples, escaping, the model card and
the errors are checked against what the replay files make true."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.runs.store import SampleRecord
from harness.types import Completion
from tests.conftest import cli_env, eval_json, harness

pytest.importorskip("jinja2", reason="the site extra is not installed")

HOSTILE = "<script>alert(1)</script>"
N = 6
SFT_RIGHT = {0, 1, 2, 3}  # GSM8K samples (by position) the SFT replay answers correctly
DPO_RIGHT = {1, 2, 3, 4, 5}  # ... and the DPO replay: wins 4, 5; loss 0


@dataclass(frozen=True)
class Setup:
    runs: Path
    env: dict[str, str]
    gsm8k_ids: list[str]
    safety_ids: list[str]
    safe_prompt_ids: list[str]  # XSTest safe prompts: the DPO replay over-refuses them
    sft_replay: Path


def _replay(path: Path, rows: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sample_id": k, "text": v}) + "\n" for k, v in rows.items()))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Setup:
    from harness.data import DataSource
    from suites import get_suite
    from suites.safety import CANNED_REFUSAL

    tmp = tmp_path_factory.mktemp("report")
    gsm8k, safety = get_suite("gsm8k"), get_suite("safety")
    g = gsm8k.load(DataSource(data_dir), limit=N).samples
    s = safety.load(DataSource(data_dir), limit=N).samples
    gold = {x.id: gsm8k.gold_response(x) or "" for x in g}
    wrong = {x.id: "I think the answer is 123456789." for x in g}
    wrong[g[0].id] = f"{HOSTILE}<img src=x onerror=alert(2)> The answer is 123456789."
    sft = {x.id: gold[x.id] if i in SFT_RIGHT else wrong[x.id] for i, x in enumerate(g)}
    dpo = {x.id: gold[x.id] if i in DPO_RIGHT else wrong[x.id] for i, x in enumerate(g)}
    sft |= {x.id: safety.gold_response(x) or "" for x in s}  # every safety sample safe
    dpo |= {x.id: CANNED_REFUSAL for x in s}  # refuses everything: over-refusal on safe prompts
    sft_replay = _replay(tmp / "sft.jsonl", sft)
    dpo_replay = _replay(tmp / "dpo.jsonl", dpo)

    runs = tmp / "runs"
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    for args in (
        ("base", "embedded", "--stage", "base"),
        ("sft-1", f"replay:{sft_replay}", "--stage", "sft", "--parent", "base", "--seed", "7"),
        ("dpo-1", f"replay:{dpo_replay}", "--stage", "dpo", "--parent", "sft:latest"),
    ):
        added = harness("checkpoints", "add", *args, env=env)
        assert added.returncode == 0, added.stderr
    for ref in ("sft:latest", "dpo:latest"):
        eval_json("--checkpoint", ref, "--suite", "gsm8k", "--suite", "safety", "--limit", str(N), env=env)
    safe_ids = [x.id for x in s if x.metadata["subset"] == "xstest_safe"]
    assert safe_ids  # the interleaved prefix holds every stratum
    return Setup(runs, env, [x.id for x in g], [x.id for x in s], safe_ids, sft_replay)


@pytest.fixture(scope="module")
def report(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-out")
    card = out.parent / "card.yaml"
    card.write_text(
        "training_data: Tulu 3 SFT mixture, 10k examples\n"
        "intended_use: Course project; research on preference tuning\n"
        "limitations:\n  - English only\n  - 135M parameters\n"
        "license: Apache-2.0\n"
    )
    proc = harness(
        "report", "sft:latest", "dpo:latest", "--out", str(out), "--card", str(card), env=setup.env
    )
    assert proc.returncode == 0, proc.stderr
    assert "compared sft-1 -> dpo-1" in proc.stdout
    return out


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_report_files_and_metric_tables(report: Path) -> None:
    assert {p.name for p in report.iterdir()} == {
        "report.md",
        "report.html",
        "plotly.min.js",
        "safety_verdicts.csv",
    }
    assert (report / "plotly.min.js").stat().st_size > 1_000_000  # the real bundle, for offline use
    md = (report / "report.md").read_text()
    summary = _section(md, "## Summary", "## Metrics")
    # GSM8K 4/6 and 5/6 correct (Wilson intervals). Safety (stratified bootstrap, 2 samples per stratum,
    # each stratum constant): SFT all safe; DPO refuses all, so the XSTest-safe third is lost.
    # Safety at n = 6 (2 per stratum): the stratified Wilson interval, n* = 6, so Wilson at 6/6 and 4/6 (the
    # stratified bootstrap gave the zero-width [100.0, 100.0] and [66.7, 66.7] here).
    assert "| sft-1 | 66.7 [30.0, 90.3] n=6 | 100.0 [61.0, 100.0] n=6 |" in summary, summary
    assert "| dpo-1 | 83.3 [43.6, 97.0] n=6 | 66.7 [30.0, 90.3] n=6 |" in summary, summary
    assert "| exact_match_flex (primary) | 66.7 | [30.0, 90.3] | 6 |" in md
    page = (report / "report.html").read_text()
    assert '<script src="plotly.min.js"></script>' in page and "cdn" not in page.lower()
    assert page.count('class="plot"') == 4 and "see report.html" in md.lower()


def test_comparison_deltas_and_wins_losses(report: Path, setup: Setup) -> None:
    md = (report / "report.md").read_text()
    comparison = _section(md, "## Comparison: sft-1 -> dpo-1", "### Qualitative")
    assert "| gsm8k | exact_match_flex | 6 | 66.7 | 83.3 | +16.7 |" in comparison, comparison
    safety_row = next(line for line in comparison.splitlines() if line.startswith("| safety |"))
    assert "| 100.0 |" in safety_row and "| -" in safety_row  # refusing safe prompts costs safety
    ids = setup.gsm8k_ids
    wins = re.findall(r"\*\*Win: (\S+)\*\*", md)
    losses = re.findall(r"\*\*Loss: (\S+)\*\*", md)
    assert [w for w in wins if w.startswith("gsm8k")] == [ids[4], ids[5]]
    assert [x for x in losses if x.startswith("gsm8k")] == [ids[0]]
    assert [x for x in losses if not x.startswith("gsm8k")] == setup.safe_prompt_ids[:3]
    assert "2 win(s), 1 loss(es) of 6 paired samples" in md
    page = (report / "report.html").read_text()
    assert re.findall(r'data-kind="win" data-sample="(gsm8k[^"]+)"', page) == [ids[4], ids[5]]


def test_model_text_is_escaped(report: Path) -> None:
    page = (report / "report.html").read_text()
    assert HOSTILE not in page and "<img src=x" not in page
    assert html.escape(HOSTILE, quote=False) in page
    md = (report / "report.md").read_text()
    block = md[md.index(HOSTILE) - 200 : md.index(HOSTILE)]
    assert "```" in block  # inside a code fence, never raw Markdown/HTML


def test_lengths_refusals_and_verdicts(report: Path, setup: Setup) -> None:
    md = (report / "report.md").read_text()
    lengths = _section(md, "## Response lengths", "## Refusal")
    row = next(line for line in lengths.splitlines() if line.startswith("| safety | dpo-1 |"))
    refusal = "I'm sorry, but I can't help with that request."
    assert f"| 6 | {len(refusal)}.0 | {len(refusal)}.0 | n/a | n/a | 0.0% (0 of 6, max_tokens 512) |" in row
    refusals = _section(md, "### dpo-1: safety", "## Model card")
    assert "| over-refusal: XSTest safe refused (lower is better) | 100.0 |" in refusals
    n_safe = len(setup.safe_prompt_ids)
    assert f"| xstest_safe | compliance | {n_safe} | 0 | 0 |" in refusals
    csv_rows = (report / "safety_verdicts.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2 * N
    assert any(
        r.startswith(f"dpo-1,safety,refusal-heuristic,{setup.safe_prompt_ids[0]},xstest_safe,")
        and r.endswith(",refusal,compliance,0")
        for r in csv_rows
    )


def test_model_card_from_card_file_and_settings(report: Path) -> None:
    md = (report / "report.md").read_text()
    card = md[md.index("## Model card: dpo-1") :]
    assert "Lineage: base -> sft-1 -> dpo-1" in card
    assert "### Training data (from the card file)\n\nTulu 3 SFT mixture, 10k examples" in card
    assert "- English only\n- 135M parameters" in card and "### License (from the card file)" in card
    assert "NOT PROVIDED" not in card
    assert "gsm8k@" in card and "max_tokens=512, temperature=0.0" in card and "num_fewshot=8" in card
    assert re.search(r"`[0-9a-f]{64}`", card)  # data sha256
    page = (report / "report.html").read_text()
    assert 'class="placeholder"' not in page


def test_run_folders_and_placeholder_card(setup: Setup, tmp_path: Path) -> None:
    sft_folder = next(p for p in setup.runs.iterdir() if p.is_dir() and "sft" in p.name)
    proc = harness("report", str(sft_folder), "--out", str(tmp_path), env=setup.env)
    assert proc.returncode == 0, proc.stderr
    assert "model card: Training data, Intended use, Limitations not provided" in proc.stdout
    md = (tmp_path / "report.md").read_text()
    assert "## Comparison" not in md and "**NOT PROVIDED" in md
    assert md.count("| sft-1 |") >= 1 and "| dpo-1 |" not in md
    # A concrete reference finds the same checkpoint; a registry name too.
    for ref in (f"replay:{setup.sft_replay}", "sft-1"):
        again = harness("report", ref, "--out", str(tmp_path / "again"), env=setup.env)
        assert again.returncode == 0, again.stderr
        assert "report on 1 checkpoint(s): sft-1" in again.stdout


def test_reference_without_runs_lists_what_exists(setup: Setup, tmp_path: Path) -> None:
    no_runs = harness("report", "base:latest", "--out", str(tmp_path), env=setup.env)
    assert no_runs.returncode == 2
    assert "No runs of 'base:latest' (registered as base = embedded)" in no_runs.stderr
    assert "Checkpoints with runs under" in no_runs.stderr and "sft-1 = replay:" in no_runs.stderr
    unknown = harness("report", "rlvr:latest", "--out", str(tmp_path), env=setup.env)
    assert unknown.returncode == 2 and "dpo:latest -> dpo-1" in unknown.stderr
    bad_card = tmp_path / "card.json"
    bad_card.write_text("{not json")
    broken = harness("report", "sft-1", "--out", str(tmp_path), "--card", str(bad_card), env=setup.env)
    assert broken.returncode == 4 and "is not valid JSON" in broken.stderr
    assert not (tmp_path / "report.html").exists()


def test_registry_details_take_precedence_over_the_card_file(setup: Setup) -> None:
    from harness.runs.catalog import catalog_from_folders
    from reports.model_card import PLACEHOLDER, build_card

    catalog = catalog_from_folders([setup.runs])
    subject = catalog.by_label("dpo-1")
    assert subject is not None
    entries = {
        "dpo-1": {
            "name": "dpo-1",
            "seed": 3,
            "details": {"training_data": "UltraFeedback pairs", "steps": 200},
        }
    }
    card = build_card(
        subject, [subject], {"training_data": "ignored", "intended_use": "teaching"}, None, entries, []
    )
    fields = {f.key: f for f in card.fields}
    assert (
        fields["training_data"].lines == ("UltraFeedback pairs",)
        and fields["training_data"].source == "registry entry"
    )
    assert fields["intended_use"].source == "card file"
    assert fields["limitations"].lines == (PLACEHOLDER,) and card.missing == ["Limitations"]
    assert ("seed", "3") in card.training and ("steps", "200") in card.training


def test_length_statistics_count_cut_responses() -> None:
    from reports.sections import length_row

    def record(i: int, text: str, reason: str, tokens: int) -> SampleRecord:
        completion = Completion(texts=(text,), finish_reasons=(reason,), completion_tokens=tokens)
        return SampleRecord(str(i), "p", "t", ("k",), (completion,), {"x": 1.0})

    records = [
        record(0, "abcd", "stop", 4),
        record(1, "ab", "length", 10),
        record(2, "abcdefgh", "length", 10),
    ]

    class _Run:  # stand-in: only .suite and .manifest.generation.max_tokens are read
        suite = "gsm8k"

        class manifest:
            class generation:
                max_tokens = 10

    row = length_row("c", _Run(), records)  # type: ignore[arg-type]
    assert (row.responses, row.mean_chars, row.median_chars) == (3, 14 / 3, 4)
    assert (row.mean_tokens, row.median_tokens, row.cut, row.cut_share) == (8, 10, 2, 2 / 3)


def test_two_unrelated_checkpoints_are_compared_in_the_order_named(setup: Setup, tmp_path: Path) -> None:
    other = _replay(tmp_path / "other.jsonl", {i: "The answer is 123456789." for i in setup.gsm8k_ids})
    eval_json(
        "--checkpoint",
        f"replay:{other}",
        "--suite",
        "gsm8k",
        "--limit",
        str(N),
        "--runs",
        str(tmp_path / "runs"),
    )
    sft_gsm8k = next(
        p.parent for p in setup.runs.rglob("manifest.json") if "sft" in str(p) and "gsm8k@" in str(p)
    )
    proc = harness(
        "report", str(sft_gsm8k), str(tmp_path / "runs"), "--out", str(tmp_path / "out"), env=setup.env
    )
    assert proc.returncode == 0, proc.stderr
    assert f"compared sft-1 -> replay:{other}" in proc.stdout
    md = (tmp_path / "out" / "report.md").read_text()
    assert (
        "The two checkpoints named, in that order" in md or "the two checkpoints named, in that order" in md
    )
    assert "| gsm8k | exact_match_flex | 6 | 66.7 | 0.0 | -66.7 |" in md
    assert md.count("**Loss: ") == 3 and "4 loss(es)" in md  # 4 flips, 3 shown (--examples default)
    assert "| safety |" not in md.split("## Comparison")[1].split("###")[0]  # one run folder: gsm8k only


def test_hostile_response_stays_text_in_a_real_browser(report: Path) -> None:
    """Headless Chromium opens report.html from file://: plots draw, no dialog fires, no console error."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            dialogs: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((report / "report.html").as_uri())
            page.wait_for_function(
                "document.querySelectorAll('div.plot .main-svg').length >= 4", timeout=20000
            )
            assert page.locator("pre.response", has_text=HOSTILE).count() == 1
            assert page.locator("script", has_text="alert(1)").count() == 0
            assert errors == [] and dialogs == []
        finally:
            browser.close()


def test_efficiency_and_diversity_sections_compare_the_two_checkpoints(report: Path) -> None:
    md = (report / "report.md").read_text()
    efficiency = _section(md, "## Efficiency", "## Refusal")
    diversity = _section(md, "## Diversity and verbosity", "## Model card")
    # Replay responses are never timed and carry no token counts: said so, never shown as 0.
    assert "| gsm8k | sft-1 | 6 | 0 of 6 | unmeasured |" in efficiency
    assert "| gsm8k | sft-1 -> dpo-1 | completion tokens | 0 |" in efficiency
    # The paired length difference over the 6 GSM8K samples, with its small-n (t) interval.
    assert "| gsm8k | sft-1 -> dpo-1 | response chars | 6 |" in diversity
    assert "| safety | dpo-1 | 6 | 100.0 |" in diversity  # every DPO refusal apologizes
    html = (report / "report.html").read_text()
    assert 'id="efficiency"' in html and 'id="diversity"' in html
