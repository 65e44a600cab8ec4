"""Shards of a run (`--shard I/N`): own folders, resume by id, a merge equal to the unsharded run, a lock
that is not flock, and what `harness runs` and `harness sweep status` read from shard folders."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

import harness
from harness.data import DataSource
from harness.errors import UsageError
from harness.runner import Shard, finish_metrics
from harness.runs.locks import FileLock
from harness.runs.store import find_runs
from harness.shards import MergeResult, merge_run, shard_dir
from harness.sweep.spec import load_sweep
from harness.sweep.status import format_status, sweep_status
from suites.gsm8k import GSM8K

N = 10


@pytest.fixture
def replay(data_dir: Path, tmp_path: Path) -> Path:
    """Gold answers for even positions, a wrong one for odd: metrics that are neither 0 nor 1."""
    suite = GSM8K()
    rows = [
        {"sample_id": s.id, "text": suite.gold_response(s) if i % 2 == 0 else "The answer is 7."}
        for i, s in enumerate(suite.load(DataSource(data_dir), N).samples)
    ]
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(replay: Path, runs: Path, data_dir: Path, shard: Shard | None = None) -> harness.EvalResults:
    return harness.evaluate(
        f"replay:{replay}", "gsm8k", limit=N, runs=runs, data_dir=data_dir, progress=False, shard=shard
    )


def lines(path: Path) -> list[dict[str, object]]:
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


def test_merged_run_equals_the_unsharded_run(replay: Path, tmp_path: Path, data_dir: Path) -> None:
    whole = run(replay, tmp_path / "whole", data_dir).runs[0]
    runs = tmp_path / "sharded"
    first = run(replay, runs, data_dir, Shard(2, 3)).runs[0]
    run_dir = runs / whole.run_dir.relative_to(tmp_path / "whole")
    assert first.run_dir == shard_dir(run_dir, 2, 3) and first.n_samples == 3  # positions 2, 5, 8
    assert [r["id"] for r in lines(first.run_dir / "samples.jsonl")] == [
        s.id for s in GSM8K().load(DataSource(data_dir), N).samples[2::3]
    ]
    run(replay, runs, data_dir, Shard(0, 3))
    assert not (run_dir / "manifest.json").exists() and find_runs(runs) == []  # shards are not runs
    last = run(replay, runs, data_dir, Shard(1, 3)).runs[0]
    assert last.run_dir == run_dir and last.n_samples == N
    assert find_runs(runs) == [run_dir]

    merged, unsharded = lines(run_dir / "samples.jsonl"), lines(whole.run_dir / "samples.jsonl")
    assert [comparable(r) for r in merged] == [comparable(r) for r in unsharded]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads((whole.run_dir / "metrics.json").read_text())
    assert 0 < metrics["metrics"]["exact_match_flex"]["value"] < 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    expected = json.loads((whole.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["n_samples"] == N
    assert manifest["usage"] == expected["usage"] and manifest["settings_hash"] == expected["settings_hash"]
    assert len(manifest["invocations"]) == 3
    assert {k: v.value for k, v in last.metrics.items()} == {k: v.value for k, v in whole.metrics.items()}


def test_a_rerun_shard_resumes_without_duplicates(replay: Path, tmp_path: Path, data_dir: Path) -> None:
    runs = tmp_path / "runs"
    folder = run(replay, runs, data_dir, Shard(0, 2)).runs[0].run_dir
    samples = folder / "samples.jsonl"
    kept = samples.read_text().splitlines()[:2]
    samples.write_text("\n".join(kept) + "\n" + kept[-1][:30])  # killed mid-write: a torn last line
    state = json.loads((folder / "shard.json").read_text())
    (folder / "shard.json").write_text(json.dumps({**state, "status": "running"}))

    again = run(replay, runs, data_dir, Shard(0, 2)).runs[0]
    done = again.invocation
    assert done.resumed == 2 and done.generated + done.cache_hits == 3 and done.repaired_bytes == 30
    ids = [r["id"] for r in lines(samples)]
    assert len(ids) == len(set(ids)) == 5
    assert json.loads((folder / "shard.json").read_text())["status"] == "complete"


def test_a_shard_of_a_merged_run_does_nothing(replay: Path, tmp_path: Path, data_dir: Path) -> None:
    runs = tmp_path / "runs"
    run(replay, runs, data_dir, Shard(0, 2))
    run_dir = run(replay, runs, data_dir, Shard(1, 2)).runs[0].run_dir
    before = {
        name: (run_dir / name).read_bytes() for name in ("samples.jsonl", "metrics.json", "manifest.json")
    }
    (shard_dir(run_dir, 1, 2) / "samples.jsonl").write_text("")  # even with its own samples gone
    again = run(replay, runs, data_dir, Shard(1, 2)).runs[0]
    assert again.invocation.generated == again.invocation.cache_hits == 0 and again.run_dir == run_dir
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_racing_merges_write_one_correct_run(replay: Path, tmp_path: Path, data_dir: Path) -> None:
    runs = tmp_path / "runs"
    run(replay, runs, data_dir, Shard(0, 2))
    run_dir = run(replay, runs, data_dir, Shard(1, 2)).runs[0].run_dir
    expected = (run_dir / "samples.jsonl").read_text()
    for name in ("samples.jsonl", "metrics.json", "manifest.json"):
        (run_dir / name).unlink()
    suite = GSM8K()
    order = [s.id for s in suite.load(DataSource(data_dir), N).samples]
    results: list[MergeResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(merge_run(run_dir, suite, order, 2, finish_metrics)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.merged for r in results) and sum(not r.already for r in results) == 1
    assert (run_dir / "samples.jsonl").read_text() == expected
    assert not (run_dir / ".merge.lock").exists()


def test_merge_waits_for_every_shard(replay: Path, tmp_path: Path, data_dir: Path) -> None:
    runs = tmp_path / "runs"
    folder = run(replay, runs, data_dir, Shard(1, 3)).runs[0].run_dir
    suite = GSM8K()
    order = [s.id for s in suite.load(DataSource(data_dir), N).samples]
    result = merge_run(folder.parent.parent, suite, order, 3, finish_metrics)
    assert result == MergeResult(merged=False, waiting_for=(0, 2))


def test_file_lock_excludes_and_breaks_dead_holders(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with FileLock(path):
        holder = path.read_text()
        assert holder.split()[1] == str(os.getpid())
        with pytest.raises(UsageError, match=f"locked by pid {os.getpid()}"):
            FileLock(path).__enter__()
    assert not path.exists()

    # A holder on this host whose process is gone: taken over at once.
    path.write_text(f"{socket.gethostname()} 999999999 - 1")
    with FileLock(path):
        assert path.read_text().split()[1] == str(os.getpid())
    # A holder elsewhere whose heartbeat stopped: taken over once stale, not before.
    path.write_text("othernode 1234 77 1")
    with pytest.raises(UsageError, match=r"pid 1234 on othernode \(Slurm job 77\)"):
        FileLock(path, stale_s=60).__enter__()
    old = time.time() - 120
    os.utime(path, (old, old))
    with FileLock(path, stale_s=60):
        assert "othernode" not in path.read_text()


def test_file_lock_heartbeat_keeps_it_fresh(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with FileLock(path, heartbeat_s=0.05):
        old = time.time() - 100
        os.utime(path, (old, old))
        time.sleep(0.3)
        assert time.time() - path.stat().st_mtime < 5


def test_sweep_status_counts_shard_folders(replay: Path, tmp_path: Path, data_dir: Path) -> None:
    runs = tmp_path / "runs"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"suites: [gsm8k]\nlimit: {N}\ncheckpoints: [replay:{replay}, embedded]\nslurm: {{shards: 2}}\n"
    )
    spec = load_sweep(sweep)
    run(replay, runs, data_dir, Shard(1, 2))
    rows = sweep_status(spec, runs)
    assert [
        (r.checkpoint, r.samples_done, r.samples_total, r.shards_done, r.shard_count, r.state) for r in rows
    ] == [
        (f"replay:{replay}", 5, N, 1, 2, "running"),
        ("embedded", 0, N, 0, 0, "pending"),
    ]
    run(replay, runs, data_dir, Shard(0, 2))
    rows = sweep_status(spec, runs)
    assert (rows[0].samples_done, rows[0].shards_done, rows[0].merged, rows[0].state) == (
        N,
        2,
        True,
        "complete",
    )
    table = format_status(rows)
    assert "10/10" in table and "2/2" in table and "complete" in table and "pending" in table
    assert table.endswith("1 of 2 checkpoint x suite runs complete")


def test_find_runs_never_takes_a_shard_folder_for_a_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "embedded" / "gsm8k@1.0" / "abc"
    for folder in (run_dir, run_dir / "shards" / "0-of-2", tmp_path / "shards" / "gsm8k@1.0" / "def"):
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    assert find_runs(tmp_path) == [run_dir, tmp_path / "shards" / "gsm8k@1.0" / "def"]
