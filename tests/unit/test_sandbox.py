"""The sandbox against hostile programs: each attack is contained, scored as a failure, and leaves nothing.

These run real subprocesses under the real limits (shortened where the attack would otherwise wait for
the default 10 s wall clock). As root with CAP_SYS_ADMIN (CI containers), network isolation and the
privilege drop are required, not optional; elsewhere the tests that depend on them are skipped with the
reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from suites.sandbox import MARKER, Job, Limits, ProgramResult, check_program, run_job, run_jobs
from tests.conftest import ROOT
from tests.support import hostile_programs as hp

ROOT_USER = os.geteuid() == 0


def _has_cap_sys_admin() -> bool:
    status = Path("/proc/self/status").read_text() if os.path.exists("/proc/self/status") else ""
    caps = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return bool(int(caps, 16) & (1 << 21))


# Root with CAP_SYS_ADMIN (this project's CI containers): namespaces and the privilege drop are required.
FULL_ISOLATION_EXPECTED = ROOT_USER and _has_cap_sys_admin()
FAST = Limits(wall_s=3.0, cpu_s=1, memory_bytes=512 << 20, file_bytes=1 << 20, processes=16)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")


def leftover_processes(result: ProgramResult) -> list[str]:
    """Live processes of this run: owned by its sandbox uid, or with its working dir in their argv."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        state = next(line for line in status.splitlines() if line.startswith("State:"))
        if "zombie" in state:
            continue
        if (result.uid is not None and uid == result.uid) or (result.workdir and result.workdir in cmdline):
            found.append(f"{entry} uid={uid} {cmdline[:120]}")
    return found


def contained(result: ProgramResult) -> None:
    assert not result.passed, result
    assert leftover_processes(result) == []
    assert result.workdir and not os.path.exists(result.workdir)


def needs_isolation(result: ProgramResult, what: str) -> None:
    if FULL_ISOLATION_EXPECTED:
        assert result.network_isolated and result.privileges_dropped, result.notes
    elif what == "network" and not result.network_isolated:
        pytest.skip(f"no network namespace on this machine ({result.notes})")
    elif what == "privileges" and not result.privileges_dropped:
        pytest.skip(f"no privilege drop here (not root, or no mount namespace): {result.notes}")


def test_an_honest_program_passes_in_isolation_with_its_output_kept() -> None:
    result = check_program(hp.RIGHT + "print('hello from the program')\n", hp.TESTS)
    assert result.passed and result.returncode == 0, result
    assert "hello from the program" in result.stdout_tail
    assert result.stdout_tail.strip().splitlines()[-1] == "hello from the program"
    assert result.calls == 2 and result.reason == ""
    if FULL_ISOLATION_EXPECTED:
        assert result.network_isolated and result.privileges_dropped and result.uid is not None
        assert result.processes_hidden  # own PID namespace and /proc (tests/unit/test_sandbox_procfs.py)
        assert 60000 <= result.uid < 65000
    assert leftover_processes(result) == [] and not os.path.exists(result.workdir)


def test_a_failing_assert_fails_with_the_assert_named() -> None:
    result = check_program(hp.WRONG, hp.TESTS)
    assert result.status == "failed" and result.reason == "assertion failed: assert f(1) == 3", result
    assert result.calls == 1


def test_syntax_error_fails() -> None:
    result = check_program("def f(x)\n    return x + 2\n", hp.TESTS)
    assert result.status == "failed" and "SyntaxError" in result.stderr_tail
    assert result.reason.startswith("the program raised SyntaxError"), result.reason


@pytest.mark.parametrize("name", sorted(hp.EARLY_EXITS))
def test_early_exit_cannot_fake_a_pass(name: str) -> None:
    contained(check_program(hp.EARLY_EXITS[name], hp.TESTS, limits=FAST))


@pytest.mark.parametrize("name", sorted(hp.PATCHES))
def test_patched_builtins_cannot_make_failing_asserts_pass(name: str) -> None:
    result = check_program(hp.PATCHES[name], hp.PATCH_TESTS, limits=FAST)
    contained(result)
    assert result.reason.startswith("assertion failed: "), result.reason


@pytest.mark.parametrize(
    "name", ["builtins_print_silenced", "builtins_sorted_patched", "global_set_shadowed"]
)
def test_patches_do_not_break_an_honest_solution(name: str) -> None:
    """The same patches with a correct f: builtins are restored, so the tests run on the real ones."""
    program = hp.PATCHES[name].replace(hp.WRONG, hp.RIGHT)
    assert check_program(program, hp.PATCH_TESTS, limits=FAST).passed


def test_entry_point_named_like_a_builtin_is_kept_when_declared() -> None:
    program = "def sum(a, b):\n    return a * b\n"
    tests = "assert sum(2, 3) == 6\n"
    assert check_program(program, tests, entry_points=["sum"], limits=FAST).passed
    assert not check_program(program, tests, limits=FAST).passed  # undeclared: the builtin is used


def test_infinite_loop_is_killed_by_the_cpu_limit() -> None:
    start = time.monotonic()
    result = check_program(hp.INFINITE_LOOP, hp.TESTS, limits=FAST)
    contained(result)
    assert time.monotonic() - start < FAST.wall_s + 2


def test_sleeping_program_is_killed_at_the_wall_clock() -> None:
    result = check_program(hp.SLEEPER, hp.TESTS, limits=Limits(wall_s=1.0, cpu_s=1))
    contained(result)
    assert result.status == "timeout" and result.duration_s < 3


def test_fork_bomb_is_contained_and_every_process_killed() -> None:
    result = check_program(hp.FORK_BOMB, hp.TESTS, limits=FAST)
    contained(result)


def test_child_that_leaves_the_process_group_is_killed() -> None:
    result = check_program(hp.ESCAPING_CHILD, hp.TESTS, limits=FAST)
    needs_isolation(result, "privileges")
    contained(result)


def test_memory_bomb_hits_the_address_space_limit() -> None:
    # A generous CPU budget, so on a loaded machine the memory limit, not the CPU limit, stops it.
    result = check_program(hp.MEMORY_BOMB, hp.TESTS, limits=replace(FAST, cpu_s=20, wall_s=30))
    contained(result)
    assert result.status == "failed" and "MemoryError" in result.stderr_tail


def test_output_flood_is_bounded_by_the_file_size_limit() -> None:
    result = check_program(hp.OUTPUT_FLOOD, hp.TESTS, limits=FAST)
    contained(result)
    assert len(result.stdout_tail) <= 4000


def test_deleting_a_file_outside_the_work_dir_fails(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    result = check_program(hp.delete_file(str(canary)), hp.TESTS, limits=FAST)
    needs_isolation(result, "privileges")
    contained(result)
    assert canary.read_text() == "intact"


def test_writing_outside_the_work_dir_fails_or_vanishes(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    result = check_program(hp.write_file([str(target)], must_succeed=True), hp.TESTS, limits=FAST)
    needs_isolation(result, "privileges")
    contained(result)
    assert not target.exists()
    # World-writable places are private tmpfs in the child: the write "works" there and never shows here.
    shared = [
        f"{d}/harness-escape-{os.getpid()}-{time.monotonic_ns()}" for d in ("/tmp", "/var/tmp", "/dev/shm")
    ]
    shared = [p for p in shared if os.path.isdir(os.path.dirname(p))]
    check_program(hp.write_file(shared, must_succeed=False), hp.TESTS, limits=FAST)
    assert [p for p in shared if os.path.exists(p)] == []


def test_network_connection_to_a_local_listener_fails() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        result = check_program(hp.connect(port), hp.TESTS, limits=FAST)
        needs_isolation(result, "network")
        contained(result)
        assert "OSError" in result.stderr_tail or "Error" in result.stderr_tail
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever reached the listener


def test_secrets_in_the_parent_environment_are_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-test-{os.getpid()}-do-not-leak"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    result = check_program(hp.read_secret("OPENAI_API_KEY", secret), hp.TESTS, limits=FAST)
    contained(result)
    assert "AssertionError" in result.stderr_tail
    probe = check_program("import os\nprint(sorted(os.environ))\n", "", limits=FAST)
    assert probe.passed and "OPENAI_API_KEY" not in probe.stdout_tail
    assert "'HOME'" in probe.stdout_tail and "'PATH'" in probe.stdout_tail


def test_stdin_is_closed() -> None:
    assert not check_program("x = input()\n", "", limits=FAST).passed


def test_run_jobs_keeps_order_and_runs_concurrently() -> None:
    jobs = [Job(hp.RIGHT if i % 2 else hp.WRONG, hp.TESTS) for i in range(8)]
    results = run_jobs(jobs, FAST, max_workers=4)
    assert [r.passed for r in results] == [bool(i % 2) for i in range(8)]
    if FULL_ISOLATION_EXPECTED:
        assert len({r.uid for r in results}) == 8  # one uid per run
    sleepers = [Job("import time\ntime.sleep(0.5)\n", "") for _ in range(4)]
    start = time.monotonic()
    assert all(r.passed for r in run_jobs(sleepers, FAST, max_workers=4))
    assert time.monotonic() - start < 1.8  # serial would take over 2 s


def test_nothing_is_left_behind_after_a_hostile_batch(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    programs = [hp.FORK_BOMB, hp.ESCAPING_CHILD, hp.delete_file(str(canary)), hp.MEMORY_BOMB, hp.SLEEPER]
    results = run_jobs([Job(p, hp.TESTS) for p in programs], Limits(wall_s=2.0, cpu_s=1), max_workers=2)
    assert not any(r.passed for r in results)
    assert canary.read_text() == "intact"
    assert [p for r in results for p in leftover_processes(r)] == []
    marker_processes = [
        e
        for e in os.listdir("/proc")
        if e.isdigit() and _cmdline_has(e, MARKER) and _uid_of(e) in {r.uid for r in results}
    ]
    assert marker_processes == []
    assert run_job(Job(hp.RIGHT, hp.TESTS), FAST).passed  # the machine is still usable


def _cmdline_has(pid: str, needle: str) -> bool:
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _uid_of(pid: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_an_interpreter_living_under_tmp_still_runs(tmp_path: Path) -> None:
    """A checkout or venv under /tmp (as CI clones often are) must survive the sandbox's fresh /tmp."""
    import subprocess

    venv = Path(tempfile.mkdtemp(prefix="sbx-venv-", dir="/tmp"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        code = (
            "from suites.sandbox import check_program\n"
            "r = check_program('def f(x):\\n    return x + 1\\n', 'assert f(1) == 2\\n')\n"
            "print(r.status, r.privileges_dropped, r.notes)\n"
        )
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
        status, dropped, _notes = proc.stdout.split(" ", 2)
        assert status == "passed", proc.stdout
        if os.geteuid() == 0:
            assert dropped == "True", proc.stdout
    finally:
        shutil.rmtree(venv, ignore_errors=True)
