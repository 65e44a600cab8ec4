"""`harness gate --baseline REF --candidate REF`: did the candidate regress? PASS, FAIL or INCONCLUSIVE per
suite and overall, from paired per-sample statistics, under a policy: a thin shell over `harness.gate` (harness/api/gate.py, harness/gating/).

REF: a run folder (or a unique part of its path under the runs folder), a checkpoint reference, or a
registry tag such as sft:latest (its runs are looked up in the runs folder). Exit codes: 0 PASS, 10 FAIL,
11 INCONCLUSIVE, 2 refused (suite versions, pinned suite settings or data differ; too few paired samples;
bad flags or policy), 4 a run is missing (see --eval-missing) or unreadable.

Generation settings that differ (max_tokens, temperature, ...) are not a refusal: the candidate's decoding
is part of what is tested. They are listed in every output; --strict-settings refuses instead.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_json_flag, add_quiet_flag, add_runs_flag


def register(commands: Any) -> None:
    p = commands.add_parser("gate", help="regression gate: candidate vs baseline", description=__doc__)
    p.add_argument("--baseline", required=True, metavar="REF", help="run folder, checkpoint or STAGE:TAG")
    p.add_argument("--candidate", required=True, metavar="REF", help="run folder, checkpoint or STAGE:TAG")
    p.add_argument(
        "--policy", metavar="FILE", help="gate policy YAML (default: built-in, docs/gate.example.yaml)"
    )
    p.add_argument(
        "--suite", action="append", metavar="NAME", help="suite to gate (repeatable; default: all)"
    )
    add_runs_flag(p)
    p.add_argument("--eval-missing", action="store_true", help="evaluate a missing run (as `harness eval`)")
    add_data_dir_flag(p, "data for --eval-missing")
    p.add_argument("--strict-settings", action="store_true", help="refuse when generation settings differ")
    add_json_flag(p)
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown summary to FILE")
    p.add_argument("--summary", action="store_true", help="append the Markdown to $GITHUB_STEP_SUMMARY")
    add_quiet_flag(p, "no progress or info lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.api.gate import gate

    result = gate(
        args.baseline,
        args.candidate,
        suites=args.suite,
        runs=args.runs,
        policy=args.policy,
        eval_missing=args.eval_missing,
        data_dir=args.data_dir,
        strict_settings=args.strict_settings,
        progress=not args.quiet,
    )
    text = result.markdown()
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(json.dumps(result.payload, indent=2) if args.json else result.table())
    return result.exit_code
