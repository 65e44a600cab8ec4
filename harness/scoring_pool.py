"""Scoring beside generation, a bounded number of samples at a time: the code sandbox uses every core and
a model judge answers requests concurrently. A one-at-a-time scorer runs inline, so each sample is on
disk right after its response is cached (nothing is kept only in the cache)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType

from harness.suite import Suite, score_sample, scoring_slots
from harness.types import Completion, Sample, Score

OnScored = Callable[[Sample, Sequence[Completion], Score], None]


class ScoringPool:
    """Scores submitted samples, `scoring_slots(suite)` at a time, and hands each score to `on_scored` on
    the event loop's thread (so what it writes never interleaves). A scorer's error is raised by the next
    `submit()` or by `drain()`; leaving the `async with` block cancels whatever is still scoring."""

    def __init__(self, suite: Suite, on_scored: OnScored) -> None:
        self._suite = suite
        self._on_scored = on_scored
        self.slots = scoring_slots(suite)
        self._gate = asyncio.Semaphore(self.slots)
        self._scoring: set[asyncio.Task[None]] = set()

    async def submit(self, sample: Sample, completions: Sequence[Completion]) -> None:
        if self.slots == 1:
            return await self._score(sample, completions)
        for task in [t for t in self._scoring if t.done()]:  # a scorer's error stops the run at once
            self._scoring.discard(task)
            task.result()
        self._scoring.add(asyncio.create_task(self._score(sample, completions)))

    async def drain(self) -> None:
        """Waits for every submitted sample; the first scorer error is raised, the rest are cancelled on exit."""
        while self._scoring:
            done, _ = await asyncio.wait(self._scoring, return_when=asyncio.FIRST_EXCEPTION)
            for finished in done:
                self._scoring.discard(finished)
                finished.result()

    async def _score(self, sample: Sample, completions: Sequence[Completion]) -> None:
        async with self._gate:
            score = await score_sample(self._suite, sample, completions)
        self._on_scored(sample, completions, score)

    async def __aenter__(self) -> ScoringPool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for unfinished in self._scoring:
            unfinished.cancel()
        await asyncio.gather(*self._scoring, return_exceptions=True)
