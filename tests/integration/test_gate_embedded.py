"""`harness gate` end to end on real runs of the embedded model (SmolLM2-135M-Instruct, llama.cpp, CPU).

IFEval is where a degraded candidate can be shown to be worse: the baseline is the embedded model's real
responses at the pinned settings (tests/fixtures/ifeval_embedded_responses.jsonl, replayed: no generation),
the candidate is the embedded model with --max-tokens 16 on the same first 140 prompts (about 2 minutes
on 2 cores); length and format instructions then fail. Measured: prompt-level loose accuracy drops from
19.3% to 10.0%, delta -9.3 points [-15.0, -4.3] (14 regressions, 1 improvement; one-sided p = 0.0016) -> FAIL.

GSM8K cannot show it, and the test says so: the embedded model solves ~1% of GSM8K, so on the 20-sample
session run there is next to nothing to lose, and the gate must not claim PASS for a candidate it cannot
distinguish; see test_gsm8k_degraded_candidate_is_not_passed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, EvalResult, cli_env, eval_json, harness

pytestmark = pytest.mark.model

REPLAY = f"replay:{ROOT / 'tests' / 'fixtures' / 'ifeval_embedded_responses.jsonl'}"
LIMIT = 140


def gate_json(*args: str) -> tuple[int, dict[str, object], str]:
    proc = harness("gate", "--json", *args, env=cli_env(), timeout=600)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="module")
def ifeval_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[EvalResult, EvalResult]:
    out = tmp_path_factory.mktemp("gate-ifeval")
    base = eval_json("--checkpoint", REPLAY, "--suite", "ifeval", "--limit", str(LIMIT), "--runs", str(out))
    cand = eval_json(
        "--checkpoint", "embedded", "--suite", "ifeval", "--limit", str(LIMIT), "--max-tokens", "16",
        "--runs", str(out),
    )  # fmt: skip
    return base, cand


def test_ifeval_truncated_candidate_fails_the_gate(ifeval_runs: tuple[EvalResult, EvalResult]) -> None:
    base, cand = ifeval_runs
    code, payload, _ = gate_json("--baseline", str(base.run_dir), "--candidate", str(cand.run_dir))
    assert code == 10, payload
    (suite,) = payload["suites"]  # type: ignore[misc]
    assert suite["verdict"] == "FAIL" and suite["n_paired"] == LIMIT
    assert suite["settings_differences"] == {"max_tokens": [1280, 16]}  # shown, not refused
    primary = suite["metrics"][0]
    assert primary["metric"] == "prompt_level_loose_acc" and primary["role"] == "gate"
    assert primary["delta"] < -0.05 and primary["ci"][1] < 0 and primary["p_holm"] < 0.05
    assert primary["regressions"] > 5 * max(1, primary["improvements"])


def test_same_checkpoint_against_itself_passes(ifeval_runs: tuple[EvalResult, EvalResult]) -> None:
    base, cand = ifeval_runs
    for run in (base, cand):
        code, payload, _ = gate_json("--baseline", str(run.run_dir), "--candidate", str(run.run_dir))
        assert code == 0 and payload["overall"] == "PASS"
    # Through checkpoint references (the replayed embedded responses) rather than run folders.
    code, payload, _ = gate_json(
        "--baseline", REPLAY, "--candidate", REPLAY, "--runs", str(base.run_dir.parents[2])
    )
    assert code == 0 and payload["overall"] == "PASS"


def test_eval_missing_runs_the_candidate_with_the_baseline_settings(
    ifeval_runs: tuple[EvalResult, EvalResult], tmp_path: Path
) -> None:
    """--eval-missing through `harness eval`'s code path: the replayed candidate is evaluated with the
    baseline's generation settings and limit (the 16-token run is the baseline here, so the candidate,
    the full responses, is better: PASS)."""
    _, cand = ifeval_runs
    root = tmp_path / "runs"
    baseline = root / cand.run_dir.relative_to(cand.run_dir.parents[2])
    shutil.copytree(cand.run_dir, baseline)  # only the 16-token run: the replayed one is missing
    proc = harness(
        "gate", "--baseline", str(baseline), "--candidate", REPLAY, "--runs", str(root), env=cli_env()
    )
    assert proc.returncode == 4 and "harness eval --checkpoint replay:" in proc.stderr
    code, payload, _ = gate_json(
        "--baseline", baseline, "--candidate", REPLAY, "--runs", str(root), "--eval-missing"
    )
    assert code == 0, payload
    (suite,) = payload["suites"]  # type: ignore[misc]
    assert suite["n_paired"] == LIMIT and suite["settings_differences"] == {}
    assert suite["metrics"][0]["delta"] > 0


def test_gsm8k_degraded_candidate_is_not_passed(embedded_gsm8k_20: EvalResult, tmp_path: Path) -> None:
    """The embedded model solves ~1% of GSM8K (measured: 0 of the first 20 at the pinned settings), so a
    --max-tokens 16 candidate (which cannot reach an answer after the chain of thought) has nothing to
    lose on 20 samples: both runs score 0 everywhere. The paired bootstrap interval is then [0, 0], yet
    a regression rate up to ~20% is consistent with seeing none in 20 pairs, so the honest verdict is
    INCONCLUSIVE with the minimum detectable effect stated (not PASS, and not FAIL)."""
    cand = eval_json(
        "--checkpoint", "embedded", "--suite", "gsm8k", "--limit", "20", "--max-tokens", "16",
        "--runs", str(tmp_path),
    )  # fmt: skip
    code, payload, _ = gate_json(
        "--baseline", str(embedded_gsm8k_20.run_dir), "--candidate", str(cand.run_dir)
    )
    (suite,) = payload["suites"]  # type: ignore[misc]
    flex = suite["metrics"][0]
    assert suite["settings_differences"]["max_tokens"] == [128, 16]
    assert (code, payload["overall"], suite["verdict"]) == (11, "INCONCLUSIVE", "INCONCLUSIVE")
    assert flex["p_holm"] > 0.05
    assert flex["mde_points"] > 20.0  # only a drop of more than ~26 points is detectable at n = 20
