"""Many one-request callers, one batched backend: a peer harness's per-sample calls (the bridges) and the
runner's per-sample judge calls (WildGuard on a local model) reach `adapter.generate()` in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from harness.types import Adapter, Completion, Request


class RequestBatcher:
    """Gathers concurrent one-request calls into `adapter.generate()` batches of up to `batch_size`, with
    at most `concurrency` batches in flight: the peers call once per sample, our local backends (hf,
    vllm) are fast only when given many prompts at once. Bound to the event loop it is first used in."""

    def __init__(self, adapter: Adapter, window_s: float = 0.005) -> None:
        self._adapter = adapter
        self._size = max(1, int(adapter.batch_size))
        self._slots = asyncio.Semaphore(max(1, int(adapter.concurrency)))
        self._window_s = window_s  # lets callers that start together share a batch
        self._pending: list[tuple[Request, asyncio.Future[Completion]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, request: Request) -> Completion:
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return list(await asyncio.gather(*(self.submit(r) for r in requests)))

    async def _flush(self) -> None:
        await asyncio.sleep(self._window_s)
        while self._pending:
            await self._slots.acquire()  # requests that arrive meanwhile join the next batch
            chunk = [(r, f) for r, f in self._pending[: self._size] if not f.done()]
            del self._pending[: self._size]
            if not chunk:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(chunk))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, chunk: list[tuple[Request, asyncio.Future[Completion]]]) -> None:
        try:
            completions = await self._adapter.generate([request for request, _ in chunk])
            if len(completions) != len(chunk):
                raise RuntimeError(
                    f"{self._adapter.identity()} returned {len(completions)} completions "
                    f"for {len(chunk)} requests"
                )
        except asyncio.CancelledError:
            for _, future in chunk:
                future.cancel()
            raise
        except Exception as error:
            for _, future in chunk:
                if not future.done():
                    future.set_exception(error)
        else:
            for (_, future), completion in zip(chunk, completions, strict=True):
                if not future.done():
                    future.set_result(completion)
        finally:
            self._slots.release()
