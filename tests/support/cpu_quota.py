"""Run a command under an artificial CPU slowdown: it gets about `share` of one CPU (0.01 <= share <= 1).

For tests that must show behaviour on a slow or contended machine (timeouts, CPU limits, throughput
targets) on a fast one. `run_slowed(argv, share)` runs argv to completion (text output captured, like
`subprocess.run(..., capture_output=True, text=True)`) and says which method slowed it, trying in order:

- "cgroup-v2": a new child cgroup `harness-test-<random>` under this process's cgroup in the unified
  hierarchy (else under that hierarchy's root), with `cpu.max` = "<share * 100000> 100000"; needs the
  `cpu` controller in the parent's `cgroup.controllers` (it is enabled in the parent's
  `cgroup.subtree_control` if it is not yet, and left enabled: other cgroups may rely on it) and write
  access (root, or a delegated subtree);
- "cgroup-v1": the same in the cgroup v1 `cpu` hierarchy (`cpu.cfs_period_us` = 100000,
  `cpu.cfs_quota_us` = share * 100000);
- "affinity+spinners": no privileges needed: the command is pinned to one CPU (`sched_setaffinity`)
  together with round(1 / share) - 1 busy-loop processes pinned to the same CPU, so the fair scheduler
  gives it about 1 / round(1 / share) of that CPU (while other work on the machine leaves the CPU alone).

The command joins its cgroup or CPU before it runs: it is started through a tiny Python wrapper that
writes its own pid into the cgroup's `cgroup.procs` (or pins itself) and then execs argv, so nothing the
command does runs unslowed, and every process it forks inherits the limit. The limit is for the command
and all its descendants together (a cgroup quota of `share` CPU-seconds per second in total across all
CPUs; pinned processes all share the one CPU).

Cleanup, also on exceptions and timeouts: processes left in the created cgroup are SIGKILLed, then the
cgroup directory is removed (retried for a few seconds while the kernel lets the last tasks go); with
spinners the command runs in its own process group, which is SIGKILLed on a timeout, and the spinners are
SIGKILLed and reaped (and die by themselves if this process dies: parent-death signal). Only what this
module created is removed or killed. `subprocess.CompletedProcess.args` is argv, not the wrapper's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

CGROUP_V2 = "cgroup-v2"
CGROUP_V1 = "cgroup-v1"
SPINNERS = "affinity+spinners"
METHODS: tuple[str, ...] = (CGROUP_V2, CGROUP_V1, SPINNERS)
GROUP_PREFIX = "harness-test-"
SPINNER_MARKER = "harness-cpu-quota-spinner"  # in every spinner's argv: tests look for leftovers by it
PERIOD_US = 100_000
JOIN_FAILED = 97  # the wrapper's exit status when it could not join its cgroup or CPU

# argv[1] is "cgroup:<cgroup.procs path>" or "cpu:<n>"; argv[2:] is the command.
_WRAPPER = """
import os, sys
how, arg = sys.argv[1].split(":", 1)
try:
    if how == "cgroup":
        fd = os.open(arg, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    else:
        os.sched_setaffinity(0, {int(arg)})
except OSError as error:
    sys.stderr.write("cpu_quota: cannot join %s: %s\\n" % (sys.argv[1], error))
    sys.stderr.flush()
    os._exit(97)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as error:
    sys.stderr.write("cpu_quota: cannot run %s: %s\\n" % (sys.argv[2], error))
    sys.stderr.flush()
    os._exit(127)
"""

_SPINNER = """
import os, sys
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
if os.getppid() != int(sys.argv[2]):
    os._exit(0)
os.sched_setaffinity(0, {int(sys.argv[1])})
sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:
    pass
"""


class Unavailable(Exception):
    """This method cannot slow a command here (the reason is the message)."""


def run_slowed(
    argv: list[str],
    share: float,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 600,
    methods: Sequence[str] = METHODS,
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run argv with about `share` of one CPU; returns its completed process and the method used.

    `methods` restricts (and orders) the methods tried; RuntimeError if none of them works here.
    subprocess.TimeoutExpired after `timeout` seconds: the command is killed, and with a cgroup method
    everything it started too (with spinners, it runs in its own process group, which is killed: only
    processes that left that group survive). A command that cannot be executed exits 127 with the reason
    on stderr (as in a shell) instead of raising FileNotFoundError.
    """
    if not 0.01 <= share <= 1:
        raise ValueError(f"share must be between 0.01 and 1, not {share}")
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; known: {METHODS}")
    reasons = []
    for method in methods:
        try:
            if method == SPINNERS:
                return _run_with_spinners(argv, share, env, cwd, timeout), method
            with _cgroup(method, share) as procs_file:
                proc = _run_wrapped(f"cgroup:{procs_file}", argv, env, cwd, timeout, own_group=False)
                if proc.returncode == JOIN_FAILED and proc.stderr.startswith("cpu_quota: cannot join"):
                    raise Unavailable(proc.stderr.strip())
                return proc, method
        except Unavailable as error:
            reasons.append(f"{method}: {error}")
    raise RuntimeError("no CPU slowdown method works here: " + "; ".join(reasons))


def _run_wrapped(
    target: str, argv: list[str], env: dict[str, str] | None, cwd: str | None, timeout: float, own_group: bool
) -> subprocess.CompletedProcess[str]:
    """argv through the wrapper; like subprocess.run(argv, capture_output=True, text=True, timeout=...)."""
    wrapper = [sys.executable, "-I", "-S", "-c", _WRAPPER, target, *argv]
    with subprocess.Popen(
        wrapper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        process_group=0 if own_group else None,
    ) as proc:  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException as error:
            if own_group:  # what the command started, unless it left the group (cgroups catch those)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
            if isinstance(error, subprocess.TimeoutExpired):
                raise subprocess.TimeoutExpired(argv, timeout, error.output, error.stderr) from None
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


# cgroups


def _unescape(field: str) -> str:
    """Mount points in /proc/self/mountinfo escape space, tab, newline and backslash as \\ooo."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def _mounts(fstype: str) -> list[tuple[str, str, set[str]]]:
    """(mount root within the hierarchy, mount point, super options) of every mount of this type."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] == fstype:
            found.append((_unescape(fields[3]), _unescape(fields[4]), set(tail[2].split(","))))
    return found


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v1 hierarchy with `controller` (None: the v2 hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        if (controller is None and _id == "0" and controllers == "") or (
            controller is not None and controller in controllers.split(",")
        ):
            return path
    return None


def _parents(fstype: str, controller: str | None) -> list[Path]:
    """Where to create the child cgroup: this process's own cgroup, then the hierarchy's root."""
    own = _own_path(controller)
    candidates: list[Path] = []
    for root, mount_point, options in _mounts(fstype):
        if controller is not None and controller not in options:
            continue
        if own is not None and (own == root or own.startswith(root.rstrip("/") + "/")):
            candidates.append(Path(mount_point, os.path.relpath(own, root)))
        candidates.append(Path(mount_point))
    unique: list[Path] = []
    for path in candidates:
        if path.resolve() not in unique and path.is_dir():
            unique.append(path.resolve())
    return unique


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enable_cpu_v2(parent: Path) -> None:
    controllers = (parent / "cgroup.controllers").read_text().split()
    if "cpu" not in controllers:
        raise Unavailable(
            f"no cpu controller in {parent}/cgroup.controllers ({' '.join(controllers) or 'empty'})"
        )
    if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
        try:
            _write(parent / "cgroup.subtree_control", "+cpu")
        except OSError as error:
            raise Unavailable(f"cannot enable cpu in {parent}/cgroup.subtree_control: {error}") from None


def _make_group(method: str, share: float) -> Path:
    """Create the child cgroup with the CPU limit; the new directory (Unavailable if none could be made)."""
    quota = int(share * PERIOD_US)
    v2 = method == CGROUP_V2
    parents = _parents("cgroup2", None) if v2 else _parents("cgroup", "cpu")
    if not parents:
        raise Unavailable("no cgroup2 mount" if v2 else "no cgroup v1 mount with the cpu controller")
    reasons = []
    for parent in parents:
        group = parent / f"{GROUP_PREFIX}{secrets.token_hex(6)}"
        try:
            if v2:
                _enable_cpu_v2(parent)
            os.mkdir(group)
        except (OSError, Unavailable) as error:
            reasons.append(f"{parent}: {error}")
            continue
        try:
            if v2:
                _write(group / "cpu.max", f"{quota} {PERIOD_US}")
            else:
                _write(group / "cpu.cfs_period_us", str(PERIOD_US))
                _write(group / "cpu.cfs_quota_us", str(quota))
        except OSError as error:
            _remove_group(group)
            reasons.append(f"{group}: {error}")
            continue
        return group
    raise Unavailable("; ".join(reasons))


@contextlib.contextmanager
def _cgroup(method: str, share: float) -> Iterator[Path]:
    """A fresh cgroup limited to `share` of a CPU (its cgroup.procs file), removed afterwards."""
    group = _make_group(method, share)
    try:
        yield group / "cgroup.procs"
    finally:
        _remove_group(group)


def _remove_group(group: Path, wait_s: float = 5.0) -> None:
    """Kill what is left in the cgroup this module created, then remove it (retrying while it is busy)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(group)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# affinity + spinners


def _run_with_spinners(
    argv: list[str], share: float, env: dict[str, str] | None, cwd: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        cpu = max(os.sched_getaffinity(0))
    except (AttributeError, OSError) as error:
        raise Unavailable(f"no CPU affinity: {error}") from None
    spinners: list[subprocess.Popen[str]] = []
    try:
        for _ in range(max(0, round(1 / share) - 1)):
            spinner = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _SPINNER, str(cpu), str(os.getpid()), SPINNER_MARKER],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            spinners.append(spinner)
            assert spinner.stdout is not None
            if spinner.stdout.readline().strip() != "ready":
                raise Unavailable(f"a spinner could not pin itself to CPU {cpu} (exit {spinner.wait()})")
        proc = _run_wrapped(f"cpu:{cpu}", argv, env, cwd, timeout, own_group=True)
        if proc.returncode == JOIN_FAILED and proc.stderr.startswith("cpu_quota: cannot join"):
            raise Unavailable(proc.stderr.strip())
        return proc
    finally:
        for spinner in spinners:
            with contextlib.suppress(ProcessLookupError):
                spinner.kill()
        for spinner in spinners:
            spinner.wait()
            if spinner.stdout is not None:
                spinner.stdout.close()
