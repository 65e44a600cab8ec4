"""`harness.gate`: did the candidate regress against the baseline? PASS, FAIL or INCONCLUSIVE per suite
and overall, from paired per-sample statistics under a policy (harness/gating/)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from harness.gating.collect import GateResult, MissingRun, run_gate
from harness.gating.policy import GatePolicy
from harness.runs.store import runs_root

log = logging.getLogger("harness")


def gate(
    baseline: str,
    candidate: str,
    *,
    suites: Sequence[str] | None = None,
    runs: str | Path | None = None,
    policy: str | Path | GatePolicy | None = None,
    eval_missing: bool = False,
    data_dir: str | Path | None = None,
    strict_settings: bool = False,
    progress: bool = True,
) -> GateResult:
    """Gate `candidate` against `baseline` (each a run folder, a checkpoint reference or STAGE:TAG).
    `policy`: a policy YAML file or a GatePolicy (default: built-in). `eval_missing=True` evaluates a
    suite a side has no complete run of, with the other side's decoding and limit (data from
    `data_dir`), showing progress unless `progress=False`. The result's `exit_code` is the CLI's: 0 PASS,
    10 FAIL, 11 INCONCLUSIVE."""
    root = runs_root(None if runs is None else str(runs))
    chosen = policy if isinstance(policy, GatePolicy) or policy is None else str(policy)

    def evaluate_missing(missing: MissingRun) -> None:
        from harness.api.evaluate import Generation, evaluate
        from harness.suite import SuiteOptions

        like = missing.like
        generation, limit, scoring = None, None, None
        if like is not None:
            generation, limit = Generation.like(like.manifest.generation), like.manifest.limit
            scoring = SuiteOptions.of_run(like.manifest.suite_settings)
        results = evaluate(
            missing.reference, [missing.suite], limit=limit, runs=root, data_dir=data_dir,
            generation=generation, scoring=scoring, progress=progress,
        )  # fmt: skip
        log.info("gate: evaluated %s on %s -> %s", results.checkpoint, missing.suite, results.runs[0].run_dir)

    return run_gate(
        baseline, candidate, root, chosen, suites, evaluate_missing if eval_missing else None, strict_settings
    )
