"""Programs that try to escape, exhaust, or fool the sandbox. Each is paired with tests it must not pass.

`WRONG` defines f(x) = x + 1 while the tests below want x + 2: nothing honest passes them.
"""

from __future__ import annotations

WRONG = "def f(x):\n    return x + 1\n"
RIGHT = "def f(x):\n    return x + 2\n"
TESTS = "assert f(1) == 3\nassert f(2) == 4\n"

# Ways to end the process "successfully" before the tests run.
EARLY_EXITS = {
    "exit": WRONG + "exit(0)\n",
    "quit": WRONG + "quit()\n",
    "sys_exit": WRONG + "import sys\nsys.exit(0)\n",
    "raise_systemexit": WRONG + "raise SystemExit(0)\n",
    "os_exit": WRONG + "import os\nos._exit(0)\n",
    "exit_inside_function_called_by_tests": "import sys\ndef f(x):\n    sys.exit(0)\n",
    "os_exit_inside_function_called_by_tests": "import os\ndef f(x):\n    os._exit(0)\n",
    "atexit_os_exit": WRONG + "import atexit, os\natexit.register(lambda: os._exit(0))\n",
    "kill_self_sigterm": WRONG + "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
    "fake_sentinel_then_os_exit": WRONG
    + "import os, sys\nprint('\\n' + os.urandom(16).hex(), flush=True)\nos._exit(0)\n",
}

# Monkeypatching / redefining names so that the failing asserts would pass.
PATCHES = {
    "builtins_assertionerror": WRONG
    + "import builtins\nbuiltins.AssertionError = type('Ok', (Exception,), {})\n",
    "dunder_builtins_assertionerror": WRONG + "__builtins__.AssertionError = KeyError\n",
    "builtins_print_silenced": WRONG + "import builtins\nbuiltins.print = lambda *a, **k: None\n",
    "builtins_sorted_patched": WRONG + "import builtins\nbuiltins.sorted = lambda *a, **k: 0\n",
    "global_set_shadowed": WRONG + "def set(*args):\n    return 0\n",
    "excepthook_swallows": WRONG + "import sys\nsys.excepthook = lambda *a: None\n",
    "stderr_and_stdout_replaced": WRONG
    + "import io, sys\nsys.stdout = io.StringIO()\nsys.stderr = io.StringIO()\n",
    "settrace_installed": WRONG
    + "import sys\ndef tracer(frame, event, arg):\n    return None\nsys.settrace(tracer)\n",
}
# Tests that go through the patched names (the patches must not make these pass with WRONG).
PATCH_TESTS = (
    "assert sorted([f(1)]) == [3]\nassert set([f(1)]) == set([3])\nassert f(1) == 3\nprint('tests ran')\n"
)

FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

# A child that leaves the process group (setsid) and sleeps: killpg alone would miss it.
ESCAPING_CHILD = (
    """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
time.sleep(0.3)
"""
    + WRONG
)

INFINITE_LOOP = "while True:\n    pass\n"
SLEEPER = "import time\ntime.sleep(600)\n"

MEMORY_BOMB = """
chunks = []
while True:
    chunks.append(bytearray(64 << 20))
"""

OUTPUT_FLOOD = """
import sys
line = "x" * 1000 + "\\n"
while True:
    sys.stdout.write(line)
"""


def delete_file(path: str) -> str:
    """Tries to delete `path` (then its folder); asserts that it worked."""
    return (
        f"""
import os, shutil
removed = False
for attempt in (lambda: os.remove({path!r}), lambda: shutil.rmtree(os.path.dirname({path!r}))):
    try:
        attempt()
        removed = True
    except OSError:
        pass
assert removed
"""
        + RIGHT
    )


def write_file(paths: list[str], must_succeed: bool) -> str:
    """Tries to write each of `paths`; with must_succeed, asserts that every write worked."""
    return (
        f"""
written = 0
for path in {paths!r}:
    try:
        with open(path, "w") as handle:
            handle.write("escaped")
        written += 1
    except OSError:
        pass
assert written == len({paths!r}) or not {must_succeed!r}
"""
        + RIGHT
    )


def connect(port: int) -> str:
    return (
        f"""
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
s.sendall(b"escaped")
"""
        + RIGHT
    )


def read_secret(name: str, value: str) -> str:
    return (
        f"""
import os
seen = os.environ.get({name!r}, "")
for pid in (os.getppid(), 1):
    try:
        seen += open("/proc/%d/environ" % pid).read()
    except OSError:
        pass
assert {value!r} in seen
"""
        + RIGHT
    )


def proc_snooper(harness_pid: int, escape: bool, own_mount_ns: str = "") -> str:
    """Reads every /proc/<pid>/cmdline and environ it can reach (the harness's, its parent's, pid 1's, all
    listed ones, pids near the harness's), looking for `sk-leak-<hex>`; prints where it found some.

    With `escape` it then tries to remove the fresh /proc (umount, which needs capabilities; a user + mount
    namespace of its own, then umount or a new procfs) and looks again. The umount is attempted only when
    its mount namespace is not `own_mount_ns` (the caller's), so a test can never unmount a real /proc.
    """
    return f"""
import ctypes, os, re
libc = ctypes.CDLL(None, use_errno=True)
found, pids_seen, files = {{}}, set(), [0]
def scan():
    pids = {{{harness_pid}, os.getppid(), 1}} | set(range(max(1, {harness_pid} - 64), {harness_pid} + 64))
    try:
        listed = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        listed = []
    pids_seen.update(listed)
    for pid in sorted(pids | set(listed)):
        for name in ("cmdline", "environ"):
            path = "/proc/%d/%s" % (pid, name)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            files[0] += 1
            for hit in re.findall(rb"sk-leak-[0-9a-f]+", data):
                found.setdefault(path, set()).add(hit.decode())
scan()
if {escape!r} and os.readlink("/proc/self/ns/mnt") != {own_mount_ns!r}:
    libc.umount2(b"/proc", 2)  # MNT_DETACH: would uncover the host's /proc
    scan()
    if libc.unshare(0x10000000 | 0x00020000) == 0:  # CLONE_NEWUSER | CLONE_NEWNS: full caps there
        libc.umount2(b"/proc", 2)
        libc.mount(b"proc", b"/proc", b"proc", 0, None)
        scan()
print("found", sorted((path, sorted(hits)) for path, hits in found.items()))
print("snooped", files[0], "files; listed pids", sorted(pids_seen))
"""


# Tries to outlive a killed harness: clears its own parent-death signal, and leaves a setsid()ed grandchild
# (also without one) that sleeps; the program itself sleeps 60 s.
ORPHAN_MAKER = """
import ctypes, os, time
libc = ctypes.CDLL(None)
libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        libc.prctl(1, 0, 0, 0, 0)
        time.sleep(600)
    os._exit(0)
time.sleep(60)
"""
