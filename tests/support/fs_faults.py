"""File-system faults for a harness subprocess: a read-only folder, a full disk, a file-size limit.

Each helper gives an argv prefix to put in front of the harness's command line, so only that process
sees the fault; the test process and the real disk stay as they are.

- `read_only(DIR)`: as an ordinary user, `chmod a-w` on DIR and everything in it (restored after).
  As root, permission bits do not stop writes (CAP_DAC_OVERRIDE), so the harness runs in a private
  mount namespace (`unshare -m`, or `unshare -Urm` where only user namespaces are allowed) in which
  DIR is bind-mounted onto itself read-only: every write fails with EROFS, as on a read-only volume.
- `full_disk(SIZE, MOUNT, SNAPSHOT)`: the harness runs in a private mount namespace with a SIZE-byte
  tmpfs on MOUNT (pass MOUNT as its --out), so it hits a real ENOSPC when the run outgrows it; when it
  exits, what it left on the full disk is copied to SNAPSHOT (the tmpfs vanishes with the namespace).
- `file_size_limit(BYTES)`: RLIMIT_FSIZE, which needs no privileges: a write past BYTES fails with
  EFBIG (Python ignores SIGXFSZ). A weaker stand-in for a full disk where namespaces are unavailable.

`read_only` and `full_disk` skip the test when this machine allows no mechanism (no `unshare`, or
namespaces forbidden), saying why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_CANDIDATES = (("unshare", "-m", "--propagation", "private"), ("unshare", "-Urm", "--propagation", "private"))
_READ_ONLY = 'd=$1; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 97; exec "$@"'
_TMPFS = (
    'size=$1; mnt=$2; snap=$3; shift 3; mount -t tmpfs -o "size=$size,mode=755" tmpfs "$mnt" || exit 97; '
    '"$@"; rc=$?; cp -a "$mnt/." "$snap/"; exit $rc'
)


def _probe(prefix: tuple[str, ...], script: str, args: list[str], inner: list[str]) -> bool:
    try:
        proc = subprocess.run(
            [*prefix, "sh", "-c", script, "sh", *args, *inner], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@functools.cache
def namespace_prefix(kind: str) -> tuple[str, ...] | None:
    """The first `unshare` form under which the `kind` ("read-only" or "tmpfs") fault really works here."""
    if shutil.which("unshare") is None:
        return None
    for prefix in _CANDIDATES:
        with tempfile.TemporaryDirectory() as tmp:
            target, snap = Path(tmp) / "target", Path(tmp) / "snap"
            target.mkdir()
            snap.mkdir()
            if kind == "read-only":
                inner = ["sh", "-c", f"! touch {target}/probe 2>/dev/null"]
                works = _probe(prefix, _READ_ONLY, [str(target)], inner)
                works = works and not (target / "probe").exists()
            else:  # a 16 KiB tmpfs must refuse 64 KiB, with ENOSPC, and the copy-out must work
                inner = ["sh", "-c", f"! dd if=/dev/zero of={target}/fill bs=4096 count=16 2>{snap}/err"]
                works = _probe(prefix, _TMPFS, ["16k", str(target), str(snap)], inner)
                err = snap / "err"
                works = works and err.is_file() and "No space left" in err.read_text()
            if works:
                return prefix
    return None


def _dac_bypassed() -> bool:
    """True when permission bits do not stop this user (root, or CAP_DAC_OVERRIDE), found by trying."""
    if os.geteuid() == 0:
        return True
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, stat.S_IRUSR | stat.S_IXUSR)
        try:
            Path(tmp, "probe").touch()
        except PermissionError:
            return False
        finally:
            os.chmod(tmp, stat.S_IRWXU)
    return True


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[tuple[list[str], str]]:
    """Yields (argv prefix, mechanism) under which `path` and all below it cannot be written."""
    if not _dac_bypassed():
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if not p.is_symlink()}
        for p, mode in modes.items():
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield [], "chmod a-w (permission bits; not root)"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    prefix = namespace_prefix("read-only")
    if prefix is None:
        pytest.skip("running as root and no mount namespace is allowed here: cannot make a folder read-only")
    yield [*prefix, "sh", "-c", _READ_ONLY, "sh", str(path)], f"{' '.join(prefix[:2])} + read-only bind mount"


def full_disk(size: str, mount: Path, snapshot: Path) -> list[str]:
    """An argv prefix running the command with a `size` tmpfs on `mount`, copied to `snapshot` after."""
    prefix = namespace_prefix("tmpfs")
    if prefix is None:
        pytest.skip("no mount namespace is allowed here (unshare -m / -Urm): cannot simulate a full disk")
    mount.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    return [*prefix, "sh", "-c", _TMPFS, "sh", size, str(mount), str(snapshot)]


def file_size_limit(limit: int) -> list[str]:
    """An argv prefix running the command with RLIMIT_FSIZE = `limit` bytes (EFBIG past it)."""
    code = (
        "import os, resource, sys; n = int(sys.argv[1]); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execvp(sys.argv[2], sys.argv[2:])"
    )
    return [sys.executable, "-c", code, str(limit)]
