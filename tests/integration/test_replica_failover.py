"""Replicas against real servers: two `harness serve` (llama.cpp) processes with the embedded model on
loopback; one is SIGKILLed mid-run and the run still completes, with nothing lost and nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    ROOT,
    Server,
    cli_env,
    eval_json,
    free_port,
    harness_popen,
    read_samples,
    texts_by_id,
)

COMMON = ("--suite", "gsm8k", "--limit", "6", "--max-tokens", "32", "--concurrency", "2")


def cpu_ticks(group: int) -> int:
    """CPU time (user + system, in clock ticks) of the processes in a process group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it exited meanwhile
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total


@pytest.fixture
def doomed_server(tmp_path: Path) -> Iterator[Server]:
    """A second `harness serve`, in its own process group so one SIGKILL reaches llama.cpp's child too."""
    port, log = free_port(), tmp_path / "doomed.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "serve", "--checkpoint", "embedded", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=cli_env(), cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "ready:" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if "ready:" not in log.read_text():
            pytest.fail(f"the second server did not start:\n{log.read_text()[-2000:]}")
        yield Server(f"http://127.0.0.1:{port}/v1", process)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)


def test_killing_a_replica_mid_run_loses_and_duplicates_nothing(
    llama_server: Server, doomed_server: Server, tmp_path: Path
) -> None:
    # The server that dies is the checkpoint's own URL: the replica carries the rest of the run.
    runs = tmp_path / "replicas"
    run = harness_popen(
        "eval", "--json", "--quiet", "--checkpoint", doomed_server.checkpoint(), "--replica", llama_server.base_url,
        *COMMON, "--runs", str(runs),
    )  # fmt: skip
    # Kill it while it generates (its processes have burnt half a CPU second since the run started): two
    # llama.cpp servers on 2 cores crawl, so waiting for a finished sample would cost a minute.
    busy_from, done_at_kill = cpu_ticks(doomed_server.process.pid), -1
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        if cpu_ticks(doomed_server.process.pid) - busy_from >= 50:
            done_at_kill = sum(p.read_text().count("\n") for p in runs.rglob("samples.jsonl"))
            os.killpg(doomed_server.process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    assert 0 <= done_at_kill < 6, "the run finished before the server could be killed"
    payload = json.loads(out)[0]
    # At least the request in flight on the killed server (or the next one sent to it) failed and was retried.
    assert payload["invocation"]["generated"] == 6 and payload["invocation"]["retries"] >= 1
    run_dir = Path(payload["run_dir"])
    ids = [str(r["id"]) for r in read_samples(run_dir)]
    assert sorted(ids) == [f"gsm8k-test-{i:04d}" for i in range(6)]  # all six, none twice

    single = eval_json("--checkpoint", llama_server.checkpoint(), *COMMON, "--runs", str(tmp_path / "single"))
    assert single.payload["invocation"]["generated"] == 6  # type: ignore[index]
    assert texts_by_id(run_dir) == texts_by_id(single.run_dir)  # greedy, same model: same responses
    assert payload["metrics"] == single.metrics
