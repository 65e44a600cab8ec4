"""A lock for shared file systems: shards of one run write from many nodes onto NFS or Lustre, where
flock is unreliable or missing, so exclusion rests on O_CREAT|O_EXCL plus a heartbeat instead."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

from harness.errors import UsageError
from harness.runs.store import storage_error


class FileLock:
    """An exclusive lock that works on shared file systems (NFS, Lustre) without flock: the lock file is
    created with O_CREAT|O_EXCL (atomic there too) and holds who owns it (host, pid, Slurm job). While
    held, a thread touches it every `heartbeat_s`; a lock whose holder is a dead process on this host,
    or whose mtime is older than `stale_s` (its host died, its job was killed), is broken and taken.
    `wait_s` > 0 polls for a held lock that long before refusing."""

    def __init__(
        self, path: Path, *, wait_s: float = 0.0, stale_s: float = 120.0, heartbeat_s: float = 15.0
    ) -> None:
        self.path = path
        self.wait_s, self.stale_s, self.heartbeat_s = wait_s, stale_s, heartbeat_s
        self._token = (
            f"{socket.gethostname()} {os.getpid()} {os.environ.get('SLURM_JOB_ID', '-')} {time.time_ns()}"
        )
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> FileLock:
        deadline = time.monotonic() + self.wait_s
        while not self._try_create():
            holder = self._read()
            if holder is not None and self._stale(holder):
                self._break(holder)
                continue
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"{self.path.parent} is locked by {_describe(holder)} ({self.path}).",
                    "Wait for it to finish (or stop it). A lock whose holder died is taken over once its "
                    f"heartbeat is {self.stale_s:.0f} s old.",
                )
            time.sleep(0.2)
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {self.path}", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._read() == self._token:  # never remove a lock someone else took over
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise storage_error(error, self.path, "create the lock file") from None
        try:
            os.write(fd, self._token.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None

    def _stale(self, holder: str) -> bool:
        host, _, rest = holder.partition(" ")
        pid = rest.partition(" ")[0]
        if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            return True
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: the next create takes it
        return age > self.stale_s

    def _break(self, holder: str) -> None:
        """Move the stale lock aside (atomic), then check it was the one judged stale: if another
        process took the lock in between, put theirs back."""
        aside = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}.{time.time_ns()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_text(encoding="utf-8", errors="replace").strip() != holder:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
        finally:
            with contextlib.suppress(OSError):
                aside.unlink()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: str | None) -> str:
    if not holder:
        return "another process"
    host, pid, job, *_ = [*holder.split(" "), "", "", ""]
    return f"pid {pid} on {host}" + (f" (Slurm job {job})" if job not in ("", "-") else "")
