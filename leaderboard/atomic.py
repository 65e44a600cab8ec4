"""Folder swaps that a SIGKILL cannot leave half done, a lock for the site-data folder, and cleanup of
work folders that a killed process left behind.

A new site (or a team's new submission) is built in a hidden folder next to its target, marked with
`harness.names.claim_folder`, and swapped in with one rename. On Linux the swap is `renameat2` with
RENAME_EXCHANGE: the target path names the old complete folder, then the new complete one, never
nothing. Elsewhere (or on a file system without it) the old folder is renamed aside first; a kill
between the two renames leaves both complete folders on disk and no target, which the next run finds.
The old folder is deleted only after the swap, and only if the harness made it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.errors import StorageError
from harness.names import OWNER_MARKER, claim_folder, owner_record, owns, remove_owned_folder
from harness.runs.locks import process_alive

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
LOCK_FILE = ".lock"


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28, or not Linux
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the platform or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def work_folder(target: Path, purpose: str, kind: str) -> Path:
    """A new, marked, hidden folder next to `target` (same file system, so the swap is one rename).
    It honours the umask (tempfile.mkdtemp would make it 0700, and the swapped-in folder with it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    name = f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
    return claim_folder(target.parent / name, purpose)


def swap_in(new: Path, target: Path) -> Path | None:
    """Put the folder `new` at `target`. Returns where the replaced folder now is (to be deleted by the
    caller once it has checked ownership), or None when nothing was replaced."""
    if target.exists() or target.is_symlink():
        if exchange(new, target):
            return new
        aside = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(target, aside)
        try:
            os.rename(new, target)
        except OSError:
            os.rename(aside, target)
            raise
        return aside
    os.rename(new, target)
    return None


def storage(error: OSError, path: Path, doing: str) -> StorageError:
    """A refused write (full disk, no permission) as one paragraph, exit 4."""
    code = errno.errorcode.get(error.errno or 0, "")
    return StorageError(
        f"Cannot {doing} {path}: {error.strerror or error}{f' ({code})' if code else ''}.",
        "Free space or make the folder writable, then run the same command again (what was there before is "
        "unchanged).",
    )


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # unknown: keep it
    return pid == os.getpid() or process_alive(pid)


def clean_stale(target: Path, purposes: tuple[str, ...]) -> None:
    """Delete hidden work folders `.<target name>.*` that the harness made for one of `purposes` in a
    process that no longer runs (a killed build or add). Anything else is left alone."""
    parent = target.parent
    if not parent.is_dir():
        return
    prefix = f".{target.name}."
    for path in parent.iterdir():
        if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
            continue
        record = owner_record(path)
        if record is None or record.get("purpose") not in purposes or _alive(record.get("pid")):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(path)


def remove_replaced(path: Path | None, purpose: str, legacy_marker: str | None = None) -> None:
    """Delete a folder that a swap replaced: only one the harness made (its marker, or the file an
    older harness version left in it, `legacy_marker`); anything else stays where the swap put it."""
    if path is None or not path.exists():
        return
    if owns(path, purpose):
        remove_owned_folder(path, purpose)
    elif legacy_marker is not None and not path.is_symlink() and (path / legacy_marker).is_file():
        shutil.rmtree(path)


def marked_by_harness(path: Path, purpose: str, legacy_marker: str | None = None) -> bool:
    return owns(path, purpose) or (
        legacy_marker is not None and not path.is_symlink() and (path / legacy_marker).is_file()
    )


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on `folder/.lock`, waited for: concurrent adds take turns."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle: IO[str] | None = None
    try:
        handle = path.open("a+", encoding="utf-8")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except OSError as error:
        if handle is not None:
            handle.close()
        raise StorageError(
            f"Cannot lock {path} ({error.strerror or error}).",
            "Check that the folder is writable (and on a local file system: flock does not work on every "
            "network file system).",
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


__all__ = [
    "LOCK_FILE",
    "OWNER_MARKER",
    "clean_stale",
    "exchange",
    "folder_lock",
    "marked_by_harness",
    "remove_replaced",
    "storage",
    "swap_in",
    "work_folder",
]
