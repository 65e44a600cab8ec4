"""Endpoint throughput: this harness vs lm-eval vs inspect-ai against one fixture server, same prompts.

What is measured. `bench/fixture_server.py` runs as its own process with a fixed per-request latency L
and C slots (requests beyond C queue), so its capacity is exactly C / L requests/s. Each harness sends
the same 1,000 single-turn chat prompts to it (`/v1/chat/completions`):

- the prompts: the first 1,000 samples of this harness's `alice` suite (Kaggle Nemotron puzzles, the
  pinned stratified split, 0-shot, one user turn = puzzle + the \\boxed{} instruction), read through the
  suite itself from $HARNESS_DATA_DIR and written to `bench/out/throughput/prompts.jsonl`;
- this harness: `harness eval --checkpoint http://127.0.0.1:PORT/v1#bench --suite alice --limit 1000
  --concurrency N --no-cache --fresh --quiet --json` (the suite as is);
- lm-eval: `lm_eval --model local-chat-completions --model_args base_url=...,model=bench,
  num_concurrent=N,max_retries=1,tokenized_requests=False --apply_chat_template --tasks bench_alice
  --include_path DIR` over a generated `generate_until` YAML task reading prompts.jsonl (no tokenizer
  is loaded: local-chat-completions defaults to tokenizer_backend=None);
- inspect-ai: `inspect eval bench_alice_task.py --model openai-api/bench/bench --max-connections N`
  (BENCH_BASE_URL / BENCH_API_KEY), a generated Task over prompts.jsonl, run with cwd = its folder
  (inspect 0.3.285 crashes on an absolute task path under Python 3.11).

All three score what comes back (alice's \\boxed{} matcher, lm-eval's exact_match, inspect's match()),
all at temperature 0 and max_tokens 1024. The server hashes every request's messages: a run counts only
if it served 1,000 requests, no errors, 1,000 distinct prompts, and the digest over the sorted prompt
hashes equals the one our harness produced (the JSON line records `same_prompts`).

Per run two numbers: wall time around the whole command (start-up, imports, data loading, scoring,
writing logs), and the server's rate = requests / (last response - first request arrival). The ratio
to capacity is served rate / (C / L). Note that 1,000 requests in C-wide waves need ceil(1000 / C)
waves, so even a perfect client reaches at most 1000 / (ceil(1000 / C) * L): 97.7% of capacity for
both default configurations (C=64, L=0.2 and C=128, L=1.0); reported as `ideal_pct`.

Each harness sweeps its concurrency knob (--concurrency / num_concurrent / max_connections) over
multiples of C, every point repeated --repeats times in an interleaved order (repeat-major, then
concurrency, then harness) so background load hits all three alike; the table reports medians and the
best concurrency per harness (by median served rate).

Reproduce (about 15 minutes on 2 cores):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
        .venv/bin/python bench/endpoint_throughput.py            # --configs 0.2:64,1.0:128 --repeats 3

Output: one JSON line per run in bench/out/throughput/runs.jsonl, a summary line per (config, harness)
in bench/out/throughput/summary.jsonl, and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
HARNESSES = ("harness", "lm-eval", "inspect", "inspect-lean", "aiohttp-floor")
TASK = "bench_alice"
MAX_TOKENS = 1024

LM_EVAL_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {prompts}
test_split: test
output_type: generate_until
doc_to_text: "{{{{content}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0
  max_gen_toks: {max_tokens}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

INSPECT_TASK = '''\
"""The benchmark prompts as an inspect-ai Task (written by bench/endpoint_throughput.py)."""

import json

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import match
from inspect_ai.solver import generate


@task
def {task}() -> Task:
    with open("prompts.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    samples = [Sample(id=r["id"], input=r["content"], target=r["target"]) for r in rows]
    return Task(
        dataset=MemoryDataset(samples),
        solver=generate(),
        scorer=match(),
        config=GenerateConfig(max_tokens={max_tokens}, temperature=0.0),
    )
'''


@dataclass(frozen=True)
class Config:
    latency: float
    slots: int

    @property
    def capacity(self) -> float:
        return self.slots / self.latency

    def ideal(self, n: int) -> float:
        """The best rate any client can get for n requests: ceil(n / C) full waves of L seconds."""
        return n / (math.ceil(n / self.slots) * self.latency)

    @property
    def label(self) -> str:
        return f"L={self.latency:g}s C={self.slots}"


def parse_configs(text: str) -> list[Config]:
    configs = []
    for part in text.split(","):
        latency, slots = part.split(":")
        configs.append(Config(float(latency), int(slots)))
    return configs


def write_prompts(folder: Path, limit: int) -> Path:
    """The first `limit` alice requests exactly as this harness builds them, for the other two."""
    sys.path.insert(0, str(ROOT))
    from harness.data import resolve_data_source
    from harness.suite import SuiteOptions
    from suites import get_suite

    suite = get_suite("alice", SuiteOptions())
    loaded = suite.load(resolve_data_source(None), limit)
    path = folder / "prompts.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for sample in loaded.samples:
            (request,) = suite.requests(sample, suite.default_settings(), "chat")
            assert request.messages is not None and len(request.messages) == 1
            row = {"id": sample.id, "content": request.messages[0].content, "target": sample.target}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if len(loaded.samples) != limit:
        raise SystemExit(f"alice has only {len(loaded.samples)} samples, asked for {limit}")
    (folder / "lm_eval_task").mkdir(exist_ok=True)
    (folder / "lm_eval_task" / f"{TASK}.yaml").write_text(
        LM_EVAL_YAML.format(task=TASK, prompts=path, max_tokens=MAX_TOKENS), encoding="utf-8"
    )
    (folder / f"{TASK}_task.py").write_text(
        INSPECT_TASK.format(task=TASK, max_tokens=MAX_TOKENS), encoding="utf-8"
    )
    return path


class Server:
    def __init__(self, config: Config) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "fixture_server.py"), "--port", "0",
             "--latency", str(config.latency), "--max-concurrency", str(config.slots)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("READY port="):
            self.process.kill()
            raise SystemExit(f"fixture server did not start: {line!r}")
        self.port = int(line.removeprefix("READY port="))
        self.base = f"http://127.0.0.1:{self.port}"

    def call(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def command(
    harness: str, server: Server, concurrency: int, limit: int, work: Path, scratch: Path
) -> tuple[list[str], Path]:
    """(argv, cwd) for one run."""
    if harness == "harness":
        return [
            str(BIN / "harness"), "eval", "--checkpoint", f"{server.base}/v1#bench", "--suite", "alice",
            "--limit", str(limit), "--concurrency", str(concurrency), "--no-cache", "--fresh", "--quiet",
            "--json", "--runs", str(scratch / "runs"),
        ], ROOT  # fmt: skip
    if harness == "lm-eval":
        model_args = (
            f"base_url={server.base}/v1/chat/completions,model=bench,num_concurrent={concurrency},"
            "max_retries=1,tokenized_requests=False"
        )
        return [
            str(BIN / "lm_eval"), "--model", "local-chat-completions", "--model_args", model_args,
            "--apply_chat_template", "--tasks", TASK, "--include_path", str(work / "lm_eval_task"),
            "--limit", str(limit),
        ], work  # fmt: skip
    if harness in ("inspect", "inspect-lean"):
        lean = ["--no-log-realtime", "--no-log-samples"] if harness == "inspect-lean" else []
        return [
            str(BIN / "inspect"), "eval", f"{TASK}_task.py", "--model", "openai-api/bench/bench",
            "--max-connections", str(concurrency), "--limit", str(limit), "--display", "none",
            "--log-dir", str(scratch / "inspect-logs"), "--max-retries", "1", *lean,
        ], work  # fmt: skip
    if harness == "aiohttp-floor":
        return [
            sys.executable, str(Path(__file__).resolve()), "--floor-client", server.base,
            "--floor-concurrency", str(concurrency), "--limit", str(limit), "--out", str(work),
        ], work  # fmt: skip
    raise ValueError(harness)


def run_once(
    harness: str, server: Server, config: Config, concurrency: int, limit: int, work: Path, repeat: int
) -> dict[str, Any]:
    env = dict(os.environ, BENCH_BASE_URL=f"{server.base}/v1", BENCH_API_KEY="bench", TQDM_DISABLE="1")
    server.call("/reset", "POST")
    with tempfile.TemporaryDirectory(prefix="bench-", dir=work) as scratch_dir:
        argv, cwd = command(harness, server, concurrency, limit, work, Path(scratch_dir))
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - start
        answers_ok = (
            check_harness_answers(done.stdout, work)
            if harness == "harness" and done.returncode == 0
            else None
        )
    stats = server.call("/stats?times=1")
    rate = stats["served_per_s"] or 0.0
    turnaround = turnaround_ms(stats.pop("arrivals"), stats.pop("responses"), concurrency)
    row = {
        "config": config.label, "latency_s": config.latency, "slots": config.slots,
        "capacity_rps": config.capacity, "harness": harness, "concurrency": concurrency, "repeat": repeat,
        "rc": done.returncode, "wall_s": round(wall, 3), "wall_rps": round(limit / wall, 2),
        "served": stats["served"], "errors": stats["errors"], "distinct_prompts": stats["distinct_prompts"],
        "window_s": stats["window_s"], "served_rps": round(rate, 2),
        "pct_capacity": round(100 * rate / config.capacity, 2),
        "peak_in_flight": stats["peak_in_flight"], "peak_busy": stats["peak_busy"],
        "prompts_sha256": stats["prompts_sha256"], "params": stats["params"],
        "turnaround_ms_p50": turnaround[0], "turnaround_ms_p90": turnaround[1],
        "load_avg_1m": os.getloadavg()[0], "answers_ok": answers_ok,
    }  # fmt: skip
    if done.returncode != 0 or stats["served"] != limit:
        row["stderr_tail"] = done.stderr[-2000:]
    return row


def floor_client(base: str, concurrency: int, limit: int, work: Path) -> int:
    """The least a Python client can do: one aiohttp session, a semaphore, the same payloads, no
    scoring and no storage. Its served rate is what this fixture and machine allow at all."""
    import asyncio

    import aiohttp

    rows = [json.loads(line) for line in (work / "prompts.jsonl").open(encoding="utf-8")][:limit]

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(row: dict[str, Any]) -> str:
                payload = {
                    "model": "bench", "messages": [{"role": "user", "content": row["content"]}],
                    "max_tokens": MAX_TOKENS, "temperature": 0.0, "top_p": 1.0, "seed": 0,
                }  # fmt: skip
                async with gate, session.post(f"{base}/v1/chat/completions", json=payload) as response:
                    body = await response.json()
                    return str(body["choices"][0]["message"]["content"])

            await asyncio.gather(*(one(row) for row in rows))

    asyncio.run(run())
    return 0


def check_harness_answers(stdout: str, work: Path) -> bool:
    """Every stored response of our harness's run is the fixture's answer to that sample's prompt."""
    sys.path.insert(0, str(BENCH))
    from fixture_server import answer_for

    run_dir = Path(json.loads(stdout)[0]["run_dir"])
    prompts = {
        r["id"]: r["content"] for r in map(json.loads, (work / "prompts.jsonl").open(encoding="utf-8"))
    }
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").open(encoding="utf-8")]
    return len(records) == len(prompts) and all(
        r["completions"][0]["texts"][0] == answer_for(prompts[r["id"]]) for r in records
    )


def turnaround_ms(
    arrivals: list[float], responses: list[float], concurrency: int
) -> tuple[float | None, float | None]:
    """Client turnaround: a client with N requests in flight sends request k + N when response k comes
    back, so arrival[k + N] - response[k] is the time from a response leaving the server to the next
    request arriving (network, the client's own work, and its scheduling). (p50, p90) in ms."""
    arrivals, responses = sorted(arrivals), sorted(responses)
    gaps = [1000 * (arrivals[k + concurrency] - responses[k]) for k in range(len(arrivals) - concurrency)]
    if not gaps:
        return None, None
    gaps.sort()
    return round(statistics.median(gaps), 2), round(gaps[int(0.9 * (len(gaps) - 1))], 2)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(rows: list[dict[str, Any]], config: Config, limit: int) -> list[dict[str, Any]]:
    reference = next((r["prompts_sha256"] for r in rows if r["harness"] == "harness" and r["rc"] == 0), None)
    out = []
    for harness in HARNESSES:
        mine = [r for r in rows if r["harness"] == harness]
        if not mine:
            continue
        points = {}
        for concurrency in sorted({r["concurrency"] for r in mine}):
            ok = [
                r for r in mine if r["concurrency"] == concurrency and r["rc"] == 0 and r["served"] == limit
            ]
            points[concurrency] = {
                "ok_runs": len(ok),
                "served_rps": median([r["served_rps"] for r in ok]),
                "wall_s": median([r["wall_s"] for r in ok]),
                "turnaround_ms_p50": median(
                    [r["turnaround_ms_p50"] for r in ok if r["turnaround_ms_p50"] is not None]
                ),
            }
        good = {c: p for c, p in points.items() if p["ok_runs"]}
        best = max(good, key=lambda c: good[c]["served_rps"]) if good else None
        valid = [r for r in mine if r["rc"] == 0 and r["served"] == limit]
        out.append({
            "config": config.label, "harness": harness, "capacity_rps": config.capacity, "slots": config.slots,
            "ideal_pct": round(100 * config.ideal(limit) / config.capacity, 2),
            "best_concurrency": best,
            "served_rps": None if best is None else round(good[best]["served_rps"], 1),
            "pct_capacity": None if best is None else round(100 * good[best]["served_rps"] / config.capacity, 1),
            "wall_s": None if best is None else round(good[best]["wall_s"], 2),
            "best_wall_s": round(min(p["wall_s"] for p in good.values()), 2) if good else None,
            "same_prompts": bool(valid) and all(r["prompts_sha256"] == reference and r["distinct_prompts"] == limit for r in valid),
            "failed_runs": len(mine) - len(valid),
            "sweep": points,
        })  # fmt: skip
    return out


def markdown(summaries: list[dict[str, Any]], limit: int) -> str:
    lines = [
        f"| config (capacity) | harness | best concurrency | served req/s | % of capacity | wall s (whole command) | {limit / 1000:g}k req / wall s | sweep: served req/s by concurrency | client turnaround p50 ms at n=C | same prompts |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for s in summaries:
        sweep = ", ".join(f"{c}: {p['served_rps']:.0f}" for c, p in s["sweep"].items() if p["ok_runs"])
        wall_rate = f"{limit / s['wall_s']:.0f}" if s["wall_s"] else "-"
        at_c = s["sweep"].get(s["slots"], {}).get("turnaround_ms_p50")
        lines.append(
            f"| {s['config']} ({s['capacity_rps']:g}/s, ideal {s['ideal_pct']}%) | {s['harness']} | {s['best_concurrency']} "
            f"| {s['served_rps']} | {s['pct_capacity']} | {s['wall_s']} | {wall_rate} | {sweep} | {at_c if at_c is not None else '-'} | {'yes' if s['same_prompts'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", default="0.2:64,1.0:128", help="LATENCY:SLOTS,... (default 0.2:64,1.0:128)"
    )
    parser.add_argument("--limit", type=int, default=1000, help="requests (prompts) per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per (harness, concurrency)")
    parser.add_argument(
        "--multipliers",
        default="1,2,4",
        help="concurrency values as multiples of the slots C (default 1,2,4)",
    )
    parser.add_argument("--harnesses", default=",".join(HARNESSES), help="subset, comma-separated")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "throughput")
    parser.add_argument("--floor-client", metavar="URL", help=argparse.SUPPRESS)  # internal: the floor run
    parser.add_argument("--floor-concurrency", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_client:
        return floor_client(args.floor_client, args.floor_concurrency, args.limit, args.out)

    args.out.mkdir(parents=True, exist_ok=True)
    write_prompts(args.out, args.limit)
    harnesses = [h for h in args.harnesses.split(",") if h]
    multipliers = [float(m) for m in args.multipliers.split(",")]
    runs_path, summary_path = args.out / "runs.jsonl", args.out / "summary.jsonl"
    all_summaries = []
    print(f"# machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()}", file=sys.stderr)
    for config in parse_configs(args.configs):
        server = Server(config)
        rows = []
        try:
            levels = sorted({max(1, round(m * config.slots)) for m in multipliers})
            for repeat in range(args.repeats):
                for concurrency in levels:
                    for harness in harnesses:
                        row = run_once(harness, server, config, concurrency, args.limit, args.out, repeat)
                        rows.append(row)
                        with runs_path.open("a", encoding="utf-8") as handle:
                            handle.write(json.dumps(row) + "\n")
                        print(
                            f"{config.label} {harness:8s} n={concurrency:<4d} #{repeat} rc={row['rc']} "
                            f"served={row['served']} {row['served_rps']:7.1f} req/s ({row['pct_capacity']:5.1f}%) "
                            f"wall {row['wall_s']:6.2f}s load {row['load_avg_1m']:.2f}",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            server.close()
        summaries = summarize(rows, config, args.limit)
        all_summaries.extend(summaries)
        with summary_path.open("a", encoding="utf-8") as handle:
            for s in summaries:
                handle.write(json.dumps(s) + "\n")
    print(markdown(all_summaries, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
