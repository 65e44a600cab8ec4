"""`harness` command line. One subcommand per module; each imports its heavy parts inside run()."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from harness.errors import ExitCode, HarnessError
from harness.version import __version__

SUBCOMMANDS = (
    "eval",
    "runs",
    "show",
    "rescore",
    "serve",
    "suites",
    "checkpoints",
    "export-hf",
    "train",
    "pipeline",
    "decontam",
    "curate",
    "package",
    "leaderboard",
    "report",
    "gate",
    "doctor",
)


def _version_text() -> str:
    import importlib.util

    lines = [f"harness {__version__}"]
    for package in ("harness", "suites", "adapters", "training", "reports", "leaderboard"):
        spec = importlib.util.find_spec(package)
        where = (
            spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else "not found"
        )
        lines.append(f"  {package:<12} {where}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Score any checkpoint on IFEval, safety, GSM8K, MBPP and Alice puzzles; resume, cache, gate.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="version and where each package loads from"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"harness.cli.{name.replace('-', '_')}_cmd").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="harness: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except HarnessError as error:
        if args.debug:
            traceback.print_exc()
        print(f"harness: error: {error.message}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print(
            "harness: interrupted; finished samples are saved, re-run the same command to resume.",
            file=sys.stderr,
        )
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
