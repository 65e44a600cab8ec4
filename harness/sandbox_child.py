"""The trusted runner that `harness.sandbox` starts as `python -I -B -c CHILD_SOURCE CONFIG MARKER`.

It is source text, not an imported module: it runs in a fresh interpreter that imports nothing of the
harness. argv[1] is its JSON config (no secrets in it: the token arrives through an inherited pipe).

The process tree of one run (when a PID namespace is available, i.e. as root, or through a user namespace):

    harness thread -Popen-> P (trusted: namespaces, mounts; waits, relays the exit status)
                             └─fork─> I (trusted: PID 1 of a new PID namespace; fresh /proc; reaps)
                                        └─fork─> G (drops privileges, then runs the untrusted program)

- P gets PR_SET_PDEATHSIG(SIGKILL) first thing: it dies with the harness thread that started it (run_job
  blocks in that thread until P is reaped, so the thread never exits early). P never changes credentials,
  so the kernel never clears that signal.
- I gets the same signal for P's death. When I dies, the kernel SIGKILLs every process of its PID
  namespace, so whatever the program forked (setsid, double fork, a cleared parent-death signal of its own)
  dies with it: nothing the untrusted code can do keeps it alive past I, and it cannot signal or ptrace I
  (another uid, or all capabilities dropped).
- I mounts a fresh procfs (hidepid=2) on /proc: the program sees only its own run's processes, so the
  harness's /proc/<pid>/cmdline and environ are out of its reach.
- G sets its limits, drops privileges (setuid as root; otherwise drops every capability of its user
  namespace, which would let it unmount the fresh /proc), sets no_new_privs, reports the setup on the
  status pipe, then runs prelude, program and tests as the module `harness.sandbox` describes (sentinel).

Without a PID namespace P runs the program itself (after the same lockdown) and re-arms the parent-death
signal after its credential change; nothing then hides other processes, and what the program forks can
outlive it (run_job kills the run's uid and process group; the sweep handles a killed harness).
"""

from __future__ import annotations

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
def _relay(status):
    # Exit as the program did: same code, or the same signal (P is not a namespace init, so it can).
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        import signal
        _libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: SIGXCPU/SIGSEGV must not dump this root process
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), -code)
        os._exit(128 - code)
    os._exit(code)
def _supervise(cfg, st):
    # Returns only in G, the process that runs the program; P and I wait, relay and exit.
    inherited = (cfg["token_fd"], cfg["status_fd"], cfg["payload_fd"])
    life_r, life_w = os.pipe()  # EOF on life_r: P is gone
    res_r, res_w = os.pipe()  # I -> P: G's raw wait status
    import gc
    gc.freeze()  # the program's collections then skip (and do not copy-on-write) the inherited objects
    init = os.fork()
    if init:
        _close(life_r, res_w, *inherited)
        status = os.waitpid(init, 0)[1]
        data = os.read(res_r, 32)
        _relay(int(data) if data else status)
    _close(life_w, res_r)
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
        _close(life_r, *inherited)
        while True:
            pid, status = os.waitpid(-1, 0)  # also reaps the program's orphans, reparented to us
            if pid == prog:
                break
        os.write(res_w, str(status).encode())
        os._exit(0)  # the kernel now kills whatever the program left in this namespace
    _close(life_r, res_w)
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
def _main():
    cfg = json.loads(sys.argv[1])
    _libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the harness thread that started us
    if os.getppid() != cfg["parent"]:
        os._exit(4)  # the harness died before that: nobody would ever wait for us
    st = {"netns": False, "mountns": False, "pidns": False, "userns": False, "procfs": False,
          "can_drop": cfg["uid"] is not None, "dropped": False, "hidden": False, "notes": []}
    try:
        _setup(cfg, st)
        if st["pidns"]:
            _supervise(cfg, st)
        _lockdown(cfg, st)
    except Exception as e:
        st = {"fatal": "%s: %s" % (type(e).__name__, e)}
    os.write(cfg["status_fd"], json.dumps(st).encode())
    os.close(cfg["status_fd"])
    if "fatal" in st:
        os._exit(3)
    chunks = []
    while True:
        chunk = os.read(cfg["payload_fd"], 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(cfg["payload_fd"])
    job = json.loads(b"".join(chunks).decode())
    token_fd, out, write, exit_, settrace, setprofile = cfg["token_fd"], sys.stdout, os.write, os._exit, sys.settrace, sys.setprofile
    del sys.argv[1:]
    pristine = dict(builtins.__dict__)
    keep = set(job["entry_points"])
    try:
        prelude = compile(job["prelude"], "<prelude>", "exec")
        program = compile(job["program"], "<program>", "exec")
        tests = compile(job["tests"], "<tests>", "exec")
        ns = {"__name__": "__main__", "__builtins__": builtins}
        exec(prelude, ns)
        exec(program, ns)
        settrace(None)
        setprofile(None)
        bd = builtins.__dict__
        bd.clear()
        bd.update(pristine)
        tns = {k: v for k, v in ns.items() if k.startswith("__") or k not in pristine or k in keep}
        tns["__builtins__"] = builtins
        exec(tests, tns)
    except BaseException:
        try:
            out.flush()
        except BaseException:
            pass
        try:
            import traceback
            traceback.print_exc()
        finally:
            exit_(1)
    settrace(None)
    try:
        out.flush()
    except BaseException:
        pass
    token = os.read(token_fd, 64)
    write(1, b"\n" + token + b"\n")
    exit_(0)
_main()
"""
