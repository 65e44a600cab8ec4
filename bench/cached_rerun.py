"""Cached re-run of a finished eval: time and number of requests (target: zero requests).

What is measured, with a real endpoint: `harness serve --checkpoint embedded` (llama.cpp's server with the
embedded model) behind a counting proxy (tests/support/fault_proxy.py with a plan that injects nothing; it
counts every forwarded request, GET /v1/models included). The same command,

    harness eval --checkpoint http://127.0.0.1:PROXY/v1#embedded --suite gsm8k --limit N \\
        --concurrency 1 --out OUT --json --quiet

runs three times: (1) cold, into an empty runs folder; (2) again (finished samples are skipped);
(3) again after deleting the run's folder (manifest, samples, metrics gone; only the response cache
`OUT/.cache/responses.sqlite` is left). For each: wall seconds of the whole `harness eval` process
(interpreter start-up included), requests the server received, and the run's own counters
(generated / cache hits / resumed). Target: 0 requests in (2) and (3).

The same three steps also run on a large eval with no server at all: IFEval's 541 stored responses of
the embedded model (tests/fixtures/ifeval_embedded_responses.jsonl) through `--checkpoint replay:FILE`,
to show what a cached re-run of a big run costs in wall time.

Reproduce (from the repository root; nothing else using the CPUs, or say what was):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
      .venv/bin/python bench/cached_rerun.py --limit 10 --json bench/out/cached_rerun.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fault_proxy import FaultProxy  # noqa: E402

HARNESS = [sys.executable, "-m", "harness"]
FIXTURE = ROOT / "tests" / "fixtures" / "ifeval_embedded_responses.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(port: int, log: IO[bytes], timeout_s: float = 180.0) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*HARNESS, "serve", "--checkpoint", "embedded", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if line.startswith("ready"):
            return process
        if not line and process.poll() is not None:
            break
    stop_server(process)
    raise RuntimeError("harness serve did not become ready")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)  # harness serve stops llama.cpp's server (SIGKILL after 3 s)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the session this script started for it
        process.wait()


def run_eval(args: list[str]) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    done = subprocess.run(
        [*HARNESS, "eval", *args, "--json", "--quiet"], capture_output=True, text=True, cwd=ROOT
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"harness eval failed ({done.returncode}):\n{done.stderr[-2000:]}")
    outcomes: list[dict[str, Any]] = json.loads(done.stdout)
    return seconds, outcomes


def three_runs(label: str, args: list[str], counter: FaultProxy | None) -> list[dict[str, Any]]:
    rows = []
    for step in ("cold", "re-run", "re-run after deleting the run folder"):
        before = counter.forwarded if counter is not None else 0
        seconds, outcomes = run_eval(args)
        inv = outcomes[0]["invocation"]
        rows.append({
            "eval": label,
            "step": step,
            "wall_s": round(seconds, 2),
            "server_requests": None if counter is None else counter.forwarded - before,
            "generated": inv["generated"],
            "cache_hits": inv["cache_hits"],
            "resumed": inv["resumed"],
            "primary": {k: v["value"] for k, v in outcomes[0]["metrics"].items() if k == outcomes[0]["primary"]},
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        if step == "re-run":
            shutil.rmtree(outcomes[0]["run_dir"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=10, help="GSM8K problems for the endpoint run")
    parser.add_argument("--max-tokens", type=int, help="override GSM8K's pinned 512 new tokens")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "cached_rerun", help="scratch")
    parser.add_argument("--no-replay", action="store_true", help="skip the IFEval replay part")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)  # a cold start: no runs, no response cache
    args.out.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    port = free_port()
    with (args.out / "server.log").open("wb") as log:
        start = time.perf_counter()
        server = start_server(port, log)
        ready_s = time.perf_counter() - start
        print(f"harness serve ready in {ready_s:.1f}s", file=sys.stderr)
        try:
            with FaultProxy(f"http://127.0.0.1:{port}", plan=lambda number: None) as proxy:
                eval_args = ["--checkpoint", f"{proxy.base_url}/v1#embedded", "--suite", "gsm8k",
                             "--limit", str(args.limit), "--concurrency", "1", "--runs", str(args.out / "http")]  # fmt: skip
                if args.max_tokens:
                    eval_args += ["--max-tokens", str(args.max_tokens)]
                rows += three_runs(f"gsm8k --limit {args.limit} over HTTP", eval_args, proxy)
        finally:
            stop_server(server)
    if not args.no_replay:
        replay_args = [
            "--checkpoint",
            f"replay:{FIXTURE}",
            "--suite",
            "ifeval",
            "--runs",
            str(args.out / "replay"),
        ]
        rows += three_runs("ifeval 541, replay", replay_args, None)
    result = {"server_ready_s": round(ready_s, 1), "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    reruns = [r for r in rows if r["step"] != "cold" and r["server_requests"] is not None]
    return 0 if all(r["server_requests"] == 0 for r in reruns) else 1


if __name__ == "__main__":
    raise SystemExit(main())
