"""Scaling benchmark: this harness (now and before), lm-eval and inspect-ai against the batching emulator.

One run, one set of emulator settings (`bench/emulator.py`: B sequences decoding at once, a step of
t0 + k*b seconds, per-suite response lengths, everything divided by --speed). Every run starts from
reset emulator counters, and afterwards reads `GET /stats` from every emulator: tokens decoded, the
window from the first request to the last response, and the ideal time = tokens / (replicas x capacity).
Efficiency = ideal / wall (the whole command: start-up, data, scoring, files) and ideal / window (the
server's view, start-up excluded).

Workloads: the first --limit samples of each of 5 suites (gsm8k, ifeval, mbpp, safety, alice; the
harness's own prompts), for 1 checkpoint and for 4 checkpoints (model names m1..m4, all served by the
same emulator: 4 checkpoints of one server's capacity). Runs (`--only` picks a subset):
- `harness`: `python -m harness eval --checkpoint URL#m1 [--checkpoint URL#m2 ...] --suite ... --limit N
  --concurrency C --no-cache --fresh --quiet --json` from --harness-src (default: this tree). When that
  tree's `eval --help` does not say --checkpoint is repeatable, the checkpoints run one invocation after
  another (what `harness eval` did before issue 22) and the row says `sequential`.
- `before`: the same from --before-src (default /work/bench_before, a `git worktree` of the commit before
  the scheduler change), with PYTHONPATH set to it.
- `lm-eval`: `lm_eval --model local-chat-completions --apply_chat_template --tasks bench_gsm8k,...` (all
  5 tasks in one invocation; one invocation per checkpoint, one after another) over generated YAML tasks
  reading the same prompts (few-shot turns flattened into one user message: the emulator keys lengths on
  the last 64 characters of the question, so it draws the same lengths), num_concurrent=C.
- `inspect`: one Python process calling `inspect_ai.eval(tasks=[5 tasks], model=[openai-api/bench/m1,
  ...], max_connections=C, max_tasks=tasks x models)` over the same messages (few-shot turns kept).
- `replicas-R` for R in --replicas: this harness, 4 checkpoints, against R emulators (each its own
  capacity), `--replica URL` per extra one, --concurrency C x R (the same requests in flight per server);
  skipped (marked) when the tree has no --replica.

Reproduce (2 cores; about 8 minutes with the defaults):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
        .venv/bin/python bench/scale_bench.py --limit 100 --speed 10

Output: one JSON line per run in bench/out/scale/runs.jsonl and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
SUITES = ("gsm8k", "ifeval", "mbpp", "safety", "alice")
MODELS = ("m1", "m2", "m3", "m4")

LM_EVAL_YAML = """\
task: bench_{suite}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {prompts}
test_split: test
output_type: generate_until
doc_to_text: "{{{{flat}}}}"
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

INSPECT_SCRIPT = '''\
"""The benchmark prompts as inspect-ai Tasks, all evaluated in one eval() (written by scale_bench.py)."""
import json, sys
from inspect_ai import Task, eval as inspect_eval
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, GenerateConfig
from inspect_ai.scorer import match
from inspect_ai.solver import generate

folder, models, connections = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
tasks = []
for suite in {suites!r}:
    rows = [json.loads(line) for line in open(f"{{folder}}/{{suite}}.jsonl", encoding="utf-8")]
    role = {{"user": ChatMessageUser, "assistant": ChatMessageAssistant}}
    samples = [
        Sample(id=r["id"], input=[role[m["role"]](content=m["content"]) for m in r["messages"]], target=r["target"])
        for r in rows
    ]
    tasks.append(Task(dataset=MemoryDataset(samples), solver=generate(), scorer=match(), name=f"bench_{{suite}}",
                      config=GenerateConfig(max_tokens=rows[0]["max_tokens"], temperature=0.0)))
logs = inspect_eval(tasks, model=[f"openai-api/bench/{{m}}" for m in models], max_connections=connections,
                    max_tasks=len(tasks) * len(models), display="none", log_dir=f"{{folder}}/../inspect-logs",
                    max_retries=1)
sys.exit(0 if all(log.status == "success" for log in logs) else 1)
'''


class Emulator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "emulator.py"), "--port", "0", "--batch", str(args.batch),
             "--t0", str(args.t0), "--k", str(args.k), "--prefill", str(args.prefill),
             "--speed", str(args.speed), "--seed", str(args.seed), "--models", ",".join(MODELS)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("READY port="):
            self.process.kill()
            raise SystemExit(f"emulator did not start: {line!r}")
        self.base = f"http://127.0.0.1:{line.removeprefix('READY port=')}"
        self.url = f"{self.base}/v1"

    def call(self, path: str, method: str = "GET") -> dict[str, Any]:
        data = b"" if method == "POST" else None
        with urllib.request.urlopen(
            urllib.request.Request(self.base + path, method=method, data=data), timeout=30
        ) as r:
            result: dict[str, Any] = json.loads(r.read())
            return result

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def write_prompts(folder: Path, limit: int) -> None:
    """Each suite's first `limit` requests exactly as this harness builds them, for the two peers."""
    sys.path.insert(0, str(ROOT))
    from harness.data import resolve_data_source
    from harness.suite import SuiteOptions
    from suites import get_suite

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lm_eval_tasks").mkdir(exist_ok=True)
    for name in SUITES:
        suite = get_suite(name, SuiteOptions())
        settings = suite.default_settings()
        loaded = suite.load(resolve_data_source(None), limit)
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for sample in loaded.samples:
                (request,) = suite.requests(sample, settings, "chat")
                assert request.messages is not None
                messages = [{"role": m.role, "content": m.content} for m in request.messages]
                row = {
                    "id": sample.id, "messages": messages, "target": str(sample.target),
                    "flat": "\n\n".join(m["content"] for m in messages), "max_tokens": settings.max_tokens,
                }  # fmt: skip
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        (folder / "lm_eval_tasks" / f"bench_{name}.yaml").write_text(
            LM_EVAL_YAML.format(suite=name, prompts=folder / f"{name}.jsonl", max_tokens=settings.max_tokens),
            encoding="utf-8",
        )
    (folder / "inspect_tasks.py").write_text(INSPECT_SCRIPT.format(suites=SUITES), encoding="utf-8")


def harness_features(source: Path) -> tuple[bool, bool]:
    """(--checkpoint repeatable, --replica exists) in that tree's `harness eval --help`."""
    env = dict(os.environ, PYTHONPATH=str(source))
    shown = subprocess.run(
        [sys.executable, "-m", "harness", "eval", "--help"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    checkpoint_help = shown.split("--checkpoint REF", 2)[-1].split("\n  --", 1)[0]
    return "repeat" in checkpoint_help, "--replica" in shown


def harness_runs(
    source: Path, urls: list[str], models: tuple[str, ...], args: argparse.Namespace, scratch: Path
) -> tuple[list[tuple[list[str], Path]], str]:
    multi, has_replica = harness_features(source)
    # The same requests in flight per server: --concurrency per replica.
    common = [sys.executable, "-m", "harness", "eval", *[a for s in SUITES for a in ("--suite", s)],
              "--limit", str(args.limit), "--concurrency", str(args.concurrency * len(urls)), "--no-cache", "--fresh",
              "--quiet", "--json", "--runs", str(scratch / "runs")]  # fmt: skip
    if len(urls) > 1:
        if not has_replica:
            return [], "no --replica in this tree"
        common += [a for url in urls[1:] for a in ("--replica", url)]
    checkpoints = [f"{urls[0]}#{m}" for m in models]
    if multi or len(models) == 1:
        return [([*common, *[a for c in checkpoints for a in ("--checkpoint", c)]], source)], "one invocation"
    return [([*common, "--checkpoint", c], source) for c in checkpoints], "sequential invocations"


def lm_eval_runs(
    url: str, models: tuple[str, ...], args: argparse.Namespace, work: Path
) -> list[tuple[list[str], Path]]:
    tasks = ",".join(f"bench_{s}" for s in SUITES)
    runs = []
    for model in models:
        model_args = (f"base_url={url}/chat/completions,model={model},num_concurrent={args.concurrency},"
                      "max_retries=1,tokenized_requests=False")  # fmt: skip
        runs.append(([str(BIN / "lm_eval"), "--model", "local-chat-completions", "--model_args", model_args,
                      "--apply_chat_template", "--tasks", tasks, "--include_path", str(work / "lm_eval_tasks")],
                     work))  # fmt: skip
    return runs


def measure(
    label: str,
    runs: list[tuple[list[str], Path]],
    emulators: list[Emulator],
    env: dict[str, str],
    how: str,
    checkpoints: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    for emulator in emulators:
        emulator.call("/reset", "POST")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    codes, tails = [], []
    for argv, cwd in runs:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
        codes.append(done.returncode)
        if done.returncode:
            tails.append(done.stderr[-1500:])
    wall = time.perf_counter() - start
    stats = [emulator.call("/stats") for emulator in emulators]
    tokens = sum(s["tokens"] for s in stats)
    ideal = tokens / (len(emulators) * stats[0]["capacity_tokens_per_s"])
    arrivals = [s["first_arrival"] for s in stats if s.get("first_arrival") is not None]
    responses = [s["last_response"] for s in stats if s.get("last_response") is not None]
    # perf_counter is the system's monotonic clock, the same in the emulator's process and this one.
    window = max(responses) - min(arrivals) if arrivals and responses else None
    row = {
        "run": label, "how": how, "checkpoints": checkpoints, "replicas": len(emulators), "rc": codes,
        "wall_s": round(wall, 2),
        "to_first_request_s": round(min(arrivals) - start, 2) if arrivals else None,
        "after_last_response_s": round(start + wall - max(responses), 2) if responses else None,
        "window_s": round(window, 2) if window else None, "ideal_s": round(ideal, 2),
        "efficiency_wall": round(ideal / wall, 3), "efficiency_window": round(ideal / window, 3) if window else None,
        "requests": sum(s["requests"] for s in stats), "tokens": tokens,
        "expected_requests": checkpoints * len(SUITES) * args.limit,
        "mean_batch": [round(s["mean_batch"] or 0, 1) for s in stats],
        "max_running": [s["max_running"] for s in stats], "late_s": [s["late_s"] for s in stats],
        "per_suite": [s["per_suite"] for s in stats], "load_avg_1m": load,
    }  # fmt: skip
    if tails:
        row["stderr_tail"] = tails
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table; `ideal/(window - late)` also takes out the time the emulator's own steps ran late
    (its process starved of CPU on a loaded machine: capacity lost to the server, not to the client)."""

    def ratio(row: dict[str, Any], peer: str) -> str:
        other = next(
            (
                o
                for o in rows
                if o["run"] == peer and o["checkpoints"] == row["checkpoints"] and o["replicas"] == 1
            ),
            None,
        )
        return f"{other['wall_s'] / row['wall_s']:.2f}x" if other and row["replicas"] == 1 else "-"

    lines = [
        "| run | checkpoints x suites | replicas | how | requests (tokens) | wall s | server window s | ideal s "
        "| ideal/wall | ideal/window | ideal/(window - late) | lm-eval wall / this | inspect wall / this | load |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ok = all(c == 0 for c in r["rc"]) and r["requests"] == r["expected_requests"]
        window = r["window_s"] or 0.0
        late = max(r["late_s"])
        adjusted = f"{100 * r['ideal_s'] / (window - late):.1f}%" if window > late else "-"
        lines.append(
            f"| {r['run']}{'' if ok else ' (FAILED: ' + str(r['rc']) + ')'} | {r['checkpoints']} x 5 "
            f"| {r['replicas']} | {r['how']} | {r['requests']} ({r['tokens']:,}) | {r['wall_s']} | {r['window_s']} "
            f"| {r['ideal_s']} | {100 * r['efficiency_wall']:.1f}% | {100 * (r['efficiency_window'] or 0):.1f}% "
            f"| {adjusted} | {ratio(r, 'lm-eval')} | {ratio(r, 'inspect')} | {r['load_avg_1m']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=100, help="samples per suite (default 100)")
    parser.add_argument("--speed", type=float, default=10.0, help="emulator time divisor (default 10)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--t0", type=float, default=0.020)
    parser.add_argument("--k", type=float, default=0.0005)
    parser.add_argument("--prefill", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=128, help="requests in flight, every client")
    parser.add_argument("--harness-src", type=Path, default=ROOT, help="source tree measured as `harness`")
    parser.add_argument("--before-src", type=Path, default=Path("/work/bench_before"))
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--only", default="harness,before,lm-eval,inspect,replicas")
    parser.add_argument("--checkpoint-counts", default="1,4")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "scale")
    parser.add_argument("--table", type=Path, help="only print the table of an earlier runs.jsonl")
    args = parser.parse_args()
    if args.table:
        print(markdown([json.loads(line) for line in args.table.open(encoding="utf-8")]))
        return 0

    work = args.out.resolve()
    write_prompts(work / "prompts", args.limit)
    only = set(args.only.split(","))
    counts = [int(c) for c in args.checkpoint_counts.split(",")]
    replica_counts = [int(r) for r in args.replicas.split(",")]
    emulators = [Emulator(args) for _ in range(max([*replica_counts, 1]))]
    base_env = dict(os.environ, TQDM_DISABLE="1", BENCH_API_KEY="bench", OPENAI_API_KEY="bench")
    rows: list[dict[str, Any]] = []
    print(f"# {os.cpu_count()} CPUs, load {os.getloadavg()}, emulator {emulators[0].call('/stats')['model']}",
          file=sys.stderr)  # fmt: skip

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        with (work / "runs.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"{row['run']:10s} ckpt={row['checkpoints']} R={row['replicas']} rc={row['rc']} "
              f"req={row['requests']}/{row['expected_requests']} wall={row['wall_s']} ideal={row['ideal_s']} "
              f"eff={row['efficiency_wall']} load={row['load_avg_1m']:.2f}", file=sys.stderr, flush=True)  # fmt: skip

    try:
        first = emulators[:1]
        for count in counts:
            models = MODELS[:count]
            for label, source in (
                ("harness", args.harness_src.resolve()),
                ("before", args.before_src.resolve()),
            ):
                if label in only:
                    runs, how = harness_runs(source, [first[0].url], models, args, work)
                    env = dict(base_env, PYTHONPATH=str(source))
                    record(measure(label, runs, first, env, how, count, args))
            if "lm-eval" in only:
                runs = lm_eval_runs(first[0].url, models, args, work / "prompts")
                how = "one invocation" if count == 1 else "sequential invocations"
                record(measure("lm-eval", runs, first, base_env, how, count, args))
            if "inspect" in only:
                argv = [sys.executable, str(work / "prompts" / "inspect_tasks.py"), str(work / "prompts"),
                        ",".join(models), str(args.concurrency)]  # fmt: skip
                env = dict(base_env, BENCH_BASE_URL=first[0].url)
                record(measure("inspect", [(argv, work / "prompts")], first, env, "one eval()", count, args))
        if "replicas" in only:
            for replicas in replica_counts:
                group = emulators[:replicas]
                source = args.harness_src.resolve()
                runs, how = harness_runs(source, [e.url for e in group], MODELS, args, work)
                if not runs:
                    print(f"replicas-{replicas}: to be measured ({how})", file=sys.stderr)
                    continue
                env = dict(base_env, PYTHONPATH=str(source))
                record(measure(f"replicas-{replicas}", runs, group, env, how, len(MODELS), args))
    finally:
        for emulator in emulators:
            emulator.close()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
