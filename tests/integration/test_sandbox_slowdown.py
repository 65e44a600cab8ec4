"""Correct programs still pass on a machine that gives them a quarter of a CPU.

The harness runs under a CPU quota (a cgroup, or pinned spinners where cgroups are not writable,
tests/support/cpu_quota.py), as on a busy shared host. The slowest gold MBPP program (task 123, about
4 s of CPU on the reference machine) then needs about 16 s of wall time: the pinned 10 s wall limit
kills it (the control), and the calibrated limits (`suites.sandbox.timing`) let it pass.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.support.cpu_quota import run_slowed

SHARE = 0.25
TASKS = ("mbpp-11", "mbpp-123", "mbpp-325")

SCRIPT = """
import json, sys
from suites.sandbox import timing as sandbox_timing
from harness.data import resolve_data_source
from suites.sandbox import run_jobs
from suites.mbpp import LIMITS, MBPP
suite = MBPP()
samples = [s for s in suite.load(resolve_data_source(sys.argv[1]), None).samples if s.id in sys.argv[3].split(",")]
if sys.argv[2] == "calibrated":  # the scorer's own path
    results = [suite.execute(s, [suite.gold_response(s)])[0] for s in samples]
else:  # the pinned limits, unscaled
    results = run_jobs([suite.job(s, suite.gold_response(s)) for s in samples], LIMITS, max_workers=1)
print(json.dumps({
    "results": {s.id: [r.status, r.limits.wall_s, round(r.duration_s, 2)] for s, r in zip(samples, results)},
    "record": sandbox_timing.record_since(0),
}))
"""


def _run(mode: str, data_dir: Path) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", SCRIPT, str(data_dir), mode, ",".join(TASKS)]
    proc, method = run_slowed(argv, SHARE, env=env, cwd=str(ROOT), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), method


def test_gold_programs_pass_under_a_cpu_quota_with_calibrated_limits(data_dir: Path) -> None:
    calibrated, method = _run("calibrated", data_dir)
    statuses = {task: result[0] for task, result in calibrated["results"].items()}
    assert statuses == dict.fromkeys(TASKS, "passed"), (method, calibrated)
    record = calibrated["record"]
    assert record is not None and record["cpu_share"] < 0.5, (method, record)
    assert calibrated["results"]["mbpp-123"][1] >= 30.0  # the wall limit grew with the measured share

    control, method = _run("pinned", data_dir)
    assert control["results"]["mbpp-123"][0] == "timeout", (method, control)  # what calibration prevents
    assert control["results"]["mbpp-11"][0] == "passed"
