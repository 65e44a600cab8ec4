"""An OpenAI-compatible emulator of a continuous-batching server (vLLM-like) with a known capacity.

The benchmark server of `bench/scale_bench.py`: unlike `fixture_server.py` (a fixed latency per request),
it models what makes a real server's wall time: a bounded batch, steps that slow down as the batch grows,
and responses whose lengths differ by suite, so a client that leaves the batch half empty (a suite's tail,
suites run one after another) pays for it.

Timing model (defaults in brackets; all times divided by `--speed`):
- at most B sequences decode at once (`--batch`, 64); further requests wait in a FIFO queue;
- one decode step advances every running sequence by one token and takes t(b) = t0 + k * b seconds for
  b running sequences (`--t0` 0.020, `--k` 0.0005: 20.5 ms at b=1, 52 ms at b=64, i.e. 1,231 tokens/s at
  a full batch and speed 1);
- optionally a prefill cost per prompt token (`--prefill` 0 s), added to the step that admits the prompt
  (prompt tokens are counted as characters / 4);
- a sequence admitted in one step starts decoding in that step; it finishes after `length` steps.
The capacity is B / t(B) tokens per second, so the ideal wall time of a workload is its total decoded
tokens / capacity (`GET /stats` returns it as `ideal_s`).

Response lengths (tokens) are drawn per suite, deterministically from sha256(seed, the last 64 characters
of the question: the last user message, alice's fixed instruction cut off), so every client that sends the same question gets the same length whatever
it sends around it (few-shot turns or one flattened prompt). The suite is recognised from the prompt:
"There are 15 trees in the grove" (the first GSM8K exemplar) -> gsm8k; "You are an expert Python
programmer" -> mbpp; "Alice's Wonderland" -> alice; the question is one of IFEval's 541 prompts (read from
`--data-dir`/ifeval/input_data.jsonl) -> ifeval; anything else -> safety. The length is
min(draw, request's max_tokens). Distributions (see LENGTHS; the README's scaling section states why):
- ifeval: the 541 stored embedded-model responses in tests/fixtures/ifeval_embedded_responses.jsonl, as
  characters / 4, capped at 1,280 (empirical; mean 600 after the cap);
- the others: with probability p_cap the suite's cap (a 1B model rambling to max_tokens), else a lognormal
  with the given median and sigma, clipped to [8, cap]; calibrated on the embedded runs' completion_tokens
  (SmolLM2-135M through the harness: GSM8K p50 100 with 2 of 20 at the cap; MBPP 33-108; safety 161-512;
  alice 137-1,024) and moved toward what 1B instruct models write (shorter, fewer runaways).
The text is "tok " repeated to that length, ending with "The answer is 0." (gsm8k), "\\boxed{0}" (alice)
or a tiny Python function (mbpp), so every scorer runs; usage gives prompt and completion tokens.

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models` (`--models`, comma
separated; any of them may be asked for), `GET /stats` (counters since the last `POST /reset`).

Run as its own process; it prints `READY port=N` when it listens:

    python bench/emulator.py --port 0 --batch 64 --speed 10 --models m1,m2,m3,m4
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IFEVAL_FIXTURE = ROOT / "tests" / "fixtures" / "ifeval_embedded_responses.jsonl"
KEY_CHARS = 64
INSTRUCTION_SUFFIXES = ("Please reason step by step, and put your final answer within",)


@dataclass(frozen=True)
class LengthModel:
    """A suite's response lengths: p_cap at the cap, else lognormal(median, sigma) within [8, cap]."""

    cap: int
    p_cap: float
    median: float
    sigma: float
    empirical: tuple[int, ...] = ()

    def draw(self, u1: float, u2: float, u3: float) -> int:
        if self.empirical:
            return min(self.cap, self.empirical[int(u1 * len(self.empirical))])
        if u1 < self.p_cap:
            return self.cap
        # Box-Muller on (u2, u3), both in (0, 1].
        normal = math.sqrt(-2.0 * math.log(u2)) * math.cos(2.0 * math.pi * u3)
        return max(8, min(self.cap, round(self.median * math.exp(self.sigma * normal))))


def ifeval_lengths() -> tuple[int, ...]:
    if not IFEVAL_FIXTURE.exists():
        return ()
    with IFEVAL_FIXTURE.open(encoding="utf-8") as handle:
        return tuple(sorted(max(1, len(json.loads(line)["text"]) // 4) for line in handle))


LENGTHS: dict[str, LengthModel] = {
    "gsm8k": LengthModel(cap=512, p_cap=0.05, median=130, sigma=0.45),
    "ifeval": LengthModel(cap=1280, p_cap=0.15, median=380, sigma=0.8, empirical=ifeval_lengths()),
    "mbpp": LengthModel(cap=512, p_cap=0.02, median=70, sigma=0.5),
    "safety": LengthModel(cap=512, p_cap=0.15, median=220, sigma=0.5),
    "alice": LengthModel(cap=1024, p_cap=0.25, median=420, sigma=0.5),
}
ENDINGS = {
    "gsm8k": "The answer is 0.",
    "alice": "\\boxed{0}",
    "mbpp": "```python\ndef f(x):\n    return 0\n```",
}


def length_key(last_user: str) -> str:
    """The last 64 characters of the question: few-shot turns before it (sent as turns or flattened into
    one message) do not change it; a fixed instruction after it (alice's) is cut off first."""
    text = last_user.strip()
    for suffix in INSTRUCTION_SUFFIXES:
        if suffix in text:
            text = text[: text.rindex(suffix)].rstrip()
    return text[-KEY_CHARS:]


def uniforms(seed: int, key: str) -> tuple[float, float, float]:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return tuple((int.from_bytes(digest[i : i + 8], "big") + 1) / 2**64 for i in (0, 8, 16))  # type: ignore[return-value]


class SuiteRecognizer:
    def __init__(self, data_dir: Path | None) -> None:
        self.ifeval: set[str] = set()
        path = data_dir / "ifeval" / "input_data.jsonl" if data_dir else None
        if path and path.exists():
            with path.open(encoding="utf-8") as handle:
                self.ifeval = {json.loads(line)["prompt"].strip() for line in handle}

    def suite(self, whole: str, last_user: str) -> str:
        if "There are 15 trees in the grove" in whole:
            return "gsm8k"
        if "You are an expert Python programmer" in whole:
            return "mbpp"
        if "Alice's Wonderland" in whole:
            return "alice"
        if last_user.strip() in self.ifeval:
            return "ifeval"
        return "safety"


def response_text(suite: str, tokens: int) -> str:
    ending = ENDINGS.get(suite, "")
    filler = max(0, tokens - max(1, len(ending) // 4))
    return ("tok " * filler) + ending


@dataclass(frozen=True)
class StepModel:
    batch: int = 64
    t0: float = 0.020
    k: float = 0.0005
    prefill: float = 0.0
    speed: float = 1.0

    def step_s(self, running: int, admitted_prompt_tokens: int = 0) -> float:
        return (self.t0 + self.k * running + self.prefill * admitted_prompt_tokens) / self.speed

    @property
    def capacity(self) -> float:
        """Tokens per second at a full batch."""
        return self.batch / self.step_s(self.batch)

    def ideal_s(self, tokens: int, prompt_tokens: int = 0) -> float:
        return tokens / self.capacity + self.prefill * prompt_tokens / self.speed


@dataclass
class Sequence:
    remaining: int
    prompt_tokens: int
    done: asyncio.Future[None]


@dataclass
class Stats:
    requests: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    steps: int = 0
    busy_s: float = 0.0
    late_s: float = 0.0
    max_running: int = 0
    max_queued: int = 0
    batch_hist: dict[int, int] = field(default_factory=dict)
    per_suite: dict[str, list[int]] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    first_arrival: float | None = None
    last_response: float | None = None

    def record(self, model: StepModel) -> dict[str, Any]:
        window = None
        if self.first_arrival is not None and self.last_response is not None:
            window = self.last_response - self.first_arrival
        sizes = sorted(self.batch_hist.items())
        total = sum(self.batch_hist.values())
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "prompt_tokens": self.prompt_tokens,
            "steps": self.steps,
            "busy_s": round(self.busy_s, 4),
            "late_s": round(self.late_s, 4),
            "window_s": window,
            "first_arrival": self.first_arrival,
            "last_response": self.last_response,
            "ideal_s": model.ideal_s(self.tokens, self.prompt_tokens),
            "capacity_tokens_per_s": model.capacity,
            "max_running": self.max_running,
            "max_queued": self.max_queued,
            "mean_batch": sum(b * n for b, n in sizes) / total if total else None,
            "full_batch_steps": self.batch_hist.get(model.batch, 0),
            "per_suite": {s: {"n": len(v), "tokens": sum(v)} for s, v in sorted(self.per_suite.items())},
            "models": self.models,
            "model": {
                "batch": model.batch,
                "t0": model.t0,
                "k": model.k,
                "prefill": model.prefill,
                "speed": model.speed,
            },
        }


class Engine:
    """The continuous-batching loop: admit from the queue up to B, step, retire finished sequences."""

    def __init__(self, model: StepModel) -> None:
        self.model = model
        self.queue: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.wake = asyncio.Event()
        self.stats = Stats()

    async def generate(self, tokens: int, prompt_tokens: int) -> None:
        sequence = Sequence(tokens, prompt_tokens, asyncio.get_running_loop().create_future())
        self.queue.append(sequence)
        self.stats.max_queued = max(self.stats.max_queued, len(self.queue))
        self.wake.set()
        await sequence.done

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self.running and not self.queue:
                self.wake.clear()
                await self.wake.wait()
                deadline = loop.time()
            admitted = 0
            while self.queue and len(self.running) < self.model.batch:
                sequence = self.queue.popleft()
                admitted += sequence.prompt_tokens
                self.running.append(sequence)
            b = len(self.running)
            step = self.model.step_s(b, admitted)
            # Steps are scheduled back to back on the loop's clock, so a late wake-up is caught up on the
            # next step instead of lowering the capacity; lateness is recorded.
            deadline += step
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.stats.late_s += -delay
                deadline = loop.time()
            self.stats.steps += 1
            self.stats.busy_s += step
            self.stats.tokens += b
            self.stats.max_running = max(self.stats.max_running, b)
            self.stats.batch_hist[b] = self.stats.batch_hist.get(b, 0) + 1
            still = []
            for sequence in self.running:
                sequence.remaining -= 1
                if sequence.remaining <= 0:
                    if not sequence.done.done():
                        sequence.done.set_result(None)
                else:
                    still.append(sequence)
            self.running = still


def request_parts(body: dict[str, Any]) -> tuple[str, str]:
    """(every message's text joined, the last user message's text)."""
    if "messages" in body:
        texts = []
        last_user = ""
        for message in body["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            text = str(content or "")
            texts.append(text)
            if message.get("role") == "user":
                last_user = text
        return "\n".join(texts), last_user
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    return text, text


def build_app(model: StepModel, models: list[str], seed: int, data_dir: Path | None) -> Any:
    from aiohttp import web

    recognizer = SuiteRecognizer(data_dir)
    state = {"engine": Engine(model)}

    async def start(app: web.Application) -> None:
        app["engine_task"] = asyncio.create_task(state["engine"].run())

    async def list_models(_: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "emulator"} for m in models]}
        )

    async def complete(request: web.Request, chat: bool) -> web.Response:
        engine = state["engine"]
        stats = engine.stats
        now = time.perf_counter()
        if stats.first_arrival is None:
            stats.first_arrival = now
        try:
            body = await request.json()
            whole, last = request_parts(body)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            return web.json_response({"error": {"message": f"bad request: {error}"}}, status=400)
        name = str(body.get("model", models[0]))
        if name not in models:
            return web.json_response({"error": {"message": f"model {name!r} not served"}}, status=404)
        suite = recognizer.suite(whole, last)
        key = length_key(last)
        drawn = LENGTHS[suite].draw(*uniforms(seed, key))
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or drawn
        tokens = max(1, min(drawn, int(limit)))
        prompt_tokens = max(1, len(whole) // 4)
        await engine.generate(tokens, prompt_tokens)
        text = response_text(suite, tokens)
        finish = "length" if tokens < drawn else "stop"
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        stats.requests += 1
        stats.prompt_tokens += prompt_tokens
        stats.per_suite.setdefault(suite, []).append(tokens)
        stats.models[name] = stats.models.get(name, 0) + 1
        stats.last_response = time.perf_counter()
        return web.json_response({
            "id": f"emu-{stats.requests}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": name, "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                      "total_tokens": prompt_tokens + tokens},
        })  # fmt: skip

    async def chat_completions(request: web.Request) -> web.Response:
        return await complete(request, chat=True)

    async def completions(request: web.Request) -> web.Response:
        return await complete(request, chat=False)

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(state["engine"].stats.record(model))

    async def reset(_: web.Request) -> web.Response:
        engine = state["engine"]
        if engine.running or engine.queue:
            return web.json_response({"error": {"message": "busy"}}, status=409)
        engine.stats = Stats()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(start)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", reset)
    return app


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    model = StepModel(args.batch, args.t0, args.k, args.prefill, args.speed)
    data_dir = Path(args.data_dir) if args.data_dir else None
    app = build_app(model, args.models.split(","), args.seed, data_dir)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    print(f"READY port={runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY port=N)")
    parser.add_argument("--batch", type=int, default=64, help="sequences decoding at once (B)")
    parser.add_argument("--t0", type=float, default=0.020, help="seconds per step, fixed part")
    parser.add_argument("--k", type=float, default=0.0005, help="seconds per step per running sequence")
    parser.add_argument("--prefill", type=float, default=0.0, help="seconds per admitted prompt token")
    parser.add_argument("--speed", type=float, default=1.0, help="divide every time by this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the response lengths")
    parser.add_argument("--models", default="bench", help="model ids served (comma separated)")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"), help="IFEval prompts")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
