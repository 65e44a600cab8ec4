"""Fault drills: the run survives a faulty network, repeated SIGKILLs and a disk that refuses writes.

1. 20% faults (every kind of `tests/support/fault_proxy.py`: 429, 500, reset, truncated body, slow at
   10x the normal latency, hang past --timeout) between the harness and the real llama.cpp server: the run
   completes, each sample is generated and written once, responses and metrics equal a clean run's.
2. SIGKILL at five seeded random points of one run against that server, restarting the same command
   each time (one kill followed by a torn last line): the final samples and metrics equal the clean
   run's, and every restart reports exactly what the kill left (samples resumed, bytes of torn line cut).
3. SIGKILL at five seeded moments *inside* a write (multi-megabyte records from a `replay:` file, killed
   when a partial line is seen on disk): real torn lines, repaired on the next start, same end result.
4. A read-only run folder / runs folder (chmod, or a read-only bind mount in a private mount namespace
   as root) and a full disk (a small tmpfs in a private mount namespace: real ENOSPC; and RLIMIT_FSIZE:
   EFBIG): one clear error line (exit 4, no traceback), every sample written before is intact, and the
   same command resumes to the uninterrupted result once the disk takes writes again.
Drills 1-2 run the model (`harness serve`); 3-4 use `replay:` files and take seconds.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, EvalResult, Server, cli_env, eval_json, harness_popen
from tests.support.fault_proxy import FAULTS, FaultProxy, rate_plan
from tests.support.fs_faults import file_size_limit, full_disk, read_only

SEED = 20240611
# The plan's first round puts the six kinds in request numbers 1-30, one per block of five. 26 samples
# reach 0-26 without any retry; the five faults there include at least four that cost a retry (one
# "slow" per round), so at least 1 + 26 + 4 = 31 requests are sent and all six kinds are injected.
N_SERVER = 26
SERVER_ARGS = ("--suite", "gsm8k", "--limit", str(N_SERVER), "--max-tokens", "24", "--concurrency", "2")
N_REPLAY = 40
TORN = f'{{"id": "gsm8k-test-{N_SERVER - 1:04d}", "prompt": "torn'  # what a kill inside a write leaves


# ---------------------------------------------------------------------------------------------- helpers


def records(run_dir: Path) -> dict[str, tuple[list[str], dict[str, float]]]:
    """Sample id -> (texts, scores); fails on a repeated id."""
    found: dict[str, tuple[list[str], dict[str, float]]] = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["id"] not in found, f"sample {row['id']} written twice"
        found[row["id"]] = ([t for c in row["completions"] for t in c["texts"]], row["scores"])
    return found


def metrics_file(run_dir: Path) -> dict[str, object]:
    return dict(json.loads((run_dir / "metrics.json").read_text())["metrics"])


def latencies(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return [float(c["latency_s"]) for row in rows for c in row["completions"]]


def invocations(run_dir: Path) -> list[dict[str, object]]:
    try:
        return list(json.loads((run_dir / "manifest.json").read_text())["invocations"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


def line_state(path: Path) -> tuple[int, int]:
    """(complete lines, bytes after the last newline) of a file that may not exist yet."""
    data = path.read_bytes() if path.exists() else b""
    return data.count(b"\n"), len(data) - (data.rfind(b"\n") + 1)


class LineWatch:
    """Cheap polling of an append-only file that may be many megabytes: reads only what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = self.lines = self.boundary = 0

    def poll(self) -> tuple[int, int]:
        """(complete lines, bytes of a partial last line) now."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0, 0
        if size < self.offset:  # a restart cut a torn line off
            self.offset = self.lines = self.boundary = 0
        if size > self.offset:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(size - self.offset)
            self.lines += chunk.count(b"\n")
            if (last := chunk.rfind(b"\n")) >= 0:
                self.boundary = self.offset + last + 1
            self.offset += len(chunk)
        return self.lines, self.offset - self.boundary


def wait_for(
    condition: Callable[[], bool],
    process: subprocess.Popen[str],
    what: str,
    limit_s: float,
    pause: float = 0.005,
) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the run exited ({process.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s:.0f}s waiting for {what}")
        time.sleep(pause)


def started(run_dir: Path, starts: int) -> Callable[[], bool]:
    """The `starts`-th start of the run has recorded itself in the manifest."""
    return lambda: len(invocations(run_dir)) == starts


def finished_at_least(samples: Path, count: int) -> Callable[[], bool]:
    return lambda: line_state(samples)[0] >= count


def inside_a_write(watch: LineWatch, count: int) -> Callable[[], bool]:
    """At least `count` samples are on disk and the next one is half written."""

    def check() -> bool:
        lines, partial = watch.poll()
        return lines >= count and partial > 0

    return check


def sigkill(process: subprocess.Popen[str]) -> None:
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def run_harness(prefix: Sequence[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=timeout,
    )  # fmt: skip


def assert_clear_error(proc: subprocess.CompletedProcess[str], under: Path, reasons: Sequence[str]) -> str:
    """Exit 4 and one paragraph that names a file under `under`, the system's reason and the way on."""
    assert proc.returncode == 4, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: Cannot "), proc.stderr
    message = lines[0]
    assert str(under) in message and any(reason in message for reason in reasons), message
    assert "re-run the same command" in message and "kept in samples.jsonl" in message, message
    return message


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_replay(path: Path, n: int, pad_chars: int = 0) -> Path:
    """Responses for the first n GSM8K test problems: two in three right (in both answer forms), the rest wrong."""
    from tests.conftest import DATA_DIR

    rows = [json.loads(line) for line in (DATA_DIR / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]]
    pad = "Let me think this through step by step. " * (pad_chars // 40)
    with path.open("w") as handle:
        for i, row in enumerate(rows):
            gold = row["answer"].split("####")[-1].strip()
            text = [f"It is {gold}, I think.", f"So the answer is {gold}.", f"I get {i + 7}."][i % 3]
            handle.write(json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": pad + text}) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server_clean(llama_server: Server, tmp_path_factory: pytest.TempPathFactory) -> EvalResult:
    """The uninterrupted, fault-free reference run against the real server."""
    out = tmp_path_factory.mktemp("drill-clean")
    return eval_json("--checkpoint", llama_server.checkpoint(), *SERVER_ARGS, "--runs", str(out))


@pytest.fixture(scope="module")
def replay_ref(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[tuple[str, ...], EvalResult]:
    """(the eval arguments, the uninterrupted run) for a 40-sample `replay:` run with mixed scores."""
    folder = tmp_path_factory.mktemp("drill-replay")
    args = ("--checkpoint", f"replay:{write_replay(folder / 'replay.jsonl', N_REPLAY)}",
            "--suite", "gsm8k", "--limit", str(N_REPLAY))  # fmt: skip
    ref = eval_json(*args, "--runs", str(folder / "runs"))
    values = {r[1]["exact_match_flex"] for r in records(ref.run_dir).values()}
    assert values == {0.0, 1.0}  # a comparison of metrics that could not differ would prove nothing
    return args, ref


def relative_run(ref: EvalResult) -> Path:
    """runs/<checkpoint>/<suite>@<version>/<settings-hash> below any runs folder."""
    return ref.run_dir.relative_to(ref.run_dir.parents[2])


# ---------------------------------------------------------------------------------------------- drill 1


@pytest.mark.model
def test_twenty_percent_faults_against_the_real_server_change_nothing(
    llama_server: Server, server_clean: EvalResult, tmp_path: Path
) -> None:
    latency = statistics.median(latencies(server_clean.run_dir))  # at the same concurrency, queueing included
    slow_s = 10 * latency
    # A slow request waits slow_s, then for the request ahead of it and its own decode: room for a
    # machine three times slower than during the clean run. A hang outlasts every timeout.
    timeout = math.ceil(slow_s + 8 * latency + 10)
    upstream = f"http://{urlsplit(llama_server.base_url).netloc}"
    plan = rate_plan(SEED)  # request 0 is the harness's GET /models
    with FaultProxy(upstream, plan, retry_after_s=1, slow_s=slow_s, hang_s=3600) as proxy:
        faulty = eval_json(
            "--checkpoint", f"{proxy.base_url}/v1#embedded", *SERVER_ARGS,
            "--timeout", str(timeout), "--runs", str(tmp_path),
        )  # fmt: skip
        sent, injected = proxy.requests, Counter(proxy.injected)
    print(
        f"latency {latency:.2f}s, slow {slow_s:.1f}s, timeout {timeout}s, {sent} requests, {dict(injected)}"
    )
    assert set(injected) == set(FAULTS)
    planned = sum(plan(n) is not None for n in range(sent))
    assert sum(injected.values()) == planned and abs(planned - 0.2 * (sent - 1)) <= 1  # 20% of the POSTs
    invocation = faulty.payload["invocation"]
    assert invocation["generated"] == N_SERVER and invocation["cache_hits"] == 0
    # Every POST either answered one sample or was retried; each fault but "slow" costs one retry.
    assert sent == 1 + N_SERVER + invocation["retries"]
    assert invocation["retries"] >= sum(injected.values()) - injected["slow"]
    got, clean = records(faulty.run_dir), records(server_clean.run_dir)
    assert sorted(got) == [f"gsm8k-test-{i:04d}" for i in range(N_SERVER)]
    assert got == clean  # texts and scores, sample by sample
    assert metrics_file(faulty.run_dir) == metrics_file(server_clean.run_dir)
    assert faulty.metrics == server_clean.metrics


# ---------------------------------------------------------------------------------------------- drill 2


@pytest.mark.model
def test_sigkill_at_five_random_points_then_resume_equals_the_uninterrupted_run(
    llama_server: Server, server_clean: EvalResult, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    latency = statistics.median(latencies(server_clean.run_dir))
    out = tmp_path / "runs"
    args = ("--checkpoint", llama_server.checkpoint(), *SERVER_ARGS, "--runs", str(out))
    run_dir = out / relative_run(server_clean)
    samples = run_dir / "samples.jsonl"
    # Five kills after seeded numbers of finished samples (at least one new per start), each a seeded
    # fraction of a request later: during a generation, a cache write, scoring or an append.
    thresholds = sorted(rng.sample(range(2, N_SERVER - 6), 5))
    torn_after = rng.randrange(5)
    left: list[tuple[int, int]] = []  # (complete lines, torn bytes) each kill left
    for kill, threshold in enumerate(thresholds):
        before = line_state(samples)[0]
        process = harness_popen("eval", "--quiet", *args)
        try:
            wait_for(started(run_dir, kill + 1), process, f"start {kill + 1}", 120)
            target = max(threshold, before + 1)
            wait_for(finished_at_least(samples, target), process, f"{target} samples", 240)
            time.sleep(rng.uniform(0, latency))  # the random moment itself, not a synchronization
            sigkill(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        complete, torn = line_state(samples)
        if kill == torn_after:
            with samples.open("a") as handle:
                handle.write(TORN)
            torn += len(TORN)
        left.append((complete, torn))
    assert all(0 < c < N_SERVER for c, _ in left) and left[torn_after][1] > 0
    final = eval_json(*args)
    history = invocations(run_dir)
    assert len(history) == 6 and [i["status"] for i in history] == ["running"] * 5 + ["complete"]
    for start, (complete, torn) in zip(history[1:], left, strict=True):
        assert (start["resumed"], start["repaired_bytes"]) == (complete, torn)  # detected, never skipped
    got = records(run_dir)
    assert sorted(got) == [f"gsm8k-test-{i:04d}" for i in range(N_SERVER)]
    assert got == records(server_clean.run_dir)
    assert metrics_file(run_dir) == metrics_file(server_clean.run_dir)
    assert final.metrics == server_clean.metrics
    print(f"kills left (lines, torn bytes): {left}")


# ---------------------------------------------------------------------------------------------- drill 3


def test_sigkill_inside_a_write_tears_the_line_and_the_next_start_repairs_it(
    tmp_path: Path, data_dir: Path
) -> None:
    """Records of ~2 MB take milliseconds to write, so a kill sent on seeing a partial line lands inside it."""
    n = 12
    rng = random.Random(SEED + 3)
    args = ("--checkpoint", f"replay:{write_replay(tmp_path / 'big.jsonl', n, pad_chars=2_000_000)}",
            "--suite", "gsm8k", "--limit", str(n))  # fmt: skip
    ref = eval_json(*args, "--runs", str(tmp_path / "ref"))
    out = tmp_path / "runs"
    run_dir = out / relative_run(ref)
    watch = LineWatch(run_dir / "samples.jsonl")
    thresholds = sorted(rng.sample(range(n - 5), 5))
    left: list[tuple[int, int]] = []
    for kill, threshold in enumerate(thresholds):
        before = watch.poll()[0]
        process = harness_popen("eval", "--quiet", *args, "--runs", str(out))
        try:
            wait_for(started(run_dir, kill + 1), process, f"start {kill + 1}", 120)
            target = max(threshold, before)
            wait_for(inside_a_write(watch, target), process, f"a write after {target} samples", 120, 0.0002)
            sigkill(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        left.append(line_state(run_dir / "samples.jsonl"))
    print(f"kills left (lines, torn bytes): {left}")
    assert sum(torn > 0 for _, torn in left) >= 1, "no kill landed inside a write"
    final = eval_json(*args, "--runs", str(out))
    history = invocations(run_dir)
    assert len(history) == 6 and history[-1]["status"] == "complete"
    for start, (complete, torn) in zip(history[1:], left, strict=True):
        assert (start["resumed"], start["repaired_bytes"]) == (complete, torn)
    assert records(run_dir) == records(ref.run_dir)
    assert final.metrics == ref.metrics
    for big in ("runs", "ref"):  # ~100 MB; pytest keeps the last three temporary folders
        shutil.rmtree(tmp_path / big)
    (tmp_path / "big.jsonl").unlink()


# ---------------------------------------------------------------------------------------------- drill 4


def test_read_only_run_folder_and_runs_folder_fail_clearly_and_keep_every_sample(
    replay_ref: tuple[tuple[str, ...], EvalResult], tmp_path: Path
) -> None:
    args, ref = replay_ref
    out = tmp_path / "runs"
    run_dir = eval_json(*args, "--runs", str(out)).run_dir
    kept = 15  # a run that stopped after 15 samples (drills 2-3 show that state resumes exactly)
    lines = (run_dir / "samples.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "samples.jsonl").write_text("".join(lines[:kept]))
    (run_dir / "metrics.json").unlink()
    before = folder_bytes(out)
    reasons = ("Read-only file system", "Permission denied")
    with read_only(run_dir) as (prefix, mechanism):
        proc = run_harness(prefix, "eval", "--quiet", *args, "--runs", str(out))
    print(f"read-only by {mechanism}: {proc.stderr.strip()}")
    assert_clear_error(proc, run_dir, reasons)
    assert folder_bytes(out) == before  # nothing written, nothing lost
    # The whole runs folder read-only, and a run that has no folder yet.
    other = ("--checkpoint", args[1], "--suite", "gsm8k", "--limit", str(N_REPLAY - 1))
    with read_only(out) as (prefix, _):
        proc = run_harness(prefix, "eval", "--quiet", *other, "--runs", str(out))
    assert "create the run folder" in assert_clear_error(proc, out, reasons)
    assert folder_bytes(out) == before
    resumed = eval_json(*args, "--runs", str(out))
    invocation = resumed.payload["invocation"]
    assert invocation["resumed"] == kept and invocation["repaired_bytes"] == 0
    assert invocation["generated"] + invocation["cache_hits"] == N_REPLAY - kept
    assert (
        (run_dir / "samples.jsonl").read_text().startswith("".join(lines[:kept]))
    )  # appended to, never rewritten
    assert records(run_dir) == records(ref.run_dir)
    assert resumed.metrics == ref.metrics


@pytest.mark.parametrize(
    ("mechanism", "cache"),
    [("tmpfs", False), ("tmpfs", True), ("file-size-limit", False)],
    ids=["full-disk-samples", "full-disk-cache", "file-size-limit"],
)
def test_full_disk_mid_run_fails_clearly_keeps_what_was_written_and_resumes(
    mechanism: str, cache: bool, replay_ref: tuple[tuple[str, ...], EvalResult], tmp_path: Path
) -> None:
    args, ref = replay_ref
    flags = (*args, *(() if cache else ("--no-cache",)))
    out, snapshot = tmp_path / "runs", tmp_path / "snapshot"
    if mechanism == "tmpfs":
        # lock + manifest take two pages; samples (~650 bytes each, 26 kB in all) and the cache outgrow the rest
        prefix = full_disk("128k" if cache else "24k", out, snapshot)
        reasons: tuple[str, ...] = ("No space left on device", "database or disk is full")
    else:
        prefix, reasons = file_size_limit(12_000), ("File too large",)
    proc = run_harness(prefix, "eval", "--quiet", *flags, "--runs", str(out))
    message = assert_clear_error(proc, out, reasons)
    if mechanism == "tmpfs":  # the disk is freed: what was on it comes back to where it was
        shutil.copytree(snapshot, out, dirs_exist_ok=True)
    run_dir = out / relative_run(ref)
    complete, torn = line_state(run_dir / "samples.jsonl")
    print(f"{mechanism}: {complete} samples and {torn} bytes of a torn line kept; {message}")
    assert 0 < complete < N_REPLAY, complete
    data = (run_dir / "samples.jsonl").read_bytes()
    written = data[: len(data) - torn]
    reference = records(ref.run_dir)
    for line in written.decode().splitlines():  # every complete line is a whole, correct sample
        row = json.loads(line)
        assert ([t for c in row["completions"] for t in c["texts"]], row["scores"]) == reference[row["id"]]
    json.loads((run_dir / "manifest.json").read_text())  # never torn: written atomically
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    resumed = eval_json(*flags, "--runs", str(out))
    invocation = resumed.payload["invocation"]
    assert (invocation["resumed"], invocation["repaired_bytes"]) == (complete, torn)
    assert (run_dir / "samples.jsonl").read_bytes()[: len(written)] == written
    assert records(run_dir) == reference
    assert resumed.metrics == ref.metrics
