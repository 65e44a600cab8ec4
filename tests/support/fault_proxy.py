"""A fault-injecting HTTP proxy for loopback tests: it sits between the harness and a real server.

Each request gets a fault from a plan (a function of the request's number) or is forwarded untouched:
- "429": Too Many Requests with Retry-After (seconds), nothing forwarded
- "500": Internal Server Error, nothing forwarded
- "reset": the connection is aborted before any byte of a response
- "truncate": forwarded, but only half of the body is sent under the full Content-Length
- "slow": forwarded after a delay
- "hang": forwarded after a delay longer than the client's timeout
Runs its own event loop in a thread, so tests can drive a subprocess through it. Every connection is
closed after one response, which keeps the parser tiny. `rate_plan` builds a seeded plan that faults a
fixed share of the requests with every kind.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable

import aiohttp

Plan = Callable[[int], str | None]
FAULTS = ("429", "500", "reset", "truncate", "slow", "hang")


def rate_plan(
    seed: int,
    every: int = 5,
    kinds: tuple[str, ...] = FAULTS,
    first: int = 1,
    early: tuple[str, ...] = ("hang", "slow"),
    blocks: int = 1000,
) -> Plan:
    """A seeded plan faulting exactly one request in each block of `every` (1/5 = 20%), from `first` on.

    The position inside each block is random; the kinds are successive seeded shuffles of `kinds`, so
    every kind comes once in each `len(kinds)` blocks (a plain 20% coin per request would leave kinds
    out of a 30-request run). The first round puts the `early` kinds first, so that the time they hold
    a request overlaps the rest of the run instead of adding to its end. Request `first - 1` and before
    (by default the harness's one `GET /models`) are never faulted.
    """
    rng = random.Random(seed)
    table: dict[int, str] = {}
    order: list[str] = []
    for block in range(blocks):
        if not order:
            head = [k for k in early if k in kinds] if block == 0 else []
            rest = [k for k in kinds if k not in head]
            rng.shuffle(head)
            rng.shuffle(rest)
            order = head + rest
        table[first + block * every + rng.randrange(every)] = order.pop(0)
    return table.get


class FaultProxy:
    def __init__(
        self, upstream: str, plan: Plan, retry_after_s: int = 1, slow_s: float = 1.0, hang_s: float = 30.0
    ):
        self.upstream = upstream.rstrip("/")  # scheme://host:port
        self.plan = plan
        self.retry_after_s, self.slow_s, self.hang_s = retry_after_s, slow_s, hang_s
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self.authorization_headers: list[str] = []
        self.port = 0
        self._count = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        """Requests received so far (faulted or not)."""
        with self._lock:
            return self._count

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._handlers:  # e.g. a "hang" still sleeping
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if "authorization" in headers:
            self.authorization_headers.append(headers["authorization"])
        with self._lock:
            number = self._count
            self._count += 1
        fault = self.plan(number)
        try:
            if fault is not None:
                self.injected[fault] += 1
            if fault == "reset":
                writer.transport.abort()
                return
            if fault in ("429", "500"):
                status = "429 Too Many Requests" if fault == "429" else "500 Internal Server Error"
                extra = f"Retry-After: {self.retry_after_s}\r\n" if fault == "429" else ""
                payload = b'{"error": "injected fault"}'
                writer.write(
                    f"HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                return
            if fault == "slow":
                await asyncio.sleep(self.slow_s)
            if fault == "hang":
                await asyncio.sleep(self.hang_s)
            assert self._session is not None
            forward_headers = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
            async with self._session.request(
                method, self.upstream + path, data=body, headers=forward_headers
            ) as response:
                status_code, reply = response.status, await response.read()
                content_type = response.headers.get("Content-Type", "application/json")
            self.forwarded += 1
            sent = reply[: len(reply) // 2] if fault == "truncate" else reply
            writer.write(
                f"HTTP/1.1 {status_code} X\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(reply)}\r\nConnection: close\r\n\r\n".encode()
                + sent
            )
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()
