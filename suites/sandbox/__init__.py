"""Run untrusted generated code against its tests, one fresh, locked-down process per program.

What every program gets (Linux; the child is `python -I` = `sys.executable` in isolated mode; the runner
and its process tree are described in `suites.sandbox.child`):
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
- a sweep, once per process before its first program (`suites.sandbox.cleanup.sweep`): as root, processes
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

Where the verdict comes from (why neither `exit(0)` nor a lying object nor a patched module can fake a
pass): the tests and the solution never share a process. The untrusted program runs in its own process
(G in `suites.sandbox.child`), which only loads it and answers calls to its functions. The trusted
process (P) holds the tests, evaluates every assertion, comparison and library call in them with its own
pristine modules, and reaches the solution only through `suites.sandbox.wire`'s channel, which carries
plain data (None, bool, int, float, complex, str, bytes; list, tuple, dict, set, frozenset of those; a
Counter, OrderedDict, defaultdict or deque rebuilt on the trusted side), bounded at 8 MiB, 100 levels and
a million values. Anything else the solution returns (an always-equal object, a subclass of int or str
with a lying `__eq__`, a generator, a function, `unittest.mock.ANY`) fails the test with that reason, and
so does a solution that raises, dies, or answers out of turn. P reads the tests only after forking G, so
G never held them; P writes the verdict on a pipe G never had; P is non-dumpable. There is no secret to
steal and no output to forge: what G prints, which fds it reads or writes, how it exits, what it patches
in its own interpreter (builtins, `math`, `sys.modules`, frames, gc, ctypes writes to code objects) does
not reach the process that decides. `ProgramResult.reason` says why a program failed, in P's words.

What this sandbox does NOT protect against (read before running code you would not run yourself):
- solutions that pass the visible tests without solving the task: the tests are in the prompt, so a
  program that returns the asserted values for the asserted inputs (a lookup table) passes; so does one
  that is wrong only on inputs the tests do not try. Only stronger tests (e.g. MBPP's challenge tests or
  EvalPlus-style extra inputs) would catch that;
- a solution that makes the trusted side work: a reply of up to 8 MiB or a million values costs the
  trusted process the time to decode and compare it (set members or keys crafted to share a hash are
  refused in linear time); a reply that is slow to check fails at the time limit, never passes;
- tests that need more than calls: a test that reads a solution's attribute or global, passes it a
  callback, or checks that it mutated an argument fails here, since only return values come back (no
  MBPP test list of tasks 11-974 does); objects a test constructs from the program's classes stay on the
  solution's side as references that can be passed back but not compared, hashed or tested for truth,
  so only an identity check such as `is not None` holds on one;
- without a PID namespace and without root (the kernel refuses user namespaces), the solution runs as
  the harness's user in the harness's view of /proc: it can signal (kill) the trusted process, which
  then gives no verdict (a failure, not a pass); P is non-dumpable, so it cannot read its memory;
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

from suites.sandbox.child import CHILD_SOURCE, code_file
from suites.sandbox.cleanup import UID_RANGE, Claim, claim_run, kill_uid, pids_of_uid, sweep, sweep_once
from suites.sandbox.plan import plan_tests

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
    program: str  # the untrusted code (runs in the solution's process)
    tests: str  # the asserts (run in the trusted process, calling the program's functions)
    prelude: str = ""  # test imports: run on both sides, before the program and before the tests
    setup: str = ""  # the task's setup code: run on both sides, after the program and before the tests
    entry_points: tuple[str, ...] = ()  # builtin-named functions (e.g. `sum`) the tests call in the program


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
    reason: str = ""  # why it did not pass, in the trusted side's words ("assertion failed: assert ...")
    calls: int = 0  # calls the tests made into the solution
    signal: str = ""  # the signal that ended the solution's process, e.g. "SIGXCPU" (CPU time limit)
    limits: Limits = Limits()  # what it ran under (after scaling to this machine's speed)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def hit_a_limit(self) -> bool:
        """Ended by the wall-clock or the CPU time limit (SIGXCPU at the soft one, SIGKILL at the hard)."""
        return self.status == "timeout" or self.signal in ("SIGXCPU", "SIGKILL")


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


def _payload(record: dict[str, Any]) -> IO[bytes]:
    handle = tempfile.TemporaryFile()
    handle.write(json.dumps(record).encode())
    handle.flush()
    handle.seek(0)
    return handle


def _run_claimed(job: Job, limits: Limits, claim: Claim) -> ProgramResult:
    uid, workdir = claim.uid, claim.workdir
    code = code_file()
    status_r, status_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    # The tests and the program travel in separate files: only the trusted process opens the first.
    plan = plan_tests(job.tests, job.prelude, job.setup, job.entry_points)
    tests = _payload({"prelude": job.prelude, "tests": job.tests, "solution": plan.solution,
                      "modules": plan.modules, "refs": plan.refs, "plan_error": plan.error})  # fmt: skip
    program = _payload({"prelude": job.prelude, "program": job.program, "setup": job.setup})
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    config = {
        "uid": uid,
        "workdir": workdir,
        "parent": os.getpid(),  # the runner exits if it was orphaned before its parent-death signal was set
        "tmpfs": limits.tmpfs_bytes,
        "limits": asdict(limits),
        "nproc": limits.processes if uid is not None else _nproc_for_unprivileged(limits.processes),
        "status_fd": status_w,
        "verdict_fd": verdict_w,
        "tests_fd": tests.fileno(),
        "program_fd": program.fileno(),
        "code_fd": code.fileno(),
        "code_size": code.size,
    }
    inherited = (status_w, verdict_w, tests.fileno(), program.fileno(), code.fileno())
    start = time.monotonic()
    try:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", CHILD_SOURCE, json.dumps(config), MARKER],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=workdir, env=_child_env(workdir),
                pass_fds=inherited, start_new_session=True, close_fds=True,
            )  # fmt: skip
        finally:
            os.close(status_w)
            os.close(verdict_w)
            tests.close()
            program.close()
        # Wait in this thread (the runner's parent-death signal is tied to it) and never return or raise
        # with the run alive: the finally kills the group (before reaping, so the pgid is not reused).
        ended = False
        try:
            ended = _wait_exited(proc, limits.wall_s)
        finally:
            _kill_group(proc.pid)
            returncode = proc.wait()
            setup = _parse_record(_read_all(status_r))
            verdict = _parse_record(_read_all(verdict_r))
            # A run with its own PID namespace that ended by itself has nothing left: P reaped the
            # namespace's init before exiting, and the kernel had killed and reaped every process of
            # the namespace before that.
            if uid is not None and not (ended and setup.get("pidns") is True):
                kill_uid(uid)
        duration = time.monotonic() - start
        out_tail, err_tail = _tail(stdout, 8192), _tail(stderr, 8192)
    finally:
        os.close(status_r)
        os.close(verdict_r)
        stdout.close()
        stderr.close()
    notes = tuple(str(n) for n in setup.get("notes", []))
    if "fatal" in setup:
        notes += (f"sandbox setup failed: {setup['fatal']}",)
    if "error" in verdict:
        notes += (f"the trusted test process failed: {verdict['error']}",)
    status: Status
    reason = str(verdict.get("reason", ""))[:2000]
    if not ended:
        status, reason = "timeout", f"no verdict within the {limits.wall_s:g} s wall-clock limit"
    elif "fatal" in setup or not setup or "passed" not in verdict:
        status = "error"
        reason = reason or f"the sandbox gave no verdict (exit status {returncode})"
    else:
        status = "passed" if verdict["passed"] is True else "failed"
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
        reason=reason,
        calls=int(verdict.get("calls", 0)) if isinstance(verdict.get("calls"), int) else 0,
        limits=limits,
        signal=str(verdict.get("signal") or ""),
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
    program: str,
    tests: str,
    prelude: str = "",
    entry_points: Collection[str] = (),
    limits: Limits = Limits(),
    setup: str = "",
) -> ProgramResult:
    return run_job(Job(program, tests, prelude, setup, tuple(entry_points)), limits)


def _parse_record(raw: bytes) -> dict[str, Any]:
    """A JSON object a trusted process wrote (the setup report, the verdict); {} if none came."""
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
