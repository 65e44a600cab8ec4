"""A minimal OpenAI-compatible server with a fixed per-request latency and a concurrency cap.

The benchmark fixture for `bench/endpoint_throughput.py`: it stands in for a model server whose
speed is known exactly, so a client's throughput can be compared with the server's capacity.

- `POST /v1/chat/completions` and `POST /v1/completions` wait for one of `--max-concurrency` slots
  (requests beyond that queue, like a real server's batch slots), hold it for `--latency` seconds, and
  answer `The answer is \\boxed{H}.` where H is the first 8 hex digits of the sha256 of the prompt
  (the last message's content, or the text prompt): deterministic and checkable.
  Capacity is therefore exactly `max_concurrency / latency` requests per second.
- `GET /v1/models` lists one model (`--model`, default `bench`); it is not counted.
- `GET /stats` returns the counters since the last `POST /reset`: requests served, errors, peak
  in-flight (connections being handled) and peak busy slots, the time of the first request's arrival and
  of the last response (server clock, `time.perf_counter`), the served rate over that window, and a
  sha256 over the sorted per-request prompt digests (so two clients can be shown to have sent the
  same prompts), plus the `max_tokens`/`temperature` values seen; `GET /stats?times=1` adds every
  request's arrival and response time (so a client's turnaround can be computed: with N requests in
  flight, request k + N is sent when response k comes back).

Run as its own process; it prints one line `READY port=N` on stdout when it listens:

    python bench/fixture_server.py --port 0 --latency 0.2 --max-concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Stats:
    served: int = 0
    errors: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    busy: int = 0
    peak_busy: int = 0
    first_arrival: float | None = None
    last_response: float | None = None
    digests: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    responses: list[float] = field(default_factory=list)
    params: Counter[str] = field(default_factory=Counter)

    def record(self, times: bool = False) -> dict[str, Any]:
        window = None
        if self.first_arrival is not None and self.last_response is not None:
            window = self.last_response - self.first_arrival
        return {
            "served": self.served,
            "errors": self.errors,
            "peak_in_flight": self.peak_in_flight,
            "peak_busy": self.peak_busy,
            "first_arrival": self.first_arrival,
            "last_response": self.last_response,
            "window_s": window,
            "served_per_s": self.served / window if window else None,
            "prompts_sha256": hashlib.sha256("\n".join(sorted(self.digests)).encode()).hexdigest(),
            "distinct_prompts": len(set(self.digests)),
            "params": dict(self.params),
            **({"arrivals": self.arrivals, "responses": self.responses} if times else {}),
        }


def answer_for(prompt: str) -> str:
    return f"The answer is \\boxed{{{hashlib.sha256(prompt.encode()).hexdigest()[:8]}}}."


def prompt_digest(body: dict[str, Any]) -> tuple[str, str]:
    """(the text the answer is derived from, a digest of everything the prompt consists of)."""
    if "messages" in body:
        messages = [{"role": m.get("role"), "content": m.get("content")} for m in body["messages"]]
        last = messages[-1]["content"] if messages else ""
        text = last if isinstance(last, str) else json.dumps(last)
        return text, hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    text = str(body.get("prompt", ""))
    return text, hashlib.sha256(text.encode()).hexdigest()


def build_app(latency: float, max_concurrency: int, model: str) -> web.Application:
    stats = Stats()
    slots = asyncio.Semaphore(max_concurrency)

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def complete(request: web.Request, chat: bool) -> web.Response:
        now = time.perf_counter()
        if stats.first_arrival is None:
            stats.first_arrival = now
        stats.arrivals.append(now)
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            try:
                body = await request.json()
                text, digest = prompt_digest(body)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
                stats.errors += 1
                return web.json_response({"error": {"message": f"bad request: {error}"}}, status=400)
            async with slots:
                stats.busy += 1
                stats.peak_busy = max(stats.peak_busy, stats.busy)
                try:
                    await asyncio.sleep(latency)
                finally:
                    stats.busy -= 1
            content = answer_for(text)
            stats.digests.append(digest)
            stats.params[f"max_tokens={body.get('max_tokens')} temperature={body.get('temperature')}"] += 1
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
                kind = "chat.completion"
            else:
                choice = {"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}
                kind = "text_completion"
            payload = {
                "id": f"bench-{stats.served}",
                "object": kind,
                "created": int(time.time()),
                "model": body.get("model", model),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": len(text.split()),
                    "completion_tokens": 6,
                    "total_tokens": len(text.split()) + 6,
                },
            }
            response = web.json_response(payload)
            stats.served += 1
            stats.last_response = time.perf_counter()
            stats.responses.append(stats.last_response)
            return response
        finally:
            stats.in_flight -= 1

    async def chat_completions(request: web.Request) -> web.Response:
        return await complete(request, chat=True)

    async def completions(request: web.Request) -> web.Response:
        return await complete(request, chat=False)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats.record(times=request.query.get("times") == "1"))

    async def reset(_: web.Request) -> web.Response:
        nonlocal stats
        stats = Stats()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", reset)
    return app


async def serve(args: argparse.Namespace) -> None:
    app = build_app(args.latency, args.max_concurrency, args.model)
    # A deep listen backlog: clients that open hundreds of connections at once must not be refused.
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    print(f"READY port={port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed in the READY line)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds each request holds a slot")
    parser.add_argument("--max-concurrency", type=int, default=64, help="slots; more requests queue")
    parser.add_argument("--model", default="bench", help="the model id /v1/models lists")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
