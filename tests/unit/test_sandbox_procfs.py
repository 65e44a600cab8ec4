"""A sandboxed program cannot read the harness's command line or environment through /proc.

A small "harness" process carries a planted secret in its argv (a database URL with a password) and in
its environment, and runs `proc_snooper` in the sandbox: the snooper reads every /proc/<pid>/cmdline and
environ it can reach, then tries to get rid of the sandbox's fresh /proc and looks again. The same snooper
run as a plain child of that process (the control) must find the secret, so these tests can fail.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.support.sandbox_drivers import USERS, driver, driver_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

DRIVER = """
import json, os, subprocess, sys
from suites.sandbox import Limits, check_program
from tests.support.hostile_programs import proc_snooper
own_mount_ns = os.readlink("/proc/self/ns/mnt")
if sys.argv[1] == "plain-child":
    program = proc_snooper(os.getpid(), escape=False)
    # A clean environment for the child, so the secret it finds is its parent's, not its own copy.
    child = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env={})
    print(json.dumps({"out": child.stdout, "err": child.stderr}))
else:
    program = proc_snooper(os.getpid(), escape=True, own_mount_ns=own_mount_ns)
    r = check_program(program, "", limits=Limits(wall_s=30, cpu_s=20))
    print(json.dumps({"status": r.status, "out": r.stdout_tail, "err": r.stderr_tail,
                      "hidden": r.processes_hidden, "dropped": r.privileges_dropped, "notes": list(r.notes)}))
"""


def run_driver(user: str, mode: str) -> tuple[str, int, dict[str, object]]:
    """(the planted secret, the driver's pid, what the driver printed)."""
    python, as_user = driver(user)
    secret = f"sk-leak-{secrets.token_hex(12)}"
    proc = subprocess.Popen(
        [python, "-c", DRIVER, mode, f"--database-url=postgres://eval:{secret}@db.internal/runs"],
        cwd=ROOT, env=driver_env(HARNESS_DB_PASSWORD=secret), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **as_user,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return secret, proc.pid, json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("user", USERS)
def test_the_snooper_finds_the_secret_outside_the_sandbox(user: str) -> None:
    """The control: as a plain child, the same program reads its parent's argv and environment."""
    secret, pid, seen = run_driver(user, "plain-child")
    assert f"/proc/{pid}/cmdline" in str(seen["out"]) and f"/proc/{pid}/environ" in str(seen["out"]), seen
    assert secret in str(seen["out"])


@pytest.mark.parametrize("user", USERS)
def test_a_sandboxed_program_cannot_read_the_harness_cmdline_or_environ(user: str) -> None:
    secret, _pid, seen = run_driver(user, "sandboxed")
    if user == "root" or seen["hidden"]:
        assert seen["hidden"] is True, seen["notes"]
    else:
        pytest.skip(f"no PID namespace for an unprivileged harness here: {seen['notes']}")
    assert seen["status"] == "passed", seen
    out = str(seen["out"])
    assert "found []" in out, out
    assert "snooped" in out and "listed pids [2]" in out, out  # it ran, and saw only itself (pid 2)
    assert secret not in out and secret not in str(seen["err"])
