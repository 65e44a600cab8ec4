"""Time limits for sandboxed code that mean the same on a slow, loaded or CPU-quota'd machine.

A suite's limits (`suites.mbpp.LIMITS`: 5 s CPU, 10 s wall) are for a reference machine (a fast core). Run as-is
on a CPU half as fast, or on a host whose other work (or a cgroup quota) leaves a program a quarter of a
core, correct but slow programs would be killed: evalplus saw pass@1 fall from about 0.4 to 0.23 on a slow
CPU. So, once per process, a fixed pure-Python workload runs in a fresh interpreter and we measure:

- `speed_factor`: its CPU seconds over those on the reference machine (`REFERENCE_CPU_S`), at least 1:
  the CPU limit is multiplied by it (a faster machine keeps the pinned limits);
- `cpu_share`: its CPU seconds over its wall seconds, at most 1: the share of a core a process gets here
  now; the wall limit is multiplied by speed_factor / cpu_share.

Both are clamped (at most 5x CPU and 10x wall) so a freak measurement cannot let a hostile sleeper run for
minutes. Load changes during a long run, so a program that hits a limit triggers a fresh measurement (at
most one per `RECALIBRATE_EVERY_S`), and if the limits it gives are larger, the program runs once more
under them. What was used goes into each run's manifest (`record_since`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from suites.sandbox import Job, Limits, ProgramResult, run_jobs

# The workload's CPU seconds on the reference machine the pinned limits are for: a fast desktop-class
# core. The development machine (AMD EPYC Zen 3 server, 2 cores) takes 0.16-0.20 s, so it gets 1.3-1.7x
# the pinned limits, which its slowest gold MBPP program needs (task 123: 3.9-5.2 s of CPU, more under
# load, against the pinned 5 s).
REFERENCE_CPU_S = 0.12
MAX_CPU_FACTOR = 5.0
MAX_WALL_FACTOR = 10.0
RECALIBRATE_EVERY_S = 30.0

# Long enough to span several scheduler quota periods (100 ms), like the interpreted code it stands for.
_WORKLOAD = """
import json, time
c0, w0 = time.process_time(), time.perf_counter()
total = 0
for i in range(1_200_000):
    total += (i * i) % 7
words = sorted(str(i) for i in range(60_000))
c1, w1 = time.process_time(), time.perf_counter()
print(json.dumps([c1 - c0, w1 - w0, total + len(words)]))
"""


@dataclass(frozen=True)
class Calibration:
    workload_cpu_s: float
    workload_wall_s: float
    speed_factor: float  # >= 1: CPU time limits are multiplied by it
    cpu_share: float  # in (0, 1]: wall limits are divided by it
    measured_at: float  # time.time()

    def scale(self, base: Limits) -> Limits:
        cpu = min(base.cpu_s * MAX_CPU_FACTOR, base.cpu_s * self.speed_factor)
        wall = min(base.wall_s * MAX_WALL_FACTOR, base.wall_s * self.speed_factor / self.cpu_share)
        return replace(base, cpu_s=math.ceil(cpu - 1e-9), wall_s=round(max(base.wall_s, wall), 1))


def measure() -> Calibration:
    """Run the reference workload in a fresh interpreter (the same kind of process sandboxed code runs in)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _WORKLOAD], capture_output=True, text=True, timeout=120, check=True
    )
    cpu_s, wall_s, _ = json.loads(proc.stdout)
    cpu_s, wall_s = max(cpu_s, 1e-3), max(wall_s, 1e-3)
    return Calibration(
        workload_cpu_s=round(cpu_s, 4),
        workload_wall_s=round(wall_s, 4),
        speed_factor=round(max(1.0, cpu_s / REFERENCE_CPU_S), 3),
        cpu_share=round(min(1.0, max(1.0 / MAX_WALL_FACTOR, cpu_s / wall_s)), 3),
        measured_at=time.time(),
    )


class _State:
    lock = threading.Lock()
    current: Calibration | None = None
    runs = 0  # programs run through run_calibrated in this process
    reruns = 0  # of them, run again under larger limits after hitting one


def calibration(fresh: bool = False) -> Calibration:
    """This process's measurement (taken on first use); `fresh` re-measures unless one is recent."""
    with _State.lock:
        current = _State.current
        stale = current is None or (fresh and time.time() - current.measured_at > RECALIBRATE_EVERY_S)
        if stale:
            _State.current = current = measure()
        assert current is not None
        return current


def run_calibrated(jobs: Sequence[Job], base: Limits, max_workers: int | None = None) -> list[ProgramResult]:
    """`run_jobs` under `base` scaled to this machine; jobs that hit a limit run again if a fresh
    measurement gives larger limits (the machine got busier or slower since the last one)."""
    limits = calibration().scale(base)
    results = run_jobs(jobs, limits, max_workers)
    limited = [i for i, r in enumerate(results) if r.hit_a_limit]
    if limited:
        larger = calibration(fresh=True).scale(base)
        if larger.cpu_s > limits.cpu_s or larger.wall_s > limits.wall_s:
            again = run_jobs([jobs[i] for i in limited], larger, max_workers)
            for i, result in zip(limited, again, strict=True):
                results[i] = result
            with _State.lock:
                _State.reruns += len(limited)
    with _State.lock:
        _State.runs += len(jobs)
    return results


def runs_so_far() -> int:
    with _State.lock:
        return _State.runs


def record_since(runs_before: int) -> dict[str, Any] | None:
    """What the manifest records about limits, if calibrated programs ran since `runs_so_far()` said
    `runs_before`: the measurement now in use and the factors it gave."""
    with _State.lock:
        if _State.runs == runs_before or _State.current is None:
            return None
        record = asdict(_State.current)
        record.update(reference_cpu_s=REFERENCE_CPU_S, reruns_in_process=_State.reruns)
        return record
