"""What a sandboxed run claims (a uid, a working folder) and how leftovers of a killed harness are removed.

Each run holds two flocks for its whole life; the kernel releases them when the holder dies, even by
SIGKILL, so "the lock is free" proves that the owner is gone (no pid files, no pid reuse to worry about):
- root only: its uid's lock file `LOCK_DIR/<uid>.lock` (`claim_uid`), so concurrent runs, even from other
  processes, never share a uid;
- its folder's marker: `<tempdir>/harness-sbx-XXXXXXXX/.harness-owned.json` (the `harness.names` marker,
  purpose "sandbox-workdir"), created and locked before anything is written into it (`claim_workdir`).
  The program's working directory is the folder's `work/` (as root a private tmpfs covers it).

`sweep()` removes what a harness killed mid-run left behind: as root, the processes of every sandbox uid
whose lock file exists and is free (SIGKILL), and every `harness-sbx-*` folder in the temporary directory
that this user owns, that is not a symlink, and whose marker names this purpose and is not locked.
Anything else (no marker, another purpose, a live owner, another user's folder, a uid this harness never
claimed) is left alone. `run_job` sweeps once per process before its first program (`sweep_once`).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.names import OWNER_MARKER, owner_record

UID_RANGE = (60000, 65000)  # like isolate's 60000+: unused by distributions' regular accounts
LOCK_DIR = os.path.join(tempfile.gettempdir(), "harness-sandbox-uids")
WORKDIR_PREFIX = "harness-sbx-"
WORKDIR_PURPOSE = "sandbox-workdir"


@dataclass(frozen=True)
class Claim:
    """A run's folder and the fds whose flocks prove it alive; `release` deletes the folder."""

    folder: str
    workdir: str  # folder/work: the program's working directory
    marker_fd: int
    uid: int | None = None
    uid_fd: int = -1

    def release(self) -> None:
        try:
            remove_tree(self.folder)
        finally:
            os.close(self.marker_fd)  # only after the delete: a sweeper must never see a free, live folder
            if self.uid_fd >= 0:
                os.close(self.uid_fd)


@dataclass(frozen=True)
class SweepReport:
    killed_uids: tuple[int, ...]
    removed_folders: tuple[str, ...]


def claim_run(with_uid: bool) -> Claim:
    uid, uid_fd = claim_uid() if with_uid else (None, -1)
    try:
        folder, marker_fd = claim_workdir()
    except BaseException:
        if uid_fd >= 0:
            os.close(uid_fd)
        raise
    return Claim(folder, os.path.join(folder, "work"), marker_fd, uid, uid_fd)


def claim_workdir(base: str | None = None) -> tuple[str, int]:
    """A fresh `harness-sbx-*` folder (in `base`, default the temporary directory) with a locked owner
    marker and an empty `work/` inside; the marker's fd holds the lock."""
    folder = tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base)
    try:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(folder, OWNER_MARKER), flags, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # before the record: a sweeper never sees a valid, unlocked marker
        os.write(fd, (json.dumps({"purpose": WORKDIR_PURPOSE, "pid": os.getpid()}) + "\n").encode())
        os.mkdir(os.path.join(folder, "work"), 0o700)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, fd


def claim_uid() -> tuple[int, int]:
    """A sandbox uid no other run (in any process) is using, held by an flock until its fd is closed."""
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    start, stop = UID_RANGE
    for _ in range(10_000):
        uid = start + secrets.randbelow(stop - start)
        fd = os.open(os.path.join(LOCK_DIR, f"{uid}.lock"), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        kill_uid(uid)  # leftovers of a crashed earlier harness
        return uid, fd
    raise RuntimeError("no free sandbox uid")


def _process_uids() -> dict[int, int]:
    """pid -> real uid of every live (not zombie) process (raw reads: this runs once or twice per program)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            data = os.read(fd, 16384)
        except OSError:
            continue
        finally:
            os.close(fd)
        state, uid = data.find(b"\nState:\t"), data.find(b"\nUid:\t")
        if state < 0 or uid < 0 or data[state + 8 : state + 9] in (b"Z", b"X"):
            continue  # gone, or a zombie: already dead (and a container's init may never reap it)
        found[int(entry)] = int(data[uid + 6 : data.index(b"\t", uid + 6)])  # the real uid
    return found


def pids_of_uid(uid: int) -> list[int]:
    return [pid for pid, owner in _process_uids().items() if owner == uid]


def kill_uid(uid: int, rounds: int = 50) -> None:
    """SIGKILL every process whose real uid is `uid` (repeated: a fork bomb may fork while we kill)."""
    for _ in range(rounds):
        pids = pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def _try_lock(path: str, flags: int) -> int | None:
    """An fd holding an exclusive flock on `path`, or None (missing, a symlink, or locked by a live run)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep_processes() -> tuple[int, ...]:
    """SIGKILL the processes of sandbox uids that no live run holds (root only: only root can kill them)."""
    if os.geteuid() != 0:
        return ()
    start, stop = UID_RANGE
    killed = []
    for uid in sorted({owner for owner in _process_uids().values() if start <= owner < stop}):
        fd = _try_lock(os.path.join(LOCK_DIR, f"{uid}.lock"), os.O_RDWR)
        if fd is None:
            continue  # a live run holds it, or this harness never claimed that uid
        try:
            kill_uid(uid)
            killed.append(uid)
        finally:
            os.close(fd)
    return tuple(killed)


def sweep_folders(tmp_dir: str | None = None) -> tuple[str, ...]:
    """Delete the `harness-sbx-*` folders of dead runs (see the module docstring for what proves that)."""
    base = tmp_dir or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(base) if n.startswith(WORKDIR_PREFIX)]
    except OSError:
        return ()
    for name in names:
        folder = os.path.join(base, name)
        try:
            info = os.lstat(folder)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        fd = _try_lock(os.path.join(folder, OWNER_MARKER), os.O_RDONLY)
        if fd is None:
            continue
        try:
            record = owner_record(Path(folder))
            if record is not None and record.get("purpose") == WORKDIR_PURPOSE:
                remove_tree(folder)
                removed.append(folder)
        finally:
            os.close(fd)
    return tuple(removed)


def sweep(tmp_dir: str | None = None) -> SweepReport:
    return SweepReport(sweep_processes(), sweep_folders(tmp_dir))


_swept = False
_sweep_lock = threading.Lock()


def sweep_once() -> None:
    """`sweep()` the first time this process runs a sandboxed program (a /proc scan and a listdir)."""
    global _swept
    if _swept:
        return
    with _sweep_lock:
        if not _swept:
            sweep()
            _swept = True


def remove_tree(path: str) -> None:
    """Delete a run's folder even if the program made parts of it unreadable."""
    for root, dirs, _files in os.walk(path, topdown=True):
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
