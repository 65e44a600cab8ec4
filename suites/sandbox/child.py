"""The processes that `suites.sandbox` starts as `python -I -B -c CHILD_SOURCE CONFIG MARKER`.

It is source text, not an imported module: it runs in a fresh interpreter that imports nothing of the
harness from disk (`suites.sandbox.wire` and `suites.sandbox.trusted` arrive compiled, in the inherited
`CodeFile`, and are executed as modules there). argv[1] is its JSON config (no secrets in it).

The process tree of one run (when a PID namespace is available, i.e. as root, or through a user namespace):

    harness thread -Popen-> P (trusted: namespaces, mounts; then runs the TESTS, writes the verdict)
                             └─fork─> I (trusted: PID 1 of a new PID namespace; fresh /proc; reaps)
                                        └─fork─> G (drops privileges, then loads the untrusted program
                                                    and answers P's calls to its functions)

- The tests and the solution never share a process. P reads the tests (from their own inherited file)
  only after forking, so G's memory never held them; G gets the program, the test imports and the setup
  code from another file. P evaluates every assertion and calls the solution only through two pipes that
  carry plain data (`suites.sandbox.wire`); the verdict goes to the harness on a pipe G never had.
  There is no secret to steal: nothing G can print, write or exit with makes a pass.
- P gets PR_SET_PDEATHSIG(SIGKILL) first thing: it dies with the harness thread that started it (run_job
  blocks in that thread until P is reaped, so the thread never exits early). P never changes credentials,
  so the kernel never clears that signal. After the fork P is non-dumpable (PR_SET_DUMPABLE 0): even a
  same-uid G (no root, no namespaces) cannot ptrace it or read its memory, fds or environ through /proc.
- I gets the same signal for P's death. When I dies, the kernel SIGKILLs every process of its PID
  namespace, so whatever the program forked (setsid, double fork, a cleared parent-death signal of its own)
  dies with it: nothing the untrusted code can do keeps it alive past I, and it cannot signal or ptrace I
  or P (another uid, or all capabilities dropped; P is not even in its PID namespace).
- I mounts a fresh procfs (hidepid=2) on /proc: the program sees only its own run's processes, so the
  harness's /proc/<pid>/cmdline and environ are out of its reach.
- G sets its limits, drops privileges (setuid as root; otherwise drops every capability of its user
  namespace, which would let it unmount the fresh /proc), sets no_new_privs, reports the setup on the
  status pipe and closes it, then runs the test imports, the program and the setup code, says whether
  that worked, and serves calls until P hangs up.

Without a PID namespace P forks G directly (same lockdown, parent-death signal re-armed after the
credential change); nothing then hides other processes, and what the program forks can outlive it
(run_job kills the run's uid and process group; the sweep handles a killed harness).
"""

from __future__ import annotations

import marshal
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

MODULES = ("suites.sandbox.wire", "suites.sandbox.trusted")


@dataclass(frozen=True)
class CodeFile:
    """The modules' compiled code, marshalled once per harness process into an unlinked file that every
    run inherits read-only (compiling them in each run's fresh interpreter cost ~5 ms)."""

    fd: int
    size: int

    def fileno(self) -> int:
        return self.fd


_code_lock = threading.Lock()
_code: list[CodeFile] = []


def code_file() -> CodeFile:
    with _code_lock:
        if not _code:
            here = Path(__file__).resolve().parent
            compiled = {
                name: compile(
                    (here / f"{name.rpartition('.')[2]}.py").read_text("utf-8"), f"<{name}>", "exec"
                )
                for name in MODULES
            }
            blob = marshal.dumps(compiled)
            handle = tempfile.TemporaryFile()
            handle.write(blob)
            handle.flush()
            _code.append(CodeFile(os.dup(handle.fileno()), len(blob)))
            handle.close()
        return _code[0]


CHILD_SOURCE = r"""
import builtins, ctypes, json, os, sys
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
NEWNS, NEWUSER, NEWPID, NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
NOSUID, NODEV, NOEXEC, BIND, REC, PRIVATE = 2, 4, 8, 4096, 0x4000, 1 << 18
def _mount(src, dst, fstype, flags, data):
    if _libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                   data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), "mount " + dst)
def _die_with_parent():
    _libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
def _reachable(path):
    parts = path.strip("/").split("/")
    return all(os.stat("/" + "/".join(parts[:i])).st_mode & 0o001 for i in range(len(parts)))
def _namespaces(cfg, st):
    tries = ([NEWNET | NEWNS | NEWPID, NEWNET | NEWNS, NEWNET] if cfg["uid"] is not None
             else [NEWUSER | NEWNET | NEWNS | NEWPID, NEWUSER | NEWNET])
    for flags in tries:
        if _libc.unshare(flags) == 0:
            st.update(netns=True, mountns=bool(flags & NEWNS), pidns=bool(flags & NEWPID),
                      userns=bool(flags & NEWUSER))
            return
    st["notes"].append("no namespaces (errno %d): network and processes visible" % ctypes.get_errno())
def _private_filesystem(cfg, st):
    uid, work, tmpfs = cfg["uid"], cfg["workdir"], cfg["tmpfs"]
    needed = {os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, sys.exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)), *sys.path] if p and os.path.exists(p)}
    blocked = {}
    for path in needed:
        parts = path.strip("/").split("/")
        for i in range(len(parts)):
            anc = "/" + "/".join(parts[:i])
            if not os.stat(anc).st_mode & 0o001:
                blocked.setdefault(anc, set()).add(parts[i])
                break
    for anc, kids in blocked.items():
        fds = {k: os.open(os.path.join(anc, k), os.O_PATH) for k in kids}
        _mount("tmpfs", anc, "tmpfs", NOSUID | NODEV, "mode=755,size=1m")
        for k, fd in fds.items():
            target = os.path.join(anc, k)
            os.mkdir(target) if os.path.isdir("/proc/self/fd/%d" % fd) else open(target, "w").close()
            _mount("/proc/self/fd/%d" % fd, target, None, BIND | REC, None)
            os.close(fd)
    shared_dirs = [d for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)]
    # The interpreter or its packages may live under /tmp (a checkout or venv there): keep those
    # trees visible through the fresh tmpfs by binding them back in.
    inside = [p for p in needed if any(p.startswith(d + "/") for d in shared_dirs)]
    outer = [p for p in inside if not any(q != p and p.startswith(q + "/") for q in inside)]
    kept = {p: os.open(p, os.O_PATH) for p in outer}
    for shared in shared_dirs:
        _mount("tmpfs", shared, "tmpfs", NOSUID | NODEV, "mode=1777,size=%d" % tmpfs)
    for path, fd in kept.items():
        if os.path.isdir("/proc/self/fd/%d" % fd):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "w").close()
        _mount("/proc/self/fd/%d" % fd, path, None, BIND | REC, None)
        os.close(fd)
    os.makedirs(work, exist_ok=True)
    _mount("tmpfs", work, "tmpfs", NOSUID | NODEV, "mode=700,uid=%d,gid=%d,size=%d" % (uid, uid, tmpfs))
    os.chdir(work)
    for path in needed:
        if not _reachable(path):
            st["can_drop"] = False
            st["notes"].append("interpreter path not reachable unprivileged: " + path)
def _setup(cfg, st):
    uid, work = cfg["uid"], cfg["workdir"]
    _namespaces(cfg, st)
    _die_with_parent()  # again: a credential change (the user namespace) may have cleared it
    if st["mountns"]:
        try:
            _mount("none", "/", None, REC | PRIVATE, None)  # nothing we mount reaches the host
            if uid is not None:
                _private_filesystem(cfg, st)
        except OSError as e:
            st["can_drop"] = False
            st["notes"].append("mount setup failed: %s" % e)
    elif uid is not None:
        os.chown(work, uid, uid)
        os.chmod(os.path.dirname(work), 0o711)  # the run's folder (0700, root's) must be traversable
        for path in {os.path.realpath(p) for p in [sys.base_prefix, *sys.path] if p and os.path.exists(p)}:
            if not _reachable(path):
                st["can_drop"] = False
                st["notes"].append("no mount namespace and interpreter path not reachable unprivileged: " + path)
def _fresh_proc(st):
    # In I (PID 1 of the new namespace): a procfs instance of this namespace only; hidepid=2 also hides
    # I itself (root) from the program. Other procfs mounts (a container's bind of the host's /proc)
    # are detached; the covered original /proc is unreachable without CAP_SYS_ADMIN.
    try:
        _mount("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, "hidepid=2")
        import codecs
        with open("/proc/self/mountinfo", "rb") as handle:
            for line in handle:
                fields = line.split(b" ")
                fstype = fields[fields.index(b"-") + 1]
                where = codecs.escape_decode(fields[4])[0]
                if fstype == b"proc" and where != b"/proc" and not where.startswith(b"/proc/"):
                    if _libc.umount2(where, 2) != 0:  # MNT_DETACH
                        raise OSError(ctypes.get_errno(), "umount %r" % where)
    except OSError as e:
        st["notes"].append("no private /proc (other processes stay visible): %s" % e)
        return
    st["procfs"] = True
def _close(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
def _spawn(cfg, st, theirs, ours):
    # Forks the solution's process G (through I, the namespace's init, when there is a PID namespace).
    # Returns in P with the child's pid, and in G with None; I never returns. `theirs` are fds only P
    # keeps (the tests, the verdict), closed in the child at once; `ours` are the child's, closed in P.
    import gc
    gc.freeze()  # the program's collections then skip (and do not copy-on-write) the inherited objects
    if not st["pidns"]:
        prog = os.fork()
        _close(*(ours if prog else theirs))
        return (prog, None) if prog else (None, None)
    res_r, res_w = os.pipe()  # I -> P: G's raw wait status
    life_r, life_w = os.pipe()  # EOF on life_r: P is gone
    init = os.fork()
    if init:
        _close(life_r, res_w, *ours)
        return init, res_r
    _close(life_w, res_r, *theirs)
    _die_with_parent()
    os.set_blocking(life_r, False)
    try:
        if os.read(life_r, 1) == b"":
            os._exit(4)  # P died before the line above: the parent-death signal will never come
    except BlockingIOError:
        pass
    _fresh_proc(st)
    prog = os.fork()
    if prog:
        _close(life_r, *ours)
        while True:
            pid, status = os.waitpid(-1, 0)  # also reaps the program's orphans, reparented to us
            if pid == prog:
                break
        os.write(res_w, str(status).encode())
        os._exit(0)  # the kernel now kills whatever the program left in this namespace
    _close(life_r, res_w)
    return None, None
def _drop_capabilities():
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    return _libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) == 0  # version 3, all zero
def _lockdown(cfg, st):
    import resource
    uid, lim = cfg["uid"], cfg["limits"]
    for res, value in ((resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1)),
                       (resource.RLIMIT_AS, (lim["memory_bytes"],) * 2),
                       (resource.RLIMIT_FSIZE, (lim["file_bytes"],) * 2),
                       (resource.RLIMIT_CORE, (0, 0)),
                       (resource.RLIMIT_NPROC, (cfg["nproc"],) * 2)):
        resource.setrlimit(res, value)
    if uid is not None and st["can_drop"]:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        st["dropped"] = os.getuid() == uid and os.geteuid() == uid
    caps_gone = st["dropped"] or _drop_capabilities()
    if not caps_gone:
        st["notes"].append("capabilities not dropped (errno %d)" % ctypes.get_errno())
    _libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    st["hidden"] = bool(st["pidns"] and st["procfs"] and caps_gone)
    if not st["pidns"]:
        _die_with_parent()  # setuid cleared it; re-armed after the last credential change
        if os.getppid() != cfg["parent"]:
            os._exit(4)
def _read_fd(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks).decode())
_CODE = []
def _load(name, cfg):
    # The harness's modules, from the code it compiled and marshalled once (CodeFile).
    import marshal, types
    if not _CODE:
        _CODE.append(marshal.loads(os.pread(cfg["code_fd"], cfg["code_size"], 0)))
        for parent in ("suites", "suites.sandbox"):  # empty stand-ins: no package code runs here
            package = types.ModuleType(parent)
            package.__path__ = []
            sys.modules[parent] = package
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(_CODE[0][name], module.__dict__)
    return module
def _why_gone(child, res_r):
    # What ended the solution's process, from its wait status (relayed by I in a PID namespace), and
    # the signal's name if one killed it; ("", "") when it does not come within a second (e.g. the
    # program closed its pipe and lives on: run_job kills it after this process exits).
    import select, signal, time
    status = None
    if res_r is not None:
        if select.select([res_r], [], [], 1.0)[0]:
            data = os.read(res_r, 32)
            status = int(data) if data else None
    else:
        for _ in range(100):
            pid, raw = os.waitpid(child, os.WNOHANG)
            if pid:
                status = raw
                break
            time.sleep(0.01)
    if status is None:
        return "", ""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return " (it exited with status %d)" % code, ""
    name = signal.Signals(-code).name
    hint = {"SIGXCPU": ": the CPU time limit", "SIGKILL": ": the CPU time limit or a kill",
            "SIGSEGV": ": a crash, e.g. recursion too deep"}.get(name, "")
    return " (killed by %s%s)" % (name, hint), name
def _trusted(cfg, child, res_r, call_w, reply_r):
    # P, after the fork: no untrusted code runs here. Non-dumpable, so a same-uid solution (no root,
    # no namespaces) cannot ptrace it or read its memory through /proc.
    _libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    try:
        job = _read_fd(cfg["tests_fd"])
        verdict = _load("suites.sandbox.trusted", cfg).run_tests(job, call_w, reply_r)
        if verdict.pop("gone"):
            why, verdict["signal"] = _why_gone(child, res_r)
            verdict["reason"] += why
    except BaseException as e:
        verdict = {"error": "%s: %s" % (type(e).__name__, e)}
    os.write(cfg["verdict_fd"], json.dumps(verdict).encode())
    # End the solution side before exiting: once I is reaped, its whole PID namespace is gone (without
    # one, run_job kills the process group and the run's uid).
    import signal
    try:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    except OSError:
        pass
    os._exit(0)
def _solution(cfg, call_r, reply_w):
    # G, after lockdown: from the first line of the program on, everything in this process is untrusted.
    job = _read_fd(cfg["program_fd"])
    wire = sys.modules["suites.sandbox.wire"]
    del sys.argv[1:]
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(job["prelude"], "<test imports>", "exec"), ns)
        exec(compile(job["program"], "<program>", "exec"), ns)
        exec(compile(job["setup"], "<setup>", "exec"), ns)
    except BaseException as e:
        wire.flush_output()
        import traceback
        traceback.print_exc()
        wire.flush_output()
        wire.send(reply_w, {"loaded": False, "raised": wire.describe(e)})
        os._exit(1)
    wire.send(reply_w, {"loaded": True})
    wire.serve(ns, call_r, reply_w)
    os._exit(0)
def _main():
    cfg = json.loads(sys.argv[1])
    _libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the harness thread that started us
    if os.getppid() != cfg["parent"]:
        os._exit(4)  # the harness died before that: nobody would ever wait for us
    st = {"netns": False, "mountns": False, "pidns": False, "userns": False, "procfs": False,
          "can_drop": cfg["uid"] is not None, "dropped": False, "hidden": False, "notes": []}
    call_r, call_w = os.pipe()  # P -> G: calls
    reply_r, reply_w = os.pipe()  # G -> P: replies
    try:
        _load("suites.sandbox.wire", cfg)
        _setup(cfg, st)
        cfg["parent"] = os.getpid()
        child, res_r = _spawn(cfg, st, (cfg["tests_fd"], cfg["verdict_fd"], cfg["code_fd"], call_w, reply_r),
                              (cfg["program_fd"], cfg["status_fd"], call_r, reply_w))
        if child is not None:
            _trusted(cfg, child, res_r, call_w, reply_r)
        _lockdown(cfg, st)
    except Exception as e:
        st = {"fatal": "%s: %s" % (type(e).__name__, e)}
    os.write(cfg["status_fd"], json.dumps(st).encode())
    os.close(cfg["status_fd"])
    if "fatal" in st:
        os._exit(3)
    _solution(cfg, call_r, reply_w)
_main()
"""
