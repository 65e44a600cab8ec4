"""MBPP sandbox: the 500 gold programs on 2 cores, programs per second, old vs new sandbox in one run.

What is measured: the `mbpp` suite's 500 test tasks (11-510), each task's gold code given as the response
("[BEGIN]\\n{code}\\n[DONE]", `MBPP.gold_response`) and turned into a sandbox job exactly as scoring does
(`MBPP.job`), then run with the suite's limits (`suites.mbpp.LIMITS`: 10 s wall, 5 s CPU, 1 GiB, 16
processes; scaled to this machine by `suites.sandbox.timing`, as the scorer does) by two sandbox
implementations, alternately, in the same run:

- old: `suites/sandbox/__init__.py`, `suites/sandbox/child.py` and `suites/sandbox/cleanup.py` as they were at
  `--baseline-rev` (default b21a920), extracted from git into a temporary folder as a package named
  `harness` (an empty `__init__.py` plus every `harness.*` module those files import at that revision,
  followed transitively, e.g. `harness.names` -> `harness.errors`), and run by a fresh Python process whose
  PYTHONPATH puts that folder first (it prints which `suites/sandbox/__init__.py` it imported). It gets the same
  jobs as JSON in the old `Job` format (program, tests, prelude, entry_points): where the current `Job`
  has a separate `setup` field, the old format's tests are `setup + "\\n" + tests`, which is what the old
  `MBPP.job` built; and the same limits (fields the old `Limits` does not know are dropped and listed);
- new: the working tree's `suites.sandbox`, in this process.

Each side runs, per round: serial (`run_jobs(jobs, LIMITS, max_workers=1)`, one fresh sandboxed process
after another), then parallel (`run_jobs(jobs, LIMITS, max_workers=W)` for each W in `--workers`: a
thread pool, one sandboxed process per job). Rounds alternate old, new, old, new, ... (`--rounds`,
default 2) so that drift on a shared machine shows as differing rounds; each round records the load
average at its start. Before timing, each side runs the first job once untimed (both implementations
sweep leftovers of dead runs once per process before their first program; the old side is a fresh
process every round, so this keeps that one-off cost out of both sides' numbers).

Reported: programs/s per implementation, mode and round; `new_over_old` = new programs/s / old
programs/s per mode and round, and its median over rounds per mode (the acceptance target is
new >= 0.8 x old on 2 cores; `parallel x2` is the mode scoring uses there). Then, unless `--no-runner`,
the 500 gold responses through the real pipeline with the new sandbox (`harness.runner.evaluate` with
the `replay:` adapter, no cache), which is what `harness eval --suite mbpp` and `harness rescore` cost.

Every program must pass on both sides (exit 1 otherwise, each failure listed on stderr with its task id,
implementation, round and mode). Also recorded: CPU count, uid, and what each sandbox applied (network
namespace, hidden processes, privilege drop: the full set needs root). `--no-baseline` times the new
implementation alone.

Reproduce (from the repository root):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
      .venv/bin/python bench/mbpp_sandbox.py --rounds 3 --workers 2 --json bench/out/mbpp_sandbox.json
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.data import resolve_data_source
from suites.mbpp import LIMITS as PINNED_LIMITS
from suites.mbpp import MBPP
from suites.sandbox import Job, run_jobs
from suites.sandbox.timing import calibration

# Both sides run under the pinned limits scaled to this machine (as the scorer does): on a slow or busy
# host the slowest gold program (task 123, ~4 s of CPU) would otherwise fail either side at random.
LIMITS = calibration().scale(PINNED_LIMITS)

ROOT = Path(__file__).resolve().parents[1]
BASELINE_FILES = ("sandbox", "sandbox_child", "sandbox_cleanup")

# Runs in a fresh interpreter with the extracted old `harness` package first on PYTHONPATH. It only
# imports `suites.sandbox`; argv: the spec file (jobs, limits, worker counts) and the result file.
BASELINE_WORKER = """
import dataclasses, json, sys, time

import suites.sandbox as sandbox


def row(r):
    return {
        "status": r.status,
        "passed": bool(r.passed),
        "returncode": getattr(r, "returncode", None),
        "duration_s": r.duration_s,
        "stderr_tail": (getattr(r, "stderr_tail", "") or "")[-200:],
        "network_isolated": getattr(r, "network_isolated", None),
        "processes_hidden": getattr(r, "processes_hidden", None),
        "privileges_dropped": getattr(r, "privileges_dropped", None),
    }


with open(sys.argv[1], encoding="utf-8") as handle:
    spec = json.load(handle)
known = {f.name for f in dataclasses.fields(sandbox.Limits)}
limits = sandbox.Limits(**{k: v for k, v in spec["limits"].items() if k in known})
jobs = [
    sandbox.Job(j["program"], j["tests"], j["prelude"], tuple(j["entry_points"])) for j in spec["jobs"]
]
if jobs:
    sandbox.run_jobs(jobs[:1], limits, max_workers=1)  # warm-up: the once-per-process sweep
out = {"module": sandbox.__file__, "dropped_limits": sorted(set(spec["limits"]) - known), "modes": []}
for workers in spec["worker_counts"]:
    start = time.perf_counter()
    results = sandbox.run_jobs(jobs, limits, max_workers=workers)
    seconds = time.perf_counter() - start
    out["modes"].append({"workers": workers, "seconds": seconds, "results": [row(r) for r in results]})
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(out, handle)
"""


def result_row(result: Any) -> dict[str, Any]:
    """The fields the summary needs, read defensively (the two implementations' results differ)."""
    return {
        "status": result.status,
        "passed": bool(result.passed),
        "returncode": getattr(result, "returncode", None),
        "duration_s": result.duration_s,
        "stderr_tail": (getattr(result, "stderr_tail", "") or "")[-200:],
        "network_isolated": getattr(result, "network_isolated", None),
        "processes_hidden": getattr(result, "processes_hidden", None),
        "privileges_dropped": getattr(result, "privileges_dropped", None),
    }


def mode_names(worker_counts: Sequence[int]) -> list[str]:
    """The first count is the serial pass; the others are named by their worker count."""
    return ["serial", *(f"parallel x{w}" for w in worker_counts[1:])]


def summarize(
    mode: str, results: Sequence[dict[str, Any]], seconds: float, ids: Sequence[str]
) -> dict[str, Any]:
    failed = [
        {"task": ids[i], **{k: r[k] for k in ("status", "returncode", "duration_s", "stderr_tail")}}
        for i, r in enumerate(results)
        if not r["passed"]
    ]
    return {
        "mode": mode,
        "programs": len(results),
        "passed": len(results) - len(failed),
        "seconds": round(seconds, 2),
        "programs_per_s": round(len(results) / seconds, 1),
        "median_program_s": round(statistics.median(r["duration_s"] for r in results), 4),
        "network_isolated": all(r["network_isolated"] for r in results),
        "processes_hidden": all(r["processes_hidden"] for r in results),
        "privileges_dropped": all(r["privileges_dropped"] for r in results),
        "failures": failed,
    }


def old_format(job: Job) -> dict[str, Any]:
    """A job as the old `Job(program, tests, prelude, entry_points)`; setup code goes before the tests."""
    setup = getattr(job, "setup", None)
    tests = job.tests if setup is None else f"{setup}\n{job.tests}"
    return {
        "program": job.program,
        "tests": tests,
        "prelude": job.prelude,
        "entry_points": list(job.entry_points),
    }


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def _harness_imports(source: str) -> set[str]:
    """Names X of every `harness.X` module the source imports (anywhere, lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "harness":
                names = [f"harness.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "harness" and len(parts) > 1:
                found.add(parts[1])
    return found


def extract_baseline(rev: str, dest: Path) -> dict[str, Any]:
    """Write the old sandbox (and what it imports from `harness`) at `rev` into dest/harness/."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    package = dest / "harness"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    pending, done, missing = list(BASELINE_FILES), set(), []
    while pending:
        name = pending.pop()
        if name in done:
            continue
        done.add(name)
        try:
            source = _git("show", f"{commit}:harness/{name}.py")
        except subprocess.CalledProcessError:
            if name in BASELINE_FILES:
                raise SystemExit(f"harness/{name}.py does not exist at {rev} ({commit})") from None
            missing.append(name)  # e.g. a subpackage imported lazily; the old sandbox must cope without
            continue
        (package / f"{name}.py").write_text(source)
        pending.extend(_harness_imports(source) - done)
    return {"rev": rev, "commit": commit, "files": sorted(f"harness/{n}.py" for n in done - set(missing)),
            "not_found": sorted(missing)}  # fmt: skip


def time_old(
    folder: Path, jobs: list[dict[str, Any]], worker_counts: list[int]
) -> tuple[dict[str, Any], list[tuple[int, list[dict[str, Any]], float]]]:
    spec = folder / "spec.json"
    spec.write_text(
        json.dumps({"jobs": jobs, "limits": dataclasses.asdict(LIMITS), "worker_counts": worker_counts})
    )
    out = folder / "result.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    worker = folder / "baseline_worker.py"
    subprocess.run([sys.executable, str(worker), str(spec), str(out)], env=env, cwd=folder, check=True)
    result = json.loads(out.read_text())
    expected = str(folder / "harness" / "sandbox.py")
    if os.path.realpath(result["module"]) != os.path.realpath(expected):
        raise SystemExit(f"the baseline process imported {result['module']}, not {expected}")
    modes = [(m["workers"], m["results"], m["seconds"]) for m in result["modes"]]
    return {"dropped_limits": result["dropped_limits"]}, modes


def time_new(jobs: list[Job], worker_counts: list[int]) -> list[tuple[int, list[dict[str, Any]], float]]:
    modes = []
    for workers in worker_counts:
        start = time.perf_counter()
        results = run_jobs(jobs, LIMITS, max_workers=workers)
        seconds = time.perf_counter() - start
        modes.append((workers, [result_row(r) for r in results], seconds))
    return modes


def rows_for(
    impl: str, round_no: int, modes: list[tuple[int, list[dict[str, Any]], float]], ids: Sequence[str]
) -> list[dict[str, Any]]:
    names = mode_names([w for w, _, _ in modes])
    rows = [
        {"impl": impl, "round": round_no, **summarize(name, r, s, ids)}
        for name, (_, r, s) in zip(names, modes, strict=True)
    ]
    for row in rows:
        row["speedup_vs_serial"] = round(rows[0]["seconds"] / row["seconds"], 2)
    return rows


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
        "impl": "new",
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
    parser.add_argument("--rounds", type=int, default=2, help="old/new rounds, alternating (default 2)")
    parser.add_argument("--baseline-rev", default="b21a920", help="git revision of the old sandbox")
    parser.add_argument("--no-baseline", action="store_true", help="time the working tree's sandbox only")
    parser.add_argument("--no-runner", action="store_true", help="skip the pass through harness.runner")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    suite = MBPP()
    samples = list(suite.load(resolve_data_source(args.data_dir), args.limit).samples)
    jobs = []
    for sample in samples:
        gold = suite.gold_response(sample)
        assert gold is not None
        jobs.append(suite.job(sample, gold))
    ids = [s.id for s in samples]
    worker_counts = [1, *args.workers]
    print(f"{len(jobs)} gold programs, {os.cpu_count()} CPUs, uid {os.getuid()}", file=sys.stderr)

    report: dict[str, Any] = {
        "programs": len(jobs),
        "cpus": os.cpu_count(),
        "uid": os.getuid(),
        "python": sys.version.split()[0],
        "limits": dataclasses.asdict(LIMITS),
        "calibration": dataclasses.asdict(calibration()),
        "baseline": None,
        "rounds": [],
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mbpp-bench-baseline-") as tmp:
        folder = Path(tmp)
        old_jobs: list[dict[str, Any]] = []
        if not args.no_baseline:
            report["baseline"] = extract_baseline(args.baseline_rev, folder)
            (folder / "baseline_worker.py").write_text(BASELINE_WORKER)
            old_jobs = [old_format(job) for job in jobs]
            print(f"baseline: {', '.join(report['baseline']['files'])} at {report['baseline']['commit'][:12]}",
                  file=sys.stderr)  # fmt: skip
        if jobs:
            run_jobs(jobs[:1], LIMITS, max_workers=1)  # warm-up: the once-per-process sweep, untimed
        for round_no in range(1, args.rounds + 1):
            entry: dict[str, Any] = {
                "round": round_no,
                "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            }
            if not args.no_baseline:
                info, old_modes = time_old(folder, old_jobs, worker_counts)
                report["baseline"].update(info)
                entry["old"] = rows_for("old", round_no, old_modes, ids)
            new_modes = time_new(jobs, worker_counts)
            entry["new"] = rows_for("new", round_no, new_modes, ids)
            if not args.no_baseline:  # same programs on both sides: programs/s ratio = seconds ratio
                entry["new_over_old"] = {
                    name: round(old[2] / new[2], 3)
                    for name, old, new in zip(mode_names(worker_counts), old_modes, new_modes, strict=True)
                }
            report["rounds"].append(entry)
            for row in [*entry.get("old", []), *entry["new"]]:
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "failures"}))
            if "new_over_old" in entry:
                print(json.dumps({"round": round_no, "new_over_old": entry["new_over_old"]}))

    if not args.no_baseline:
        per_round = {
            name: [r["new_over_old"][name] for r in report["rounds"]] for name in mode_names(worker_counts)
        }
        report["new_over_old_per_round"] = per_round
        report["new_over_old"] = {mode: round(statistics.median(v), 3) for mode, v in per_round.items()}
        print(json.dumps({"new_over_old": report["new_over_old"], "per_round": per_round}))
    report["runner"] = None
    if not args.no_runner:
        report["runner"] = through_runner(suite, samples, args.data_dir)
        rows.append(report["runner"])
        print(json.dumps(report["runner"]))

    failures = [
        f"{row['impl']} round {row['round']} {row['mode']}: {f['task']} {f['status']} (exit {f['returncode']},"
        f" {f['duration_s']:.2f} s): {' | '.join(f['stderr_tail'].strip().splitlines()[-3:])}"
        for row in rows
        for f in row.get("failures", [])
    ]
    runner_short = [r for r in rows if "failures" not in r and r["passed"] != r["programs"]]
    failures += [f"{r['impl']} {r['mode']}: {r['passed']}/{r['programs']} passed" for r in runner_short]
    report["all_passed"] = not failures
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
