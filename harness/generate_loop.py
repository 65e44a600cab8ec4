"""The generate loop: requests go to the adapter `batch_size` at a time with `concurrency` calls in flight,
and each batch is handed on as soon as it returns, so its samples are scored and written while later
batches are still generating.

The bound on calls in flight is the invocation's request queue (harness.scheduler) when one is in use, so
suites running at once share their endpoint's bound; without one, a private queue of the adapter's
concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from harness.scheduler import RequestQueue, current_queue
from harness.types import Adapter, Completion, Request

OnBatch = Callable[[list[Request], list[Completion]], Awaitable[None]]


async def generate_in_batches(
    adapter: Adapter, requests: Sequence[Request], on_batch: OnBatch, queue: RequestQueue | None = None
) -> None:
    """Awaits `on_batch(batch, completions)` for each batch in the order the batches finish. Nothing is
    sent (not even the preflight) when there is nothing to generate. An error from the adapter or from
    `on_batch` cancels the calls still in flight and is raised. `queue`: whose bound the calls wait in
    (default: the one in use, else a private one)."""
    if not requests:
        return
    lanes = queue or current_queue() or RequestQueue()
    await lanes.preflight(adapter)
    size = max(1, adapter.batch_size)
    batches = [list(requests[i : i + size]) for i in range(0, len(requests), size)]

    async def run_batch(batch: list[Request]) -> tuple[list[Request], list[Completion]]:
        async with lanes.slot(adapter):
            return batch, await adapter.generate(batch)

    tasks = [asyncio.create_task(run_batch(b)) for b in batches]
    try:
        for next_done in asyncio.as_completed(tasks):
            batch, completions = await next_done
            await on_batch(batch, completions)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
