"""Every registered suite through the CLI: its gold responses, replayed, score 100% on its primary metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data import DataSource
from suites import get_suite, suite_names
from tests.conftest import eval_json


@pytest.mark.parametrize("name", suite_names())
def test_gold_responses_score_full_marks_through_the_cli(name: str, data_dir: Path, tmp_path: Path) -> None:
    suite = get_suite(name)
    loaded = suite.load(DataSource(data_dir), limit=30)
    gold = {s.id: suite.gold_response(s) for s in loaded.samples}
    if any(text is None for text in gold.values()):
        pytest.skip(f"{name} has no gold responses (checked against its reference implementation instead)")
    replay = tmp_path / "gold.jsonl"
    replay.write_text("".join(json.dumps({"sample_id": i, "text": t}) + "\n" for i, t in gold.items()))
    run = eval_json(
        "--checkpoint", f"replay:{replay}", "--suite", name, "--limit", "30", "--runs", str(tmp_path / "runs")
    )
    assert run.payload["n_samples"] == 30
    assert run.metrics[suite.primary_metric]["value"] == 1.0, run.metrics[suite.primary_metric]
    for sample in loaded.samples[:5]:
        assert suite.reward(sample, gold[sample.id] or "") == 1.0
