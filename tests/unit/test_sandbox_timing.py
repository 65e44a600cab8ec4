"""Sandbox time limits scaled to the machine: arithmetic, the rerun after a limit, and the manifest record."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import create_adapter
from harness.checkpoints import parse_checkpoint
from harness.data import DataSource
from harness.runner import EvalSpec, evaluate
from suites.mbpp import LIMITS, MBPP
from suites.sandbox import Job, Limits
from suites.sandbox import timing as sandbox_timing
from suites.sandbox.timing import Calibration, run_calibrated

BASE = Limits(wall_s=10.0, cpu_s=5)
# About 2.2 s of CPU here (up to ~4 s when a busy machine shares its cores): over 1 s, under 5 s.
BUSY = (
    "def busy():\n    total = 0\n    for i in range(60_000_000):\n        total += i & 3\n    return total\n"
)
BUSY_TESTS = "assert busy() == 90_000_000\n"


def calibration(speed: float, share: float) -> Calibration:
    return Calibration(0.2 * speed, 0.2 * speed / share, speed, share, time.time())


def test_limits_scale_with_speed_and_share_and_are_clamped() -> None:
    assert calibration(1.0, 1.0).scale(BASE) == BASE
    assert calibration(1.3, 1.0).scale(BASE) == Limits(wall_s=13.0, cpu_s=7)
    assert calibration(1.0, 0.25).scale(BASE) == Limits(wall_s=40.0, cpu_s=5)
    assert calibration(40.0, 0.1).scale(BASE) == Limits(wall_s=100.0, cpu_s=25)  # 5x CPU, 10x wall at most


def test_a_measurement_runs_the_workload_in_a_fresh_interpreter() -> None:
    measured = sandbox_timing.measure()
    assert measured.workload_cpu_s > 0.01 and measured.workload_wall_s >= measured.workload_cpu_s * 0.9
    assert measured.speed_factor >= 1.0 and 0.1 <= measured.cpu_share <= 1.0


@pytest.fixture
def pinned_calibration(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Calibration]]:
    """Calibrations handed out in order (the last one repeats), instead of measuring."""
    queue: list[Calibration] = []

    def fake(fresh: bool = False) -> Calibration:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    monkeypatch.setattr(sandbox_timing, "calibration", fake)
    yield queue


def test_a_slow_cpu_gets_a_larger_cpu_limit(pinned_calibration: list[Calibration]) -> None:
    base = Limits(wall_s=10.0, cpu_s=1)
    pinned_calibration.append(calibration(1.0, 1.0))
    (plain,) = run_calibrated([Job(BUSY, BUSY_TESTS)], base)
    assert plain.status == "failed" and plain.signal in ("SIGXCPU", "SIGKILL") and plain.limits.cpu_s == 1
    pinned_calibration[:] = [calibration(5.0, 1.0)]  # as if this CPU were 5x slower than the reference
    (scaled,) = run_calibrated([Job(BUSY, BUSY_TESTS)], base)
    assert scaled.passed and scaled.limits.cpu_s == 5, scaled.reason


def test_a_program_that_hit_a_limit_runs_again_when_a_fresh_measurement_allows_more(
    pinned_calibration: list[Calibration],
) -> None:
    base = Limits(wall_s=10.0, cpu_s=1)
    pinned_calibration[:] = [calibration(1.0, 1.0), calibration(5.0, 1.0)]  # the machine slowed down
    before = sandbox_timing.runs_so_far()
    honest, busy = run_calibrated(
        [Job("def f():\n    return 1\n", "assert f() == 1\n"), Job(BUSY, BUSY_TESTS)], base
    )
    assert honest.passed and honest.limits.cpu_s == 1
    assert busy.passed and busy.limits.cpu_s == 5, busy.reason
    assert sandbox_timing.runs_so_far() == before + 2


def test_the_record_appears_only_when_sandboxed_code_ran() -> None:
    before = sandbox_timing.runs_so_far()
    assert sandbox_timing.record_since(before) is None
    run_calibrated([Job("def f():\n    return 1\n", "assert f() == 1\n")], BASE)
    record = sandbox_timing.record_since(before)
    assert record is not None
    assert record["reference_cpu_s"] == sandbox_timing.REFERENCE_CPU_S
    assert record["speed_factor"] >= 1.0 and 0.1 <= record["cpu_share"] <= 1.0


def test_an_mbpp_run_records_the_measurement_in_its_manifest(tmp_path: Path, data_dir: Path) -> None:
    suite = MBPP()
    samples = suite.load(DataSource(data_dir), 2).samples
    replay = tmp_path / "gold.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": suite.gold_response(s)}) + "\n" for s in samples)
    )
    ref = parse_checkpoint(f"replay:{replay}")
    spec = EvalSpec(
        ref, suite, suite.default_settings(), 2, DataSource(data_dir), tmp_path / "runs", use_cache=False
    )
    outcome = asyncio.run(evaluate(spec, create_adapter(ref)))
    assert outcome.metrics["pass@1"].value == 1.0
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    recorded = manifest["invocations"][-1]["sandbox_timing"]
    assert recorded["reference_cpu_s"] == sandbox_timing.REFERENCE_CPU_S
    assert recorded["speed_factor"] >= 1.0 and 0.1 <= recorded["cpu_share"] <= 1.0
    assert manifest["suite_settings"]["sandbox"] == {"wall_s": 10.0, "cpu_s": 5, "memory_bytes": 1 << 30}
    limits = calibration_limits(recorded)
    first = json.loads((outcome.run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert f"cpu_s={limits.cpu_s} wall_s={limits.wall_s:g}" in first["extracted"]["sandbox"]


def calibration_limits(recorded: dict[str, float]) -> Limits:
    measured = Calibration(
        recorded["workload_cpu_s"],
        recorded["workload_wall_s"],
        recorded["speed_factor"],
        recorded["cpu_share"],
        0.0,
    )
    return measured.scale(LIMITS)
