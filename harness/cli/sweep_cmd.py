"""`harness sweep FILE`: evaluate a sweep file's checkpoints x suites; `harness sweep status FILE`: its
progress per checkpoint and suite.

--executor local (default) runs every checkpoint's suites at once in this process, sharing each server's
request queue; --executor slurm submits an array job, one task per (checkpoint, suite, shard)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.argtypes import add_json_flag, add_quiet_flag, add_runs_flag, whole_number
from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.sweep.spec import SweepSpec

_count = whole_number(0)
_positive = whole_number(1)


def register(commands: Any) -> None:
    p = commands.add_parser(
        "sweep",
        help="evaluate checkpoints x suites from a sweep file (locally or on Slurm); `sweep status FILE`",
        description=__doc__,
        usage="harness sweep [--executor local|slurm] [options] FILE\n       harness sweep status FILE",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        nargs="+",
        metavar="FILE | status FILE",
        help="the sweep file (docs/sweeps.md: the format), or `status FILE` for its progress",
    )
    p.add_argument(
        "--executor", choices=("local", "slurm"), default="local", help="where to run (default: local)"
    )
    add_runs_flag(p, "runs folder; overrides the file's `runs`")
    slurm = p.add_argument_group("slurm executor (each overrides the file's `slurm:` value)")
    slurm.add_argument("--partition", metavar="P", help="Slurm partition")
    slurm.add_argument("--account", metavar="A", help="Slurm account")
    slurm.add_argument("--gpus-per-task", type=_count, metavar="N", help="GPUs per array task")
    slurm.add_argument("--cpus-per-task", type=_positive, metavar="N", help="CPUs per array task")
    slurm.add_argument("--mem", metavar="M", help="memory per task, e.g. 16G")
    slurm.add_argument("--time", metavar="T", help="time limit per task, e.g. 01:00:00")
    slurm.add_argument("--shards", type=_positive, metavar="N", help="array tasks per (checkpoint, suite)")
    slurm.add_argument(
        "--dry-run", action="store_true", help="write the batch script and print it; submit nothing"
    )
    add_json_flag(p, "print the results (local) as JSON: one {checkpoint, runs} per checkpoint")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.store import runs_root
    from harness.sweep.spec import load_sweep

    status, file = _target(args.target)
    spec = load_sweep(Path(file).expanduser())
    root = runs_root(args.runs or (None if spec.runs is None else str(spec.runs)))
    if status:
        from harness.sweep.status import format_status, sweep_status

        print(format_status(sweep_status(spec, root)))
        return 0
    if args.executor == "slurm":
        return _submit(args, spec, root)
    from harness.api.sweep import run_sweep_local
    from harness.cli.eval_cmd import print_results_table

    every = run_sweep_local(spec, root, progress=not args.quiet)
    if args.json:
        print(json.dumps([{"checkpoint": r.checkpoint, "runs": r.to_records()} for r in every], indent=2))
    else:
        for index, results in enumerate(every):
            if index:
                print()
            print_results_table(results, all_metrics=False)
    return 0


def _target(words: list[str]) -> tuple[bool, str]:
    if len(words) == 1:
        return False, words[0]
    if len(words) == 2 and words[0] == "status":
        return True, words[1]
    raise UsageError(
        f"`harness sweep {' '.join(words)}` names {len(words)} arguments.",
        "Run `harness sweep FILE` to evaluate a sweep file, or `harness sweep status FILE` for its progress.",
    )


def _submit(args: argparse.Namespace, spec: SweepSpec, root: Path) -> int:
    from harness.sweep.slurm import submit_sweep

    chosen = {
        "partition": args.partition, "account": args.account, "gpus_per_task": args.gpus_per_task,
        "cpus_per_task": args.cpus_per_task, "mem": args.mem, "time": args.time, "shards": args.shards,
    }  # fmt: skip
    options = replace(spec.slurm, **{k: v for k, v in chosen.items() if v is not None})
    submission = submit_sweep(spec, root, options, dry_run=args.dry_run)
    if submission.job_id is None:
        print(f"wrote {submission.script} ({submission.tasks} array tasks); not submitted (--dry-run)")
    else:
        print(
            f"submitted Slurm job {submission.job_id}: {submission.tasks} array tasks ({submission.script}); "
            f"`harness sweep status {spec.path}` shows progress"
        )
    return 0
