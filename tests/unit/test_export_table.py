"""`harness export table`: samples and metrics as CSV, Parquet and JSON Lines, read back with pandas and
checked against the run's own files, and equal to the Python API's `samples_df()` / `metrics_df()`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import harness
from reports.export_table import export_tables, selected_runs
from tests.conftest import DATA_DIR
from tests.conftest import harness as harness_cli

pandas = pytest.importorskip("pandas")
N = 3


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:N]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A runs folder with a GSM8K and an IFEval run of one replay checkpoint (first GSM8K answer right)."""
    lines = []
    for index, row in enumerate(_rows(DATA_DIR / "gsm8k" / "test.jsonl")):
        target = row["answer"].split("####")[-1].strip()
        lines.append(
            {"sample_id": f"gsm8k-test-{index:04d}", "text": f"So, ünïcode: {target if index == 0 else 7}"}
        )
    for row in _rows(DATA_DIR / "ifeval" / "input_data.jsonl"):
        lines.append({"sample_id": f"ifeval-{row['key']}", "text": "a short reply, no capitals"})
    folder = tmp_path_factory.mktemp("table-runs")
    replay = folder / "responses.jsonl"
    replay.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    checkpoint = f"replay:{replay}"
    root = folder / "runs"
    harness.evaluate(checkpoint, ["gsm8k", "ifeval"], limit=N, runs=root, data_dir=DATA_DIR, progress=False)
    return root, checkpoint


def _sorted(frame: Any, keys: list[str]) -> Any:
    return frame.sort_values(keys).reset_index(drop=True)


def _records(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return {str(r["id"]): r for r in map(json.loads, lines)}


def _read(path: Path, fmt: str) -> Any:
    if fmt == "csv":  # CSV carries no types: text columns are read as text (pandas would guess numbers)
        header = pandas.read_csv(path, nrows=0).columns
        text = {c: str for c in header if c.startswith("extracted.") or c in ("target", "sample_id")}
        return pandas.read_csv(path, dtype=text)
    if fmt == "parquet":
        return pandas.read_parquet(path)
    return pandas.read_json(path, lines=True, dtype=False)


def test_the_api_returns_the_frames_the_export_writes(runs: tuple[Path, str]) -> None:
    from harness.api.frames import metrics_frame, samples_frame

    root, checkpoint = runs
    chosen = selected_runs([checkpoint], root)
    assert sorted(r.suite for r in chosen) == ["gsm8k", "ifeval"]
    loaded = harness.load_runs(root)
    pandas.testing.assert_frame_equal(
        _sorted(samples_frame(chosen), ["sample_id"]), _sorted(loaded.samples_df(), ["sample_id"])
    )
    pandas.testing.assert_frame_equal(
        _sorted(metrics_frame(chosen), ["suite", "metric"]), _sorted(loaded.metrics_df(), ["suite", "metric"])
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_each_format_reads_back_with_the_runs_values(
    runs: tuple[Path, str], fmt: str, tmp_path: Path
) -> None:
    root, checkpoint = runs
    summary = export_tables([checkpoint], tmp_path / "out", fmt, root)
    assert (summary.runs, summary.samples) == (2, 2 * N)
    samples = _read(tmp_path / "out" / f"samples.{fmt}", fmt).set_index("sample_id")
    metrics = _read(tmp_path / "out" / f"metrics.{fmt}", fmt)
    assert not list((tmp_path / "out").glob(".*partial"))
    loaded = harness.load_runs(root)
    for run in loaded:
        for sample_id, record in _records(run.run_dir).items():
            row = samples.loc[sample_id]
            assert row["suite"] == run.suite and row["checkpoint"] == checkpoint
            assert row["prompt"] == record["prompt"] and str(row["target"]) == str(record["target"])
            assert row["response"] == record["completions"][0]["texts"][0]
            assert row["run_dir"] == str(run.run_dir)
            for name, value in record["scores"].items():
                assert row[f"score.{name}"] == pytest.approx(value)
            for name, value in record["extracted"].items():
                cell = row[f"extracted.{name}"]
                assert (value is None and pandas.isna(cell)) or str(cell) == str(value)
        for name, metric in run.metrics.items():
            found = metrics[(metrics.suite == run.suite) & (metrics.metric == name)]
            assert len(found) == 1
            cell = found.iloc[0]
            assert cell["value"] == pytest.approx(metric.value) and int(cell["n"]) == metric.n
            assert cell["ci_low"] == pytest.approx(metric.ci_low) and cell["ci_high"] == pytest.approx(
                metric.ci_high
            )
            assert bool(cell["primary"]) == (name == run.primary)
    gsm8k = samples[samples.suite == "gsm8k"].sort_index()
    assert list(gsm8k["score.exact_match_flex"]) == [1.0, 0.0, 0.0]  # the replay's first answer is right
    assert gsm8k.iloc[0]["response"].startswith("So, ünïcode: ")


def test_the_parquet_table_is_the_api_frame(runs: tuple[Path, str], tmp_path: Path) -> None:
    root, checkpoint = runs
    export_tables([checkpoint], tmp_path, "parquet", root)
    loaded = harness.load_runs(root)
    pandas.testing.assert_frame_equal(
        _sorted(pandas.read_parquet(tmp_path / "samples.parquet"), ["sample_id"]),
        _sorted(loaded.samples_df(), ["sample_id"]),
    )
    pandas.testing.assert_frame_equal(
        _sorted(pandas.read_parquet(tmp_path / "metrics.parquet"), ["suite", "metric"]),
        _sorted(loaded.metrics_df(), ["suite", "metric"]),
    )


def test_the_cli_writes_both_tables_and_names_unknown_checkpoints(
    runs: tuple[Path, str], tmp_path: Path
) -> None:
    root, checkpoint = runs
    out = tmp_path / "csv"
    proc = harness_cli(
        "export", "table", checkpoint, "--runs", str(root), "--out", str(out), "--format", "jsonl"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Wrote {2 * N} sample rows to {out / 'samples.jsonl'}" in proc.stdout
    assert len((out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) == len(
        harness.load_runs(root).metrics_df()
    )
    missing = harness_cli("export", "table", "replay:/nowhere.jsonl", "--runs", str(root), "--out", str(out))
    assert missing.returncode == 2 and "No runs of 'replay:/nowhere.jsonl'" in missing.stderr
