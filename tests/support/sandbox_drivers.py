"""Run the sandbox from a separate "harness" process, as root or as an unprivileged user, and watch its tree.

The sandbox's root and non-root paths differ (uid drop vs. a user namespace), so tests that kill a harness
or read its /proc entries start a small Python process that imports `suites.sandbox`, either as root or,
when the tests run as root, as `nobody` (with an interpreter that user can reach: the project's venv may
live under a 0700 /root).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

NOBODY = 65534
ROOT_USER = os.geteuid() == 0
USERS = ["root", "unprivileged"]


@functools.cache
def _python_for_nobody() -> str | None:
    """An interpreter that `nobody` can run and that imports suites.sandbox, or None."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.path.exists(candidate):
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import suites.sandbox"], cwd=ROOT, env=driver_env(), capture_output=True,
                timeout=60, user=NOBODY, group=NOBODY, extra_groups=[],
            )  # fmt: skip
        except OSError:  # e.g. the venv's interpreter under a 0700 /root
            continue
        if probe.returncode == 0:
            return candidate
    return None


def driver_env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(ROOT), **extra}


def driver(user: str) -> tuple[str, dict[str, Any]]:
    """The interpreter and the Popen keyword arguments that run a harness process as `user` (else skip)."""
    if user == "root":
        if not ROOT_USER:
            pytest.skip("the root path needs the tests to run as root")
        return sys.executable, {}
    if not ROOT_USER:
        return sys.executable, {}  # already unprivileged
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no interpreter that the user nobody can run imports suites.sandbox here")
    return python, {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return after_name[0], int(after_name[1])


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(root: int) -> list[int]:
    """Live descendants of `root` (by parent pid, as this process's /proc shows them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and fields[0] not in ("Z", "X"):
                children.setdefault(fields[1], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def real_uid(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
