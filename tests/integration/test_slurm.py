"""The Slurm executor against a real single-node Slurm (slurmctld + slurmd on localhost, Debian's
slurm-wlm and munge): a sweep of the embedded model as a 2-shard array job, one task cancelled with
scancel after its first sample, the sweep resubmitted, and the merged run equal, sample for sample, to a
local unsharded run of the same settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.shards import shard_dir
from harness.sweep.slurm import submit_sweep
from harness.sweep.spec import load_sweep
from harness.sweep.status import sweep_status
from tests.conftest import DATA_DIR, ROOT, cli_env, harness
from tests.integration.slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (the fixture)

LIMIT, MAX_TOKENS, SHARDS = 4, 32, 2
WAIT_S = 900


def wait_for(condition: Callable[[], bool], what: str, cluster: SlurmCluster, logs: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            task_logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.out"))
            )
            pytest.fail(f"timed out waiting for {what}\n{task_logs}\n{cluster.logs()}")
        time.sleep(0.5)


def submit(sweep: Path, *flags: str) -> tuple[str, Path]:
    """`harness sweep FILE --executor slurm`: the job id and the logs folder it printed."""
    done = harness("sweep", str(sweep), "--executor", "slurm", *flags, env={**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"submitted Slurm job (\d+): 2 array tasks \((\S+)\)", done.stdout)
    assert found, done.stdout
    return found.group(1), Path(found.group(2)).parent / "logs"


def queue_empty(cluster: SlurmCluster, job_id: str) -> bool:
    return cluster.run("squeue", "-h", "-j", job_id).stdout.strip() == ""


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(row: dict[str, object]) -> tuple[object, ...]:
    completions = row["completions"]
    assert isinstance(completions, list)
    return (
        row["id"],
        row["request_keys"],
        [c["texts"] for c in completions],
        row["scores"],
        row["extracted"],
    )


def test_sweep_on_slurm_survives_scancel_and_equals_a_local_run(
    slurm_cluster: SlurmCluster,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {**cli_env(), "SLURM_CONF": str(slurm_cluster.conf)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    runs = tmp_path / "runs"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"suites: [gsm8k]\nlimit: {LIMIT}\ngeneration: {{max_tokens: {MAX_TOKENS}}}\ndata_dir: {DATA_DIR}\n"
        f"runs: runs\ncheckpoints: [embedded]\nslurm: {{shards: 1, cpus_per_task: 1}}\n"
    )
    spec = load_sweep(sweep)
    started = time.monotonic()
    first_id, first_logs = submit(sweep, "--shards", str(SHARDS))
    assert "#SBATCH --array=0-1" in (first_logs.parent / "sweep.sbatch").read_text()

    # Cancel task 1 once its first sample is on disk (mid-way: its shard has two).
    found: list[Path] = []

    def shard1_started() -> bool:
        found[:] = list(runs.glob("embedded/gsm8k@*/*/shards/1-of-2/samples.jsonl"))
        return bool(found) and found[0].read_text().count("\n") >= 1

    wait_for(shard1_started, "array task 1's first sample", slurm_cluster, first_logs)
    cancelled = slurm_cluster.run("scancel", f"{first_id}_1")
    assert cancelled.returncode == 0, cancelled.stderr
    run_dir = found[0].parent.parent.parent
    wait_for(
        lambda: queue_empty(slurm_cluster, first_id),
        "the first job to end",
        slurm_cluster,
        first_logs,
    )
    state = json.loads((shard_dir(run_dir, 1, 2) / "shard.json").read_text())
    assert state["status"] != "complete", "task 1 finished before scancel reached it"
    assert not (run_dir / "manifest.json").exists()  # one shard missing: nothing merged
    partial = sweep_status(spec, runs)[0]
    assert (partial.shards_done, partial.shard_count, partial.merged) == (1, 2, False)
    first_wall = time.monotonic() - started

    second_id, second_logs = submit(sweep, "--shards", str(SHARDS))  # shard 0 only merges, shard 1 resumes
    wait_for(lambda: queue_empty(slurm_cluster, second_id), "the resubmitted job", slurm_cluster, second_logs)
    logs = "\n".join(p.read_text() for p in sorted(second_logs.glob("*.out")))
    assert (run_dir / "manifest.json").exists(), logs
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete", logs
    shard1 = json.loads((shard_dir(run_dir, 1, 2) / "shard.json").read_text())["manifest"]["invocations"]
    assert shard1[-1]["resumed"] >= 1 and shard1[-1]["generated"] <= 1  # resumed, not redone

    local = subprocess.run(
        [sys.executable, "-m", "harness", "eval", "--checkpoint", "embedded", "--suite", "gsm8k",
         "--limit", str(LIMIT), "--max-tokens", str(MAX_TOKENS), "--runs", str(tmp_path / "local"),
         "--no-cache", "--quiet"],
        capture_output=True, text=True, timeout=WAIT_S, env=cli_env(), cwd=ROOT,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    local_dir = tmp_path / "local" / run_dir.relative_to(runs)
    merged, unsharded = rows(run_dir / "samples.jsonl"), rows(local_dir / "samples.jsonl")
    ids = [r["id"] for r in merged]
    assert len(ids) == len(set(ids)) == LIMIT
    assert [comparable(r) for r in merged] == [comparable(r) for r in unsharded]
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        (local_dir / "metrics.json").read_text()
    )

    shown = harness("sweep", "status", str(sweep), env=cli_env(SLURM_CONF=str(slurm_cluster.conf)))
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout
    assert "1 of 1 checkpoint x suite runs complete" in table
    assert f"{LIMIT}/{LIMIT}" in table and "2/2" in table and "complete" in table, table
    print(f"slurm sweep: first job + scancel {first_wall:.0f} s, total {time.monotonic() - started:.0f} s")


SERVER = """import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
time.sleep(1)  # a model loading: the task must wait for /v1/models
class Handler(BaseHTTPRequestHandler):
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self.reply({"object": "list", "data": [{"id": "stub", "object": "model"}]})
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.reply({"id": "x", "object": "chat.completion", "model": "stub", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "The answer is 7."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4}})
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_task_serves_its_endpoint_checkpoint_and_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The array task's script run by hand (as Slurm would, SLURM_ARRAY_TASK_ID set): it starts the
    `serve:` command on the checkpoint's port, waits for /v1/models, evaluates, and stops the server."""
    import socket

    from harness.sweep.slurm import serve_port

    server = tmp_path / "server.py"
    server.write_text(SERVER)
    reference = "http://gpu-node:8000/v1#stub"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"suites: [gsm8k]\nlimit: 2\ndata_dir: {DATA_DIR}\n"
        f"checkpoints: [{{ref: '{reference}', serve: '{sys.executable} {server} {{port}}'}}]\n"
    )
    spec = load_sweep(sweep)
    runs = tmp_path / "runs"
    submission = submit_sweep(spec, runs, spec.slurm, dry_run=True)
    env = {**cli_env(), "SLURM_ARRAY_TASK_ID": "0", "SLURM_JOB_ID": "77"}
    done = subprocess.run(
        ["bash", str(submission.script)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    port = serve_port(reference)
    run_dir = next(runs.glob(f"http_127.0.0.1_{port}_v1_stub-*/gsm8k@*/*"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["checkpoint"] == f"http://127.0.0.1:{port}/v1#stub"
    assert [r["completions"][0]["texts"] for r in rows(run_dir / "samples.jsonl")] == [
        ["The answer is 7."]
    ] * 2
    with socket.socket() as probe:  # the server is gone: its port is free again (no listener)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    rows_now = sweep_status(spec, runs)
    assert (rows_now[0].samples_done, rows_now[0].merged) == (2, True)
