"""`harness` command line. One subcommand per module; each imports its heavy parts inside run()."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from harness.errors import ExitCode, HarnessError
from harness.version import __version__

SUBCOMMANDS = (
    "eval",
    "sweep",
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
    "reproduce",
    "leaderboard",
    "report",
    "gate",
    "validate",
    "export",
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


# A reader that closed the pipe early (`harness report ... | head`): 128 + SIGPIPE, the status a shell
# shows for any Unix tool killed by SIGPIPE (`set -o pipefail` sees it). Not 1, which here means a bug.
BROKEN_PIPE_EXIT = int(ExitCode.BROKEN_PIPE)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not raise again (Python docs,
    "Note on SIGPIPE" in the signal module)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed or replaced by a non-file: nothing to flush
        pass
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # any command, --help included: the reader has all it wanted
        _silence_stdout()
        return BROKEN_PIPE_EXIT


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="harness: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handler, not at interpreter exit
        return code
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
