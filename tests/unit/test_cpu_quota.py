"""tests/support/cpu_quota.py really slows a CPU-bound child, and leaves no cgroup or spinner behind."""

from __future__ import annotations

import glob
import json
import os
import sys

import pytest

from tests.support.cpu_quota import GROUP_PREFIX, METHODS, SPINNER_MARKER, run_slowed

# Busy-loops for 0.3 s of its own CPU time; prints that CPU time, its wall time and its cgroups.
CHILD = """
import json, time
wall0, cpu0 = time.perf_counter(), time.process_time()
while time.process_time() - cpu0 < 0.3:
    pass
cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
print(json.dumps({"cpu": cpu, "wall": wall, "cgroups": open("/proc/self/cgroup").read().splitlines()}))
"""


def _spinners_alive() -> list[int]:
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if SPINNER_MARKER.encode() in handle.read():
                    alive.append(int(entry))
        except OSError:
            continue
    return alive


def _slowed_child(methods: tuple[str, ...]) -> tuple[dict[str, float | list[str]], str]:
    try:
        proc, method = run_slowed([sys.executable, "-c", CHILD], 0.25, timeout=60, methods=methods)
    except RuntimeError as error:
        pytest.skip(str(error))
    assert proc.returncode == 0, proc.stderr
    report: dict[str, float | list[str]] = json.loads(proc.stdout)
    return report, method


@pytest.mark.parametrize("method", [*METHODS, "default"])
def test_a_quarter_cpu_slows_a_busy_loop_and_cleans_up(method: str) -> None:
    report, used = _slowed_child(METHODS if method == "default" else (method,))
    if method != "default":
        assert used == method
    cpu, wall, cgroups = report["cpu"], report["wall"], report["cgroups"]
    assert isinstance(cpu, float) and isinstance(wall, float) and isinstance(cgroups, list)
    assert cpu >= 0.3
    assert wall >= 2 * cpu, f"{used}: {wall:.2f} s wall for {cpu:.2f} s CPU at share 0.25"

    groups = [line.rsplit("/", 1)[-1] for line in cgroups if f"/{GROUP_PREFIX}" in line]
    if used.startswith("cgroup"):
        assert groups, f"{used}: the child was not in a {GROUP_PREFIX}* cgroup: {cgroups}"
    for name in groups:
        assert not glob.glob(f"/sys/fs/cgroup/**/{name}", recursive=True), f"cgroup {name} left behind"
    assert _spinners_alive() == []
