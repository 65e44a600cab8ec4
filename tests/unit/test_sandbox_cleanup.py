"""Sandboxed programs die with a SIGKILLed harness, and the next start removes what that harness left.

A small "harness" process runs `ORPHAN_MAKER` in the sandbox (it clears its own parent-death signal and
leaves a setsid()ed, sleeping grandchild), and is SIGKILLed while the program sleeps; as root and, where
the tests run as root, as `nobody` (the user-namespace path). The sweep is also tested on its own: it must
remove the leftovers of dead runs and nothing else.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.names import claim_folder
from suites.sandbox import MARKER, UID_RANGE, Limits, check_program, cleanup
from tests.conftest import ROOT
from tests.support import hostile_programs as hp
from tests.support.sandbox_drivers import (
    NOBODY,
    ROOT_USER,
    USERS,
    alive,
    cmdline,
    descendants,
    driver,
    driver_env,
    real_uid,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

RUN_ONE = """
import sys
from suites.sandbox import Limits, check_program
r = check_program(sys.argv[1], "assert True", limits=Limits(wall_s=120, cpu_s=60))
print(r.status, r.processes_hidden, r.notes)
"""


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("user", USERS)
def test_a_sigkilled_harness_takes_its_sandboxed_programs_with_it(user: str) -> None:
    python, as_user = driver(user)
    probe = subprocess.run(
        [python, "-c", RUN_ONE, "pass"], cwd=ROOT, env=driver_env(), capture_output=True, text=True,
        timeout=60, **as_user,
    )  # fmt: skip
    assert probe.stdout.startswith("passed"), probe.stderr
    if user != "root" and not probe.stdout.startswith("passed True"):
        pytest.skip(f"no PID namespace for an unprivileged harness here: {probe.stdout}")
    harness = subprocess.Popen(
        [python, "-c", RUN_ONE, hp.ORPHAN_MAKER], cwd=ROOT, env=driver_env(), **as_user
    )
    try:
        # runner, namespace init, program, its grandchild (the middle child exits)
        wait_for(lambda: len(descendants(harness.pid)) >= 4, 30, "the sandboxed program and its grandchild")
        time.sleep(0.3)  # let the program and its grandchild reach their sleeps
        tree = descendants(harness.pid)
        runner = next(p for p in tree if MARKER in cmdline(p) and p in _children(harness.pid))
        folder = os.path.dirname(json.loads(cmdline(runner)[5])["workdir"])
        uids = {u for u in map(real_uid, tree) if u is not None and u not in (0, NOBODY)}
        if user == "root":
            assert len(uids) == 1 and UID_RANGE[0] <= min(uids) < UID_RANGE[1]
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    start = time.monotonic()
    wait_for(lambda: not any(alive(p) for p in tree), 5, f"the processes {tree} to die")
    assert time.monotonic() - start < 3
    for uid in uids:
        assert cleanup.pids_of_uid(uid) == []
    assert os.path.isdir(folder)  # the killed harness could not clean up: the next start does
    subprocess.run(
        [python, "-c", RUN_ONE, "pass"], cwd=ROOT, env=driver_env(), timeout=60, check=True,
        capture_output=True, **as_user,
    )  # fmt: skip
    assert not os.path.exists(folder)


def _children(pid: int) -> list[int]:
    return [p for p in descendants(pid) if _ppid(p) == pid]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None


def test_runs_from_worker_threads_are_not_cut_short() -> None:
    """The runner's parent-death signal follows the thread that started it: runs started from worker
    threads (asyncio.to_thread, as the runner scores) must live until they end, however threads come and go."""

    async def main() -> list[tuple[bool, float]]:
        jobs = [f"import time\ntime.sleep({s})\n" + hp.RIGHT for s in (0.1, 0.6, 1.2)]
        results = await asyncio.gather(
            *(asyncio.to_thread(check_program, job, hp.TESTS, limits=Limits(wall_s=10)) for job in jobs)
        )
        return [(r.passed, r.duration_s) for r in results]

    outcomes = asyncio.run(main())
    assert [passed for passed, _ in outcomes] == [True, True, True], outcomes
    assert outcomes[2][1] >= 1.2


@pytest.mark.skipif(not ROOT_USER, reason="only root can run processes under sandbox uids")
def test_sweep_kills_processes_of_sandbox_uids_that_no_live_run_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lock folder of its own: after a few thousand runs every uid of the range has a lock file in the
    # real one, and this test needs a uid without one (a process of some other user of that range).
    monkeypatch.setattr(cleanup, "LOCK_DIR", str(tmp_path / "uids"))
    orphaned, orphan_fd = cleanup.claim_uid()
    os.close(orphan_fd)  # as if its harness died: the lock file exists and is free
    held, held_fd = cleanup.claim_uid()
    foreign = next(
        u for u in range(UID_RANGE[1] - 1, UID_RANGE[0], -1)
        if not os.path.exists(os.path.join(cleanup.LOCK_DIR, f"{u}.lock"))
    )  # fmt: skip
    sleepers = {
        uid: subprocess.Popen(["sleep", "60"], user=uid, group=uid, extra_groups=[])
        for uid in (orphaned, held, foreign)
    }
    try:
        wait_for(lambda: all(cleanup.pids_of_uid(u) for u in sleepers), 10, "the sleepers")
        killed = cleanup.sweep_processes()
        assert orphaned in killed and held not in killed and foreign not in killed
        assert sleepers[orphaned].wait(timeout=5) == -signal.SIGKILL
        assert sleepers[held].poll() is None and sleepers[foreign].poll() is None
    finally:
        os.close(held_fd)
        for proc in sleepers.values():
            proc.kill()
            proc.wait()


def dead_run(base: str) -> str:
    """A run folder whose owner is gone: its marker's lock is free (the kernel frees it when a process dies)."""
    folder, fd = cleanup.claim_workdir(base)
    os.close(fd)
    return folder


def test_sweep_removes_the_folders_of_dead_runs_and_nothing_else(tmp_path: Path) -> None:
    base = tmp_path / "tmp"
    base.mkdir()
    dead = dead_run(str(base))
    Path(dead, "work", "locked").mkdir()
    Path(dead, "work", "locked", "f").write_text("x")
    Path(dead, "work", "locked").chmod(0)  # what a program may leave: still removed
    live, live_fd = cleanup.claim_workdir(str(base))
    elsewhere = dead_run(str(tmp_path))  # outside `base`
    kept = {
        "no marker": base / "harness-sbx-nomarker",
        "another purpose": claim_folder(base / "harness-sbx-checkpoint", "checkpoint"),
        "another name": base / "my-sbx-folder",
        "a symlink": base / "harness-sbx-link",
        "a linked marker": base / "harness-sbx-linkedmarker",
    }
    kept["no marker"].mkdir()
    (kept["no marker"] / "data.txt").write_text("precious")
    os.rename(dead_run(str(tmp_path)), kept["another name"])
    kept["a symlink"].symlink_to(elsewhere)
    kept["a linked marker"].mkdir()
    (kept["a linked marker"] / ".harness-owned.json").symlink_to(Path(elsewhere) / ".harness-owned.json")
    if ROOT_USER:
        kept["another user's"] = Path(dead_run(str(base)))
        os.chown(kept["another user's"], NOBODY, NOBODY)
    try:
        removed = cleanup.sweep_folders(str(base))
        assert removed == (dead,)
        assert not os.path.exists(dead)
        assert os.path.isdir(live) and os.path.isdir(elsewhere)
        assert {what: path.exists() for what, path in kept.items()} == {what: True for what in kept}
        assert (kept["no marker"] / "data.txt").read_text() == "precious"
    finally:
        os.close(live_fd)
    assert cleanup.sweep_folders(str(base)) == (live,)  # its owner is gone now


def test_a_finished_run_leaves_no_folder_and_no_lock_held() -> None:
    result = check_program(hp.RIGHT, hp.TESTS)
    assert result.passed
    folder = os.path.dirname(result.workdir)
    assert os.path.basename(folder).startswith(cleanup.WORKDIR_PREFIX) and not os.path.exists(folder)
    if result.uid is not None:
        fd = os.open(os.path.join(cleanup.LOCK_DIR, f"{result.uid}.lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the run still held it
        finally:
            os.close(fd)
