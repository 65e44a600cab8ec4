"""The static leaderboard site, built from real runs made through the CLI with replay: checkpoints.

`make_board_runs(root)` is reusable (the browser tests build their site from it): four registered
checkpoints with lineage base-1 -> sft-1 -> {dpo-1, dpo-lim}, team "blue", suites gsm8k, safety and
alice-synth at --limit 20 (dpo-lim's safety at --limit 10: other settings, never ranked), wrong answers
carrying HOSTILE markup.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness.data import DataSource
from harness.errors import DataError, UsageError
from leaderboard.site import build_site
from suites import get_suite
from tests.conftest import DATA_DIR, harness

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(1)>"
SUITES = ("gsm8k", "safety", "alice-synth")
LIMIT = 20
# name, stage, parent, fraction answered with the gold response
CHECKPOINTS = (
    ("base-1", "base", None, 0.3),
    ("sft-1", "sft", "base-1", 0.6),
    ("dpo-1", "dpo", "sft-1", 0.8),
    ("dpo-lim", "dpo", "sft-1", 0.9),
)


def _replay_file(path: Path, fraction: float, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for name in SUITES:
        suite = get_suite(name)
        for sample in suite.load(DataSource(DATA_DIR), limit=LIMIT).samples:
            gold = suite.gold_response(sample) or ""
            text = gold if rng.random() < fraction else f"I am not sure. {HOSTILE}"
            lines.append(json.dumps({"sample_id": sample.id, "text": text}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_board_runs(root: Path) -> Path:
    """A runs folder with four checkpoints and their lineage (see the module docstring)."""
    runs = root / "runs"
    runs.mkdir(parents=True)
    (runs / "submission.json").write_text(json.dumps({"team": "blue"}))
    for number, (name, stage, parent, fraction) in enumerate(CHECKPOINTS):
        replay = root / f"{name}.jsonl"
        _replay_file(replay, fraction, seed=number)
        add = ["checkpoints", "add", name, f"replay:{replay}", "--stage", stage, "--runs", str(runs)]
        add += ["--parent", parent] if parent else ["--base-model", "SmolLM2-135M"]
        proc = harness(*add)
        assert proc.returncode == 0, proc.stderr
        ref = f"{stage}:{name}"
        suites = [s for s in SUITES if not (name == "dpo-lim" and s == "safety")]
        args = ["eval", "--quiet", "--checkpoint", ref, "--limit", str(LIMIT), "--runs", str(runs)]
        proc = harness(*args, *[x for s in suites for x in ("--suite", s)])
        assert proc.returncode == 0, proc.stderr
        if name == "dpo-lim":
            proc = harness(*args[:-4], "--limit", "10", "--runs", str(runs), "--suite", "safety")
            assert proc.returncode == 0, proc.stderr
    return runs


def read_global(path: Path) -> Any:
    """The JSON payload of a data file `X=<json>;` (or `(X=X||{})["id"]=<json>;`)."""
    text = path.read_text(encoding="utf-8").strip()
    start = text.index("]=") + 2 if text.startswith("(") else text.index("=") + 1
    return json.loads(text[start:-1])


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("board")
    runs = make_board_runs(base)
    site = base / "site"
    build_site([runs], site, None)
    return runs, site


@pytest.fixture(scope="module")
def index(board: tuple[Path, Path]) -> dict[str, Any]:
    payload: dict[str, Any] = read_global(board[1] / "data" / "index.js")
    return payload


def _row(index: dict[str, Any], label: str) -> dict[str, Any]:
    return next(r for r in index["rows"] if r["label"] == label)


def _metrics(runs: Path, reference_name: str, suite: str, limit: int = LIMIT) -> dict[str, Any]:
    for manifest in runs.rglob("manifest.json"):
        record = json.loads(manifest.read_text())
        if (
            record["lineage"]["name"] == reference_name
            and record["suite"] == suite
            and record["limit"] == limit
        ):
            return dict(json.loads((manifest.parent / "metrics.json").read_text()))
    raise AssertionError(f"no run {reference_name}/{suite}")


def test_every_page_and_asset_is_written(board: tuple[Path, Path], index: dict[str, Any]) -> None:
    _, site = board
    for name in ("index.html", "compare.html", "plots.html", "assets/site.js", "assets/site.css"):
        assert (site / name).is_file(), name
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    assert len(index["rows"]) == 4
    for row in index["rows"]:
        assert (site / row["href"]).is_file()
        assert (site / "data" / "scores" / f"{row['id']}.js").is_file()
        for cell in row["cells"].values():
            assert (site / cell["run"]).is_file() and (site / cell["run"].replace(".html", ".js")).is_file()
    html = (site / "index.html").read_text()
    # Relative links only, no CDN, no fetch of data (file:// blocks it).
    assert not re.search(r'(src|href)="(/|https?:)', html)
    assert "fetch(" not in (site / "assets" / "site.js").read_text()
    assert "XMLHttpRequest" not in (site / "assets" / "site.js").read_text()


def test_index_cells_carry_the_run_metrics_and_cis(board: tuple[Path, Path], index: dict[str, Any]) -> None:
    runs, _ = board
    assert [c["suite"] for c in index["suites"]] == ["gsm8k", "safety", "alice-synth"]
    for label in ("base-1", "sft-1", "dpo-1"):
        row = _row(index, label)
        for suite in SUITES:
            metrics = _metrics(runs, label, suite)
            primary = metrics["metrics"][metrics["primary"]]
            cell = row["cells"][suite]
            assert cell["metric"] == metrics["primary"]
            assert (cell["value"], cell["lo"], cell["hi"], cell["n"]) == (
                primary["value"], primary["ci95"][0], primary["ci95"][1], primary["n"],
            )  # fmt: skip
            assert cell["ranked"] is True and cell["reason"] is None
        values = [row["cells"][s]["value"] for s in SUITES]
        assert row["average"] == pytest.approx(sum(values) / 3)
    ranked = sorted((r for r in index["rows"] if r["rank"] is not None), key=lambda r: r["rank"])
    assert [r["average"] for r in ranked] == sorted((r["average"] for r in ranked), reverse=True)
    assert index["filters"] == {
        "team": ["blue"],
        "stage": ["base", "dpo", "sft"],
        "base_model": ["SmolLM2-135M"],
    }


def test_a_run_under_another_limit_is_shown_but_not_ranked(
    board: tuple[Path, Path], index: dict[str, Any]
) -> None:
    runs, site = board
    row = _row(index, "dpo-lim")
    cell = row["cells"]["safety"]
    assert cell["ranked"] is False
    assert "limit 10 (column: 20)" in cell["reason"]
    assert cell["value"] == _metrics(runs, "dpo-lim", "safety", limit=10)["metrics"]["safety_score"]["value"]
    # Its average uses the two comparable suites only, so it is not ranked against three-suite averages.
    assert row["average_n"] == 2 and index["ranked_suites"] == 3
    assert row["average"] == pytest.approx(
        (row["cells"]["gsm8k"]["value"] + row["cells"]["alice-synth"]["value"]) / 2
    )
    assert row["rank"] is None
    assert sorted(r["rank"] for r in index["rows"] if r["label"] != "dpo-lim") == [1, 2, 3]
    page = (site / row["href"]).read_text()
    assert "not ranked" in page and "limit 10 (column: 20)" in page


def test_reference_rows_are_flagged_and_never_ranked(board: tuple[Path, Path], index: dict[str, Any]) -> None:
    refs = index["references"]
    assert {r["model"] for r in refs} >= {"allenai/OLMo-2-0425-1B-SFT", "meta-llama/Llama-3.2-1B-Instruct"}
    assert all(r["source"].startswith("https://") and r["regime"] for r in refs)
    llama = next(r for r in refs if r["model"] == "meta-llama/Llama-3.2-1B-Instruct")
    assert llama["scores"]["gsm8k"] == pytest.approx(0.444)  # published 44.4 (%), kept as a fraction
    labels = {r["label"] for r in index["rows"]}
    assert not labels & {r["model"] for r in refs}
    html = (board[1] / "index.html").read_text()
    assert 'id="references"' in html and 'id="leaderboard"' in html


def test_reference_file_options(board: tuple[Path, Path], tmp_path: Path) -> None:
    runs, _ = board
    build_site([runs], tmp_path / "none", Path("none"))
    assert read_global(tmp_path / "none" / "data" / "index.js")["references"] == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"model": "m", "regime": "r", "source": "not a url", "scores": {}}]))
    with pytest.raises(DataError, match="'source' must be a URL"):
        build_site([runs], tmp_path / "bad", bad)


def test_lineage_is_visible(board: tuple[Path, Path], index: dict[str, Any]) -> None:
    dpo, sft = _row(index, "dpo-1"), _row(index, "sft-1")
    assert [s["label"] for s in dpo["lineage"]] == ["base-1", "sft-1", "dpo-1"]
    assert dpo["parent"] == "sft-1" and dpo["parent_id"] == sft["id"]
    page = (board[1] / dpo["href"]).read_text()
    assert f'href="{sft["id"]}.html">sft-1</a>' in page


def test_hostile_model_text_is_only_ever_escaped(board: tuple[Path, Path]) -> None:
    _, site = board
    generated = [p for p in site.rglob("*") if p.is_file() and p.parent.name != "assets"]
    assert len(generated) > 20
    for path in generated:
        text = path.read_text(encoding="utf-8")
        assert "<script>alert" not in text and "<img src=x" not in text, path
    escaped = "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e"
    assert any(escaped in p.read_text() for p in site.glob("runs/*/gsm8k.js"))
    script = (site / "assets" / "site.js").read_text()
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", script)


def test_sample_browser_data(board: tuple[Path, Path], index: dict[str, Any]) -> None:
    site = board[1]
    row = _row(index, "sft-1")
    for suite in SUITES:
        run = read_global(site / row["cells"][suite]["run"].replace(".html", ".js"))
        assert len(run["samples"]) == LIMIT
        ratio = sum(s["correct"] for s in run["samples"]) / LIMIT
        if suite != "safety":  # safety's primary is a mean of stratum means
            assert ratio == pytest.approx(row["cells"][suite]["value"])
        hostile = [s for s in run["samples"] if any(HOSTILE in r for r in s["responses"])]
        assert hostile and all(not s["correct"] for s in hostile if suite != "safety")
    alice = read_global(site / row["cells"]["alice-synth"]["run"].replace(".html", ".js"))
    assert {"cipher", "gravity"} <= set(alice["categories"])
    safety = read_global(site / row["cells"]["safety"]["run"].replace(".html", ".js"))
    assert safety["score_key"] == "safe_outcome" and "harmbench" in safety["categories"]
    assert {"prompt", "target", "responses", "extracted", "verdict"} <= set(safety["samples"][0])


def test_compare_scores_give_the_paired_deltas(board: tuple[Path, Path], index: dict[str, Any]) -> None:
    paired = pytest.importorskip("harness.gating.paired")
    site = board[1]
    a, b = _row(index, "sft-1"), _row(index, "dpo-1")
    sa, sb = (read_global(site / "data" / "scores" / f"{r['id']}.js") for r in (a, b))
    for suite in SUITES:
        x, y = sa[suite], sb[suite]
        assert x["ids"] == y["ids"] and len(x["ids"]) == LIMIT
        result = paired.paired_bootstrap(x["s"], y["s"], resamples=200, strata=x["g"])
        # The per-sample scores reproduce each run's primary metric, so the paired delta is theirs.
        assert result.delta == pytest.approx(
            b["cells"][suite]["value"] - a["cells"][suite]["value"], abs=1e-5
        )
    assert sa["safety"]["g"] and set(sa["safety"]["g"]) <= {"harmbench", "xstest_safe", "xstest_unsafe"}


def test_cli_build_prints_the_summary_and_rebuilds_in_place(board: tuple[Path, Path], tmp_path: Path) -> None:
    runs, _ = board
    out = tmp_path / "site"
    for _ in range(2):  # a rebuild replaces its own files
        proc = harness("leaderboard", "build", str(runs), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert re.match(r"site: 4 checkpoints, 3 suites, 12 runs, \d+ pages, [\d.]+ MB", proc.stdout), (
            proc.stdout
        )
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    proc = harness("leaderboard", "build", str(runs), "--out", str(foreign))
    assert proc.returncode != 0 and "not made by `harness leaderboard build`" in proc.stderr
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="No runs found"):
        (tmp_path / "empty").mkdir()
        build_site([tmp_path / "empty"], tmp_path / "site2", None)


def test_thousand_checkpoints_build_fast(board: tuple[Path, Path], tmp_path: Path) -> None:
    """1,000 synthetic checkpoints x 5 suite runs (copies of real runs under other names)."""
    runs, _ = board
    templates = {}
    for manifest in runs.rglob("manifest.json"):
        record = json.loads(manifest.read_text())
        if record["lineage"]["name"] == "sft-1":
            templates[record["suite"]] = manifest.parent
    names = [*SUITES, "extra-a", "extra-b"][:5]
    big = tmp_path / "big"
    for i in range(1000):
        for j, suite_name in enumerate(names):
            source = templates[SUITES[j % 3]]
            record = json.loads((source / "manifest.json").read_text())
            record.update(checkpoint=f"synthetic-{i:04d}", suite=suite_name, lineage=None)
            target = big / f"synthetic-{i:04d}" / f"{suite_name}@1.0" / record["settings_hash"]
            target.mkdir(parents=True)
            (target / "manifest.json").write_text(json.dumps(record))
            shutil.copyfile(source / "samples.jsonl", target / "samples.jsonl")
            shutil.copyfile(source / "metrics.json", target / "metrics.json")
    start = time.perf_counter()
    summary = build_site([big], tmp_path / "site", Path("none"))
    seconds = time.perf_counter() - start
    assert summary.checkpoints == 1000 and summary.runs == 5000
    assert seconds < 60, summary.describe()
    payload = read_global(tmp_path / "site" / "data" / "index.js")
    assert len(payload["rows"]) == 1000 and [r["rank"] for r in payload["rows"]].count(1) == 1000  # all tied
    print(summary.describe())


def test_an_oversized_samples_file_is_refused_without_reading_it_whole(
    board: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample browser reads samples.jsonl line by line, never more than the bound every samples
    reader keeps: a hostile file (one huge line with no newline) is a DataError naming it, not an OOM."""
    import leaderboard.site_samples as site_samples
    from harness.runs.catalog import load_run

    runs, _site = board
    run_dir = next(runs.rglob("samples.jsonl")).parent
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    size = (copy / "samples.jsonl").stat().st_size
    assert site_samples.read_run_samples(load_run(copy)).ids  # within the bound: read as before
    monkeypatch.setattr(site_samples, "MAX_SAMPLES_BYTES", size // 2)
    with pytest.raises(DataError, match=r"samples.jsonl holds more than .* by line \d+"):
        site_samples.read_run_samples(load_run(copy))
    (copy / "samples.jsonl").write_bytes(b'{"id": "x", "scores": {"' + b"a" * size)  # no newline at all
    with pytest.raises(DataError, match="holds more than"):
        site_samples.read_run_samples(load_run(copy))
