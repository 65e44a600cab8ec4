"""A stub OpenAI-compatible server for client-side tests (concurrency, retries, auth headers).

It is a real HTTP server on loopback, but not a model: each chat completion answers with the number
found last in the last user message ("The answer is N."), after a configurable latency. Tests that
need real model output use `harness serve` (llama.cpp) instead.

`require_authorization`: every route answers 401 unless the Authorization header is exactly that value
(proves the credentials are sent). `reply_plan(i, body)`: raw bytes to send as the 200 reply of the i-th
completion request instead of the real one (None: the real one), for malformed or oversized replies;
`chunked` sends those without a Content-Length, so only reading shows their size.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web


class StubOpenAIServer:
    def __init__(
        self,
        latency_s: float = 0.0,
        status: int = 200,
        ignore_n: bool = False,
        require_authorization: str | None = None,
        reply_plan: Callable[[int, dict[str, Any]], bytes | None] | None = None,
        chunked: bool = False,
    ) -> None:
        self.chunked = chunked  # planned replies go out chunked, with no Content-Length
        self.latency_s = latency_s
        self.require_authorization = require_authorization
        self.reply_plan = reply_plan
        self.rejected = 0  # requests answered 401
        self.ignore_n = ignore_n  # answer one choice whatever `n` asks, as llama.cpp's server does
        self.status = status
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StubOpenAIServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(
            self._runner.cleanup() if self._runner else asyncio.sleep(0), self._loop
        ).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if (
            self.require_authorization is None
            or request.headers.get("Authorization") == self.require_authorization
        ):
            return None
        self.rejected += 1
        return web.json_response({"error": {"message": "bad credentials"}}, status=401)

    async def _models(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.authorization.append(request.headers.get("Authorization"))
        if (denied := self._unauthorized(request)) is not None:
            return denied
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        if self.status != 200:
            return web.json_response({"error": {"message": f"stub says {self.status}"}}, status=self.status)
        planned = None if self.reply_plan is None else self.reply_plan(len(self.requests) - 1, body)
        if planned is not None and self.chunked:
            stream = web.StreamResponse(headers={"Content-Type": "application/json"})
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            try:
                for start in range(0, len(planned), 65536):
                    await stream.write(planned[start : start + 65536])
                await stream.write_eof()
            except (ConnectionError, RuntimeError):
                pass  # the client hung up once it had read enough
            return stream
        if planned is not None:
            return web.Response(body=planned, content_type="application/json")
        chat = "messages" in body
        numbers = re.findall(r"\d+", body["messages"][-1]["content"] if chat else body["prompt"])
        text = f"The answer is {numbers[-1] if numbers else 0}."
        choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        return web.Response(
            text=json.dumps({
                "id": "stub", "object": "chat.completion" if chat else "text_completion", "model": body["model"],
                "choices": [{"index": i, **choice, "finish_reason": "stop"}
                            for i in range(1 if self.ignore_n else body.get("n", 1))],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }),
            content_type="application/json",
        )  # fmt: skip
