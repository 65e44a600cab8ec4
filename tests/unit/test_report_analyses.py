"""Issue 21's "done when" for the report: a report of two checkpoints (an SFT and its DPO child, here two
`replay:` checkpoints with stored token log-probabilities, run through `harness.evaluate --logprobs`) shows
the calibration, efficiency, diversity and verbosity sections, each with its paired comparison; and a
report of runs made without log-probabilities says so instead of inventing a confidence."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import harness
from harness.api.evaluate import Generation
from harness.data import DataSource
from reports.report import build_report
from suites import get_suite
from tests.conftest import DATA_DIR

N = 12


def _replay(path: Path, correct: list[bool], answer_prob: list[float], pad: int) -> Path:
    """GSM8K responses "<pad>The answer is X." whose answer token carries the given probability."""
    targets = [s.target for s in get_suite("gsm8k").load(DataSource(DATA_DIR), N).samples]
    rows = []
    for i, target in enumerate(targets):
        answer = target if correct[i] else str(int(target) + 1)
        tokens = ["Let me think. " * pad, "The", " answer", " is", " ", answer, "."]
        logprobs = [-0.5, -0.1, -0.05, -0.01, -0.01, math.log(answer_prob[i]), -0.02]
        text = "".join(tokens)
        offsets = [sum(len(t) for t in tokens[:k]) for k in range(len(tokens))]
        rows.append(
            {
                "sample_id": f"gsm8k-test-{i:04d}",
                "text": text,
                "completion_tokens": 6 + 4 * pad,
                "logprobs": [{"lp": logprobs, "at": offsets}],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_two_checkpoints_get_every_analysis_with_paired_statistics(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # The parent: sure of everything, right on half; the child: right on two thirds, as sure as it is right.
    sft = _replay(tmp_path / "sft.jsonl", [i % 2 == 0 for i in range(N)], [0.95] * N, pad=3)
    child_correct = [i % 3 != 0 for i in range(N)]
    dpo = _replay(tmp_path / "dpo.jsonl", child_correct, [0.85 if c else 0.2 for c in child_correct], pad=1)
    for ref in (f"replay:{sft}", f"replay:{dpo}"):
        harness.evaluate(
            ref, ["gsm8k"], limit=N, runs=runs, data_dir=DATA_DIR,
            generation=Generation(logprobs=True), progress=False,
        )  # fmt: skip
    out = tmp_path / "report"
    build_report([f"replay:{sft}", f"replay:{dpo}"], out, runs)
    report = (out / "report.md").read_text(encoding="utf-8")

    # Calibration: per-run rows, and the paired ECE/Brier table. The parent's answer-token ECE is
    # |0.5 - 0.95| = 0.45 (one bin); the child's: bins 0.8-0.9 (8 right at 0.85: |1 - 0.85| = 0.15) and
    # 0.2-0.3 (4 wrong at 0.2: 0.2), weighted 8/12 * 0.15 + 4/12 * 0.2 = 0.1667.
    calibration = report.split("## Calibration")[1]
    assert re.search(
        r"\| gsm8k \| replay:[^|]*sft\.jsonl \| answer tokens \| 12 \| 0 \|.*\| 0\.450 \|", calibration
    )
    assert re.search(
        r"\| gsm8k \| replay:[^|]*dpo\.jsonl \| answer tokens \| 12 \| 0 \|.*\| 0\.167 \|", calibration
    )
    paired = re.search(
        r"\| gsm8k \| replay:[^|]*sft\.jsonl -> replay:[^|]*dpo\.jsonl \| answer tokens \| 12 \| 0\.450 \| 0\.167 \| "
        r"-0\.283 \|",
        calibration,
    )
    assert paired, calibration
    assert "calibration_reliability" in (out / "report.html").read_text(encoding="utf-8")

    # Efficiency: completion tokens per sample paired (18 -> 10 each: delta -8); replayed latency unmeasured.
    efficiency = report.split("## Efficiency")[1].split("\n## ")[0]
    assert re.search(r"\| gsm8k \| replay:[^|]*sft\.jsonl -> replay:[^|]*dpo\.jsonl \| completion tokens \| 12 \| "
                     r"18\.0 \| 10\.0 \| -8\.0 \|", efficiency), efficiency  # fmt: skip
    assert "| latency (s) | 0 | - | - | - | - | unmeasured |" in efficiency

    # Diversity and verbosity: length vs correctness per run, and the paired length difference
    # (two fewer "Let me think. " = -28 characters on every sample).
    diversity = report.split("## Diversity and verbosity")[1].split("\n## ")[0]
    assert "### Paired: consecutive checkpoints" in diversity
    assert re.search(r"\| gsm8k \| replay:[^|]*sft\.jsonl -> replay:[^|]*dpo\.jsonl \|[^|]*char[^|]*\| 12 \|.*\| -28\.000 \|",
                     diversity), diversity  # fmt: skip
    assert re.search(
        r"\| gsm8k \| replay:[^|]*dpo\.jsonl \|[^|]*\| correct vs incorrect \| 8 \|", diversity
    ), diversity


def test_runs_without_logprobs_say_so(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sft = _replay(tmp_path / "sft.jsonl", [True] * N, [0.9] * N, pad=0)
    harness.evaluate(f"replay:{sft}", ["gsm8k"], limit=N, runs=runs, data_dir=DATA_DIR, progress=False)
    build_report([f"replay:{sft}"], tmp_path / "report", runs)
    calibration = (tmp_path / "report" / "report.md").read_text(encoding="utf-8").split("## Calibration")[1]
    assert "No run has a measurable confidence." in calibration
    assert "no token log-probabilities: run with --logprobs" in calibration
