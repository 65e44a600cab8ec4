"""Errors a user can act on. Each carries an exit code and a one-paragraph message with the fix.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: printed with its traceback
    USAGE = 2  # bad flags or checkpoint reference (argparse uses 2 as well)
    ENDPOINT = 3  # endpoint unreachable, rejected the key, or kept failing after retries
    DATA = 4  # data dir missing, dataset unavailable offline, corrupt run files, runs folder not writable
    MISSING_EXTRA = 5  # the backend for this checkpoint form is not installed
    INCONCLUSIVE = 11  # gate or `harness validate`: too few samples to tell
    CONTAMINATED = 12  # training data overlaps a suite's prompts (harness decontam, training stages)
    SPOT_CHECK_DISAGREES = 13  # `leaderboard verify`: regenerated samples disagree with the submitted ones
    VALIDATION_DIFFERS = 14  # `harness validate`: a suite is further than --tolerance from the published one
    BROKEN_PIPE = 141  # stdout's reader went away (`| head`): 128 + SIGPIPE, as a shell reports it
    INTERRUPTED = 130  # Ctrl-C; finished samples are kept


class HarnessError(Exception):
    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.problem if not self.fix else f"{self.problem} {self.fix}"


class UsageError(HarnessError):
    exit_code = ExitCode.USAGE


class EndpointError(HarnessError):
    exit_code = ExitCode.ENDPOINT


class DataError(HarnessError):
    exit_code = ExitCode.DATA


class StorageError(DataError):
    """The runs folder refused a write (full disk, read-only file system, no permission): exit 4 as well."""


class MissingExtraError(HarnessError):
    exit_code = ExitCode.MISSING_EXTRA


class ContaminationError(HarnessError):
    exit_code = ExitCode.CONTAMINATED
