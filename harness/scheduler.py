"""One scheduler for a whole invocation: every suite of every checkpoint runs at once, and the requests that
go to the same endpoint wait in one bounded queue, so the server stays busy until the last request instead
of idling in each suite's tail.

- `RequestQueue`: one lane (a semaphore of the endpoint's concurrency) per endpoint. An endpoint is a
  server base URL with its replicas, so two checkpoints served by one vLLM (`http://h:8000/v1#lora1` and
  `#lora2`) share a lane; any other backend (llama.cpp, hf, vLLM in process, Tinker) is its own endpoint,
  with a lane of its own concurrency, which keeps its semantics (llama.cpp one call at a time, hf one
  batch at a time). Where adapters with different concurrencies share an endpoint, the lane takes the
  largest, and each adapter also keeps to its own.
- Checkpoints whose model loads into this process (embedded, gguf:, hf:, vllm:) take turns: two of them
  at once would hold two models in memory (two vLLM engines would not fit on one GPU).
- The queue in use is a context variable (`using_queue`), so the runner and `generate_in_batches` need no
  new parameter: code that sets none gets a private queue per call, as before.
- `run_all`: awaits coroutines concurrently; the first error cancels the others, waits for them to finish
  cancelling (their manifests say interrupted), and is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Coroutine, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.checkpoints import CheckpointRef, EndpointRef
from harness.types import Adapter

T = TypeVar("T")


# Backends that load the model into this process (RAM, or a GPU's memory for vLLM): an invocation evaluates
# such checkpoints one at a time (their suites still at once), each model freed before the next loads.
IN_PROCESS_FORMS = ("embedded", "gguf", "hf", "vllm")


def loads_model_here(ref: CheckpointRef) -> bool:
    return ref.form in IN_PROCESS_FORMS


def endpoint_key(ref: CheckpointRef, replicas: Sequence[str] = ()) -> Hashable | None:
    """What identifies the server behind `ref`: its base URL and its replicas' (AdapterOptions.replicas);
    None: not a server, the adapter object is then its own endpoint."""
    if not isinstance(ref, EndpointRef):
        return None
    return ("endpoint", ref.base_url.rstrip("/"), tuple(sorted(r.rstrip("/") for r in replicas)))


@dataclass
class Lane:
    """A bound on calls in flight; `peak` is the most there were at once (benchmarks and tests read it)."""

    limit: int
    gate: asyncio.Semaphore = field(init=False)
    in_flight: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        self.gate = asyncio.Semaphore(self.limit)

    def widen(self, limit: int) -> None:
        """Raise the bound (a later adapter on the same endpoint allows more calls at once)."""
        for _ in range(limit - self.limit):
            self.gate.release()
        self.limit = max(self.limit, limit)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self.gate:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1


class RequestQueue:
    """The bounded queues of one invocation, one lane per endpoint (see the module docstring)."""

    def __init__(self) -> None:
        self._endpoints: dict[Hashable, Lane] = {}
        self._lanes: dict[int, tuple[Lane, ...]] = {}  # by id(adapter): the lanes a call holds, in order
        self._adapters: list[Adapter] = []  # keeps each id() above alive and unique
        self._preflight_locks: dict[int, asyncio.Lock] = {}
        self._preflighted: set[int] = set()

    def register(self, adapter: Adapter, endpoint: Hashable | None = None) -> None:
        """Route `adapter`'s calls through `endpoint`'s lane (None: a lane of its own). An adapter first
        seen by `slot` without registering gets a lane of its own (a judge's adapter, say)."""
        if id(adapter) in self._lanes:
            return
        limit = max(1, adapter.concurrency)
        if endpoint is None:
            lanes: tuple[Lane, ...] = (Lane(limit),)
        else:
            shared = self._endpoints.get(endpoint)
            if shared is None:
                shared = self._endpoints[endpoint] = Lane(limit)
            shared.widen(limit)
            lanes = (Lane(limit), shared)  # its own bound first: never hold a shared slot while waiting
        self._lanes[id(adapter)] = lanes
        self._adapters.append(adapter)

    def lanes(self, adapter: Adapter) -> tuple[Lane, ...]:
        self.register(adapter)
        return self._lanes[id(adapter)]

    def endpoint_lane(self, adapter: Adapter) -> Lane:
        """The lane that bounds `adapter`'s endpoint as a whole."""
        return self.lanes(adapter)[-1]

    @contextlib.asynccontextmanager
    async def slot(self, adapter: Adapter) -> AsyncIterator[None]:
        """Holds one call's place in every lane of `adapter`."""
        async with contextlib.AsyncExitStack() as stack:
            for lane in self.lanes(adapter):
                await stack.enter_async_context(lane.held())
            yield

    async def preflight(self, adapter: Adapter) -> None:
        """`adapter.preflight()` once per queue: suites that start together do not all load the model or
        ask the server at once. A failed preflight is tried again by the next suite (and fails it too)."""
        key = id(adapter)
        self.register(adapter)
        lock = self._preflight_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._preflighted:
                await adapter.preflight()
                self._preflighted.add(key)


_CURRENT: contextvars.ContextVar[RequestQueue | None] = contextvars.ContextVar("harness_queue", default=None)


def current_queue() -> RequestQueue | None:
    return _CURRENT.get()


@contextlib.contextmanager
def using_queue(queue: RequestQueue) -> Iterator[RequestQueue]:
    """Tasks created inside (and the code they run) send their requests through `queue`."""
    token = _CURRENT.set(queue)
    try:
        yield queue
    finally:
        _CURRENT.reset(token)


async def run_all(work: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """The results of `work`, run concurrently, in order. The first error (in the order errors happen)
    cancels the rest, which are awaited until they have finished cancelling, and is then raised; being
    cancelled cancels them all the same way."""
    tasks = [asyncio.create_task(coroutine) for coroutine in work]
    try:
        pending: set[asyncio.Task[T]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:  # in spec order among those that failed in this round
                error = task.exception() if task in done and not task.cancelled() else None
                if error is not None:
                    raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
