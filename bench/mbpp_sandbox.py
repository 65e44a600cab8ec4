"""MBPP sandbox: the 500 gold programs on 2 cores, programs per second, serial vs parallel.

What is measured: the `mbpp` suite's 500 test tasks (11-510), each task's gold code given as the response
("[BEGIN]\\n{code}\\n[DONE]", `MBPP.gold_response`) and turned into a sandbox job exactly as scoring does
(`MBPP.job`: test imports, program, setup code, asserts, the sentinel), then run by `harness.sandbox`
with the suite's limits (`suites.mbpp.LIMITS`: 10 s wall, 5 s CPU, 1 GiB, 16 processes):

- serial: `run_jobs(jobs, LIMITS, max_workers=1)` (one fresh sandboxed process after another);
- parallel: `run_jobs(jobs, LIMITS, max_workers=W)` for each W in `--workers` (a thread pool, one
  sandboxed process per job);
- runner: the same 500 gold responses through the real pipeline (`harness.runner.evaluate` with the
  `replay:` adapter, no cache), which is what `harness eval --suite mbpp` and `harness rescore` cost.

Every program must pass (exit 1 otherwise). Prints programs/s per mode and what the sandbox applied
(network namespace, privilege drop: both need root).

Reproduce (from the repository root):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
      .venv/bin/python bench/mbpp_sandbox.py --workers 2 --json bench/out/mbpp_sandbox.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.data import resolve_data_source
from harness.sandbox import Job, ProgramResult, run_jobs
from suites.mbpp import LIMITS, MBPP


def summarize(mode: str, results: list[ProgramResult], seconds: float) -> dict[str, Any]:
    failed = [(i, r.status, r.stderr_tail[-200:]) for i, r in enumerate(results) if not r.passed]
    return {
        "mode": mode,
        "programs": len(results),
        "passed": len(results) - len(failed),
        "seconds": round(seconds, 2),
        "programs_per_s": round(len(results) / seconds, 1),
        "median_program_s": round(statistics.median(r.duration_s for r in results), 4),
        "network_isolated": all(r.network_isolated for r in results),
        "processes_hidden": all(r.processes_hidden for r in results),
        "privileges_dropped": all(r.privileges_dropped for r in results),
        "failures": failed[:5],
    }


def timed(jobs: list[Job], workers: int) -> tuple[list[ProgramResult], float]:
    start = time.perf_counter()
    results = run_jobs(jobs, LIMITS, max_workers=workers)
    return results, time.perf_counter() - start


def through_runner(suite: MBPP, samples: list[Any], data_dir: str | None) -> dict[str, Any]:
    from adapters import create_adapter
    from harness.checkpoints import parse_checkpoint
    from harness.runner import EvalSpec, evaluate

    with tempfile.TemporaryDirectory(prefix="mbpp-bench-") as tmp:
        replay = Path(tmp) / "gold.jsonl"
        replay.write_text(
            "".join(json.dumps({"sample_id": s.id, "text": suite.gold_response(s)}) + "\n" for s in samples)
        )
        ref = parse_checkpoint(f"replay:{replay}")
        spec = EvalSpec(ref, suite, suite.default_settings(), None, resolve_data_source(data_dir),
                        Path(tmp) / "runs", use_cache=False)  # fmt: skip
        start = time.perf_counter()
        outcome = asyncio.run(evaluate(spec, create_adapter(ref)))
        seconds = time.perf_counter() - start
    passed = outcome.metrics["pass@1"].value * outcome.n_samples
    return {
        "mode": "runner (replay, evaluate)",
        "programs": outcome.n_samples,
        "passed": round(passed),
        "seconds": round(seconds, 2),
        "programs_per_s": round(outcome.n_samples / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="parallel worker counts to time")
    parser.add_argument("--limit", type=int, help="only the first N tasks (default: all 500)")
    parser.add_argument("--data-dir", help="default: $HARNESS_DATA_DIR, else the hub")
    parser.add_argument("--no-runner", action="store_true", help="skip the pass through harness.runner")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    suite = MBPP()
    samples = list(suite.load(resolve_data_source(args.data_dir), args.limit).samples)
    jobs = []
    for sample in samples:
        gold = suite.gold_response(sample)
        assert gold is not None
        jobs.append(suite.job(sample, gold))
    print(f"{len(jobs)} gold programs, {os.cpu_count()} CPUs, uid {os.getuid()}", file=sys.stderr)
    rows = [summarize("serial", *timed(jobs, 1))]
    for workers in args.workers:
        rows.append(summarize(f"parallel x{workers}", *timed(jobs, workers)))
    if not args.no_runner:
        rows.append(through_runner(suite, samples, args.data_dir))
    serial = rows[0]["seconds"]
    for row in rows:
        row["speedup_vs_serial"] = round(serial / row["seconds"], 2)
        print(json.dumps(row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["passed"] == r["programs"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
