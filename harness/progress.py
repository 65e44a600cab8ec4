"""Progress of one (checkpoint, suite) run, so that no evaluation runs silent.

On a terminal: a tqdm bar named "SUITE · CHECKPOINT". Anywhere else (a file, a notebook, `| tee`): a plain
line on stderr every HARNESS_PROGRESS_INTERVAL seconds (default 30) or every 10% of the suite, whichever
comes first, and a final line. Each line names the suite and the checkpoint and gives samples done/total,
the rate and the ETA. Samples resumed from disk count as done from the start but not in the rate.

A checkpoint is shown redacted (a URL's credentials never reach a log) and cut to a short form.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TextIO

from harness.checkpoints import redact_reference
from harness.errors import UsageError

INTERVAL_ENV = "HARNESS_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0
SHORT_WIDTH = 48  # characters of a checkpoint reference shown in a bar or a line

Clock = Callable[[], float]


def progress_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between progress lines: $HARNESS_PROGRESS_INTERVAL, else 30."""
    raw = (os.environ if environ is None else environ).get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(
            f"{INTERVAL_ENV}={raw[:40]!r} is not a positive number of seconds.",
            f"Set it to one (export {INTERVAL_ENV}=10), or unset it for a progress line every "
            f"{DEFAULT_INTERVAL_S:g} s.",
        )
    return seconds


def short_reference(raw: str, width: int = SHORT_WIDTH) -> str:
    """A checkpoint reference as a bar or a log line shows it: redacted, then its form and its tail
    (the most telling part of a path or a URL) when it is longer than `width`."""
    text = redact_reference(raw)
    if len(text) <= width:
        return text
    form, sep, _ = text.partition(":")
    head = f"{form}:" if sep and len(form) <= 12 else ""
    return f"{head}…{text[len(text) - (width - len(head) - 1) :]}"


def duration(seconds: float) -> str:
    """42s, 3m 05s, 1h 02m."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _rate_text(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 10 else f"{rate:.2f}"


class Progress:
    """Shows nothing (progress=False); the two that show progress override it."""

    def advance(self, count: int = 1) -> None:
        """`count` more samples are scored and written."""

    def due_in(self) -> float | None:
        """Seconds until a line is due with no sample finishing (a slow first batch); None: needs no timer."""
        return None

    def tick(self) -> None:
        """The timer's call: a line when one is due."""

    def close(self, finished: bool) -> None:
        """The end of the run; `finished`: every sample is done (the final line)."""


class ProgressBar(Progress):
    """A tqdm bar on the terminal, named after the suite and the checkpoint."""

    def __init__(self, checkpoint: str, suite: str, total: int, resumed: int, stream: TextIO) -> None:
        from tqdm import tqdm

        self._bar: Any = tqdm(  # tqdm is untyped
            total=total, initial=resumed, unit="sample", file=stream, dynamic_ncols=True, leave=False,
            desc=f"{suite} · {short_reference(checkpoint)}",
        )  # fmt: skip

    def advance(self, count: int = 1) -> None:
        self._bar.update(count)

    def close(self, finished: bool) -> None:
        self._bar.close()


class ProgressLines(Progress):
    """Plain lines for logs: every `interval_s` seconds or every 10% of the suite, and a final line."""

    def __init__(
        self,
        checkpoint: str,
        suite: str,
        total: int,
        resumed: int,
        *,
        interval_s: float,
        clock: Clock = time.monotonic,
        stream: TextIO | None = None,
    ) -> None:
        self.label = f"{suite} on {short_reference(checkpoint)}"
        self.total = total
        self.resumed = resumed
        self.done = resumed
        self.interval_s = interval_s
        self._clock = clock
        self._stream = stream  # None: sys.stderr at the time of writing (pytest's capsys replaces it)
        self._started = self._last_line = clock()
        self._last_tenth = self._tenth()
        self._closed = False

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.done >= self.total:
            return  # the final line says it
        tenth = self._tenth()
        if tenth > self._last_tenth or self._clock() - self._last_line >= self.interval_s:
            self._last_tenth = tenth
            self._write(self.progress_line())

    def due_in(self) -> float:
        return max(0.0, self._last_line + self.interval_s - self._clock())

    def tick(self) -> None:
        if not self._closed and self.done < self.total and self.due_in() <= 0:
            self._write(self.progress_line())

    def close(self, finished: bool) -> None:
        if finished and not self._closed:
            self._write(self.final_line())
        self._closed = True

    def progress_line(self) -> str:
        _, rate = self._rate()
        percent = 100 * self.done // self.total if self.total else 100
        eta = duration((self.total - self.done) / rate) if rate > 0 else "unknown"
        return (
            f"harness: {self.label}: {self.done}/{self.total} samples ({percent}%), "
            f"{_rate_text(rate)} samples/s, ETA {eta}"
        )

    def final_line(self) -> str:
        elapsed, rate = self._rate()
        if self.resumed >= self.total:
            return f"harness: {self.label}: {self.done}/{self.total} samples, all resumed from the run folder"
        resumed = f", {self.resumed} resumed" if self.resumed else ""
        return (
            f"harness: {self.label}: {self.done}/{self.total} samples done in {duration(elapsed)} "
            f"({_rate_text(rate)} samples/s{resumed})"
        )

    def _rate(self) -> tuple[float, float]:
        elapsed = self._clock() - self._started
        new = self.done - self.resumed
        return elapsed, (new / elapsed if elapsed > 0 and new > 0 else 0.0)

    def _tenth(self) -> int:
        return 10 * self.done // self.total if self.total else 10

    def _write(self, line: str) -> None:
        self._last_line = self._clock()
        stream = self._stream or sys.stderr
        print(line, file=stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def progress_for(
    checkpoint: str,
    suite: str,
    total: int,
    resumed: int,
    enabled: bool,
    *,
    clock: Clock = time.monotonic,
    stream: TextIO | None = None,
) -> Progress:
    """What shows one run's progress: nothing when not `enabled`, a bar when stderr (or `stream`) is a
    terminal, plain lines otherwise."""
    if not enabled:
        return Progress()
    target = stream or sys.stderr
    if _is_terminal(target):
        return ProgressBar(checkpoint, suite, total, resumed, target)
    interval = progress_interval()
    return ProgressLines(checkpoint, suite, total, resumed, interval_s=interval, clock=clock, stream=stream)


@contextlib.asynccontextmanager
async def showing(progress: Progress) -> AsyncIterator[Progress]:
    """Runs `progress`'s timer while the body runs, then closes it: the final line only when the body
    finished without an error."""
    timer = asyncio.create_task(_timer(progress)) if progress.due_in() is not None else None
    finished = False
    try:
        yield progress
        finished = True
    finally:
        if timer is not None:
            timer.cancel()  # not awaited: awaiting here could swallow a cancellation meant for the caller
        progress.close(finished)


async def _timer(progress: Progress) -> None:
    while True:
        await asyncio.sleep(max(progress.due_in() or 0.0, 0.05))
        progress.tick()
