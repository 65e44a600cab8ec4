"""harness.runs.catalog: runs grouped into checkpoints, one run per suite, comparable columns, team and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.runs.catalog import average, catalog_from_folders, primary_value
from suites import get_suite
from tests.conftest import cli_env, eval_json, harness


def _replay(path: Path, data_dir: Path, right: int, total: int) -> Path:
    """A replay file answering the first `right` of `total` GSM8K problems correctly, the rest wrongly."""
    suite = get_suite("gsm8k")
    samples = suite.load(DataSource(data_dir), limit=total).samples
    lines = [
        {"sample_id": s.id, "text": suite.gold_response(s) if i < right else "The answer is 123456789."}
        for i, s in enumerate(samples)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_catalog_groups_runs_picks_the_biggest_and_ranks_only_comparable(
    data_dir: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    good = _replay(tmp_path / "good.jsonl", data_dir, right=8, total=10)
    weak = _replay(tmp_path / "weak.jsonl", data_dir, right=2, total=10)
    harness("checkpoints", "add", "base", f"replay:{weak}", "--stage", "base", env=env)
    harness("checkpoints", "add", "sft-1", f"replay:{good}", "--stage", "sft", "--parent", "base", env=env)
    eval_json("--checkpoint", "base:latest", "--suite", "gsm8k", "--limit", "10", env=env)
    eval_json(
        "--checkpoint", "sft:latest", "--suite", "gsm8k", "--limit", "5", env=env
    )  # smaller: not chosen
    eval_json("--checkpoint", "sft:latest", "--suite", "gsm8k", "--limit", "10", env=env)
    other = _replay(tmp_path / "other.jsonl", data_dir, right=10, total=10)
    eval_json(
        "--checkpoint", f"replay:{other}", "--suite", "gsm8k", "--limit", "10", "--max-tokens", "64", env=env
    )
    (runs / "submission.json").write_text(json.dumps({"team": "team-a"}))

    catalog = catalog_from_folders([runs])
    by_label = {c.label: c for c in catalog.checkpoints}
    assert set(by_label) == {"base", "sft-1", f"replay:{other}"}
    sft = by_label["sft-1"]
    assert (sft.team, sft.stage, sft.parent, sft.base_model) == ("team-a", "sft", "base", f"replay:{weak}")
    assert sft.runs["gsm8k"].manifest.n_samples == 10
    assert primary_value(sft, "gsm8k", catalog) == 0.8
    assert primary_value(by_label["base"], "gsm8k", catalog) == 0.2
    # Run with other generation settings (--max-tokens 64): shown, never ranked against the column.
    assert not catalog.comparable(by_label[f"replay:{other}"].runs["gsm8k"])
    assert primary_value(by_label[f"replay:{other}"], "gsm8k", catalog) is None
    assert average([0.8, None, 0.4]) == pytest.approx(0.6) and average([None]) is None
    assert catalog.suites() == ["gsm8k"]
