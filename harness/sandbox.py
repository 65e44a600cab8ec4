"""Run untrusted generated code against its tests, one fresh, locked-down process per program.

What every program gets (Linux; the child is `python -I` = `sys.executable` in isolated mode; the runner
and its process tree are described in `harness.sandbox_child`):
- its own process and session (`start_new_session=True`); on the wall-clock timeout the whole process group
  is SIGKILLed, and when privileges were dropped every process of the run's uid is SIGKILLed too (a child
  that called setsid() to leave the group is still found) unless the run had its own PID namespace and
  ended by itself (then the kernel has already killed and reaped everything it started);
- limits (setrlimit): CPU time (soft, then SIGKILL at hard = soft + 1 s), address space, file size (also
  bounds stdout/stderr, which go to unlinked files, never to unbounded pipes), process count, no core files;
- an environment built from a short allowlist (PATH, LANG, LC_ALL, HOME, TMPDIR): nothing inherited, so
  API keys in the harness's environment are not visible; stdin is /dev/null;
- a new PID namespace whose init is a trusted process, with a fresh procfs (hidepid=2) on /proc: the
  program sees only its own run's processes, so the harness's (or anyone's) /proc/<pid>/cmdline and
  environ are out of reach, and when the run ends every process it forked dies with the namespace's init;
- death with the harness: the runner has PR_SET_PDEATHSIG(SIGKILL) (it never changes credentials, so the
  kernel keeps it), the namespace's init has it for the runner, and the kernel kills the whole namespace
  when its init dies: a SIGKILLed harness takes all its sandboxed programs with it within milliseconds.
  The signal is tied to the thread that started the runner; `run_job` waits in that same thread and kills
  the run before returning, even on an exception, so a worker thread never ends under a live run;
- a sweep, once per process before its first program (`harness.sandbox_cleanup.sweep`): as root, processes
  of sandbox uids whose lock no live run holds are SIGKILLed, and `harness-sbx-*` folders of this user whose
  locked owner marker (`harness.names` format) shows a dead owner are deleted; nothing else is touched;
- when the harness runs as root (the child starts as root and sets itself up before any untrusted code):
  a new network namespace (only a loopback that is down: even 127.0.0.1 is unreachable), a new mount
  namespace with fresh size-limited tmpfs on /tmp, /var/tmp, /dev/shm and on the working directory (so
  files written there vanish with the run, and other runs' files are invisible), parent directories that
  the unprivileged user could not traverse (e.g. a 0700 /root holding the interpreter) replaced by a tmpfs
  that exposes only the interpreter's own tree; then setgroups([]), setgid, setuid to a uid of its own
  (60000-64999, claimed with a lock file so concurrent runs, even from other processes, never share one;
  RLIMIT_NPROC counts per uid, so the process limit is exact per run), and no_new_privs (setuid binaries
  cannot give root back);
- without root: a user namespace with network, mount and PID namespaces where the kernel allows it (so no
  network, the fresh /proc, and death with the harness as above), with every capability dropped before the
  program runs (so it cannot unmount that /proc); no privilege drop and no filesystem isolation. Where the
  kernel refuses user namespaces: none of the namespaces, other processes visible (the harness's own
  cmdline and environ included: same user), and only the parent-death signal of the program itself.
  `ProgramResult` records what was applied (`network_isolated`, `privileges_dropped`, `processes_hidden`,
  with the reasons in `notes`).

The sentinel (why `exit(0)` and friends cannot fake a pass): the child runner (trusted code that runs
first) compiles the program and the tests separately. It runs the program, then restores the pristine
builtins module, removes program globals that shadow builtins (except names the tests are meant to call,
e.g. a task whose function is named `sum`), clears trace/profile hooks, and runs the tests in that
namespace. Only if the tests return normally does it read a random 128-bit token from an inherited pipe
and write it as the last line of stdout, then `os._exit(0)`. The token is never in the program text,
argv, environment or any file, and it is not in the process's memory while untrusted code runs. PASS =
exit status 0 and the last stdout line equal to the token. `exit(0)`, `sys.exit()`, `raise SystemExit`,
`os._exit(0)` (the runner never reaches the token), rebinding `builtins.AssertionError`/`print`/`sorted`
(restored; `assert` does not look up AssertionError), defining a global `sorted` that the tests would call
(dropped from the tests' namespace), or printing guessed text all fail.

What this sandbox does NOT protect against (read before running code you would not run yourself):
- a program written to attack this runner: it can find the token pipe (e.g. via /proc/self/fd), read the
  token and print it; it can rewrite objects the tests use through ctypes or gc tricks, patch attributes of
  modules the tests import (`math.isclose = ...`), or return objects whose `__eq__` is always true. The
  sentinel proves that the test code ran to its end without an exception, not that the tests meant much;
  a real boundary would run the tests in a separate process from the solution;
- kernel or interpreter exploits, and anything a root-owned file world-readable on this machine reveals
  (the program can read any file "other" may read, e.g. /etc/passwd, source trees, world-readable data);
  a secret the harness writes to a world-readable file is readable, only its argv and environ are hidden;
- without root: no filesystem isolation at all (the program can read and write whatever the harness user
  can, its config and credential files included), and RLIMIT_NPROC then counts all of that user's
  processes; without user namespaces also no hidden /proc (the harness's argv and environ are readable:
  same user) and no certain death with the harness (see the next item);
- what a killed harness leaves until the next sweep: its run folders stay (in the temporary directory)
  until a harness process of the same user runs a sandboxed program or calls `sandbox_cleanup.sweep()`;
  its processes die at once with their namespace's init, but where the kernel gave no PID namespace, a
  program that cleared its parent-death signal lives until that sweep (root) or forever (no root);
- side channels, timing, and CPU/memory-bandwidth contention with other work on the machine; tmpfs pages
  (up to the sizes below) are RAM that RLIMIT_AS does not count; /sys (e.g. cgroup process lists) is not
  hidden, though it shows no command lines or environments;
- filesystem Unix sockets the unprivileged user may open (a network namespace does not cover them);
- non-Linux platforms (resource limits and namespaces are Linux-specific here).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

from harness.sandbox_child import CHILD_SOURCE
from harness.sandbox_cleanup import UID_RANGE, Claim, claim_run, kill_uid, pids_of_uid, sweep, sweep_once

__all__ = [
    "MARKER", "UID_RANGE", "Job", "Limits", "ProgramResult", "check_program", "kill_uid", "run_job",
    "run_jobs", "sweep",
]  # fmt: skip

MARKER = "harness-sandbox-child"  # in every child's argv: tests find leftovers by it

Status = Literal["passed", "failed", "timeout", "error"]


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE, also bounds stdout/stderr
    processes: int = 16  # RLIMIT_NPROC (per uid)
    tmpfs_bytes: int = 64 << 20  # each private tmpfs (root only)


@dataclass(frozen=True)
class Job:
    program: str  # the untrusted code
    tests: str  # run after the program, in its namespace (setup code + asserts)
    prelude: str = ""  # run before the program, in its namespace (e.g. test imports)
    entry_points: tuple[str, ...] = ()  # builtin-shadowing names the tests may still use from the program


@dataclass(frozen=True)
class ProgramResult:
    status: Status
    returncode: int | None
    duration_s: float
    stdout_tail: str
    stderr_tail: str
    network_isolated: bool = False
    privileges_dropped: bool = False
    processes_hidden: bool = False  # own PID namespace + fresh /proc: no other process is visible to it
    uid: int | None = None  # the sandbox uid when privileges were dropped
    workdir: str = ""  # already deleted; also in the child's argv, so leftovers can be found by it
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _tail(handle: IO[bytes], limit: int) -> str:
    fd = handle.fileno()
    size = os.fstat(fd).st_size
    data = os.pread(fd, limit, max(0, size - limit))
    return data.decode("utf-8", "replace")


def _child_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
    }


def run_job(job: Job, limits: Limits = Limits()) -> ProgramResult:
    """Run one program + its tests in a fresh sandboxed process; blocks until it ends or is killed."""
    sweep_once()
    claim = claim_run(with_uid=os.geteuid() == 0)
    try:
        return _run_claimed(job, limits, claim)
    finally:
        claim.release()  # deletes the folder, then frees the marker and uid locks


def _run_claimed(job: Job, limits: Limits, claim: Claim) -> ProgramResult:
    uid, workdir = claim.uid, claim.workdir
    token = secrets.token_hex(16).encode()
    token_r, token_w = os.pipe()
    status_r, status_w = os.pipe()
    os.write(token_w, token)
    os.close(token_w)
    payload = tempfile.TemporaryFile()
    payload.write(json.dumps(asdict(job)).encode())
    payload.flush()
    payload.seek(0)
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    config = {
        "uid": uid,
        "workdir": workdir,
        "parent": os.getpid(),  # the runner exits if it was orphaned before its parent-death signal was set
        "tmpfs": limits.tmpfs_bytes,
        "limits": asdict(limits),
        "nproc": limits.processes if uid is not None else _nproc_for_unprivileged(limits.processes),
        "token_fd": token_r,
        "status_fd": status_w,
        "payload_fd": payload.fileno(),
    }
    start = time.monotonic()
    try:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", CHILD_SOURCE, json.dumps(config), MARKER],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=workdir, env=_child_env(workdir),
                pass_fds=(token_r, status_w, payload.fileno()), start_new_session=True, close_fds=True,
            )  # fmt: skip
        finally:
            os.close(token_r)
            os.close(status_w)
            payload.close()
        # Wait in this thread (the runner's parent-death signal is tied to it) and never return or raise
        # with the run alive: the finally kills the group (before reaping, so the pgid is not reused).
        ended = False
        try:
            ended = _wait_exited(proc, limits.wall_s)
        finally:
            _kill_group(proc.pid)
            returncode = proc.wait()
            setup = _parse_status(_read_all(status_r))
            # A run with its own PID namespace that ended by itself has nothing left: its init's exit
            # waited until the kernel had killed and reaped every process of the namespace.
            if uid is not None and not (ended and setup.get("pidns") is True):
                kill_uid(uid)
        timed_out = not ended
        duration = time.monotonic() - start
        out_tail, err_tail = _tail(stdout, 8192), _tail(stderr, 8192)
    finally:
        os.close(status_r)
        stdout.close()
        stderr.close()
    notes = tuple(str(n) for n in setup.get("notes", []))
    if "fatal" in setup:
        notes += (f"sandbox setup failed: {setup['fatal']}",)
    lines = out_tail.rstrip("\n").rsplit("\n", 1)
    sentinel_seen = bool(lines) and lines[-1] == token.decode()
    status: Status
    if timed_out:
        status = "timeout"
    elif "fatal" in setup or not setup:
        status = "error"
    elif returncode == 0 and sentinel_seen:
        status = "passed"
    else:
        status = "failed"
    if sentinel_seen:
        out_tail = out_tail.rstrip("\n").rsplit("\n", 1)[0]
    return ProgramResult(
        status=status,
        returncode=returncode,
        duration_s=duration,
        stdout_tail=out_tail[-4000:],
        stderr_tail=err_tail[-4000:],
        network_isolated=bool(setup.get("netns")),
        privileges_dropped=bool(setup.get("dropped")),
        processes_hidden=bool(setup.get("hidden")),
        uid=uid if setup.get("dropped") else None,
        workdir=workdir,
        notes=notes,
    )


def _wait_exited(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether `proc` exited within `timeout_s`, without reaping it (its pid stays ours until `wait`).

    A pidfd wakes us the moment it exits; Popen.wait(timeout) would poll with sleeps of up to 50 ms."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout_s * 1000))))
    finally:
        os.close(pidfd)


def run_jobs(
    jobs: Sequence[Job], limits: Limits = Limits(), max_workers: int | None = None
) -> list[ProgramResult]:
    """Run many jobs concurrently (each in its own sandboxed process); results in input order."""
    if not jobs:
        return []
    workers = max(1, min(len(jobs), max_workers or os.cpu_count() or 1))
    if workers == 1:
        return [run_job(job, limits) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda job: run_job(job, limits), jobs))


def check_program(
    program: str, tests: str, prelude: str = "", entry_points: Collection[str] = (), limits: Limits = Limits()
) -> ProgramResult:
    return run_job(Job(program, tests, prelude, tuple(entry_points)), limits)


def _parse_status(raw: bytes) -> dict[str, Any]:
    """The runner's setup report (written before any untrusted code runs); {} if it never came."""
    try:
        setup = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return setup if isinstance(setup, dict) else {}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_all(fd: int) -> bytes:
    chunks = []
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _nproc_for_unprivileged(extra: int) -> int:
    """Without a uid of its own the limit counts all of this user's processes: allow what exists + extra."""
    return len(pids_of_uid(os.getuid())) + extra + 64
