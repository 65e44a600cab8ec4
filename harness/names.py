"""Names users give that become folders, file names or lookup keys, and the folders the harness may delete.

One rule for checkpoint names, stage names, tags and team names: 1-64 letters, digits, '-', '_' or
'.', starting with a letter or digit. So a name is never a path (no '/', no '..', no '~'), never a
hidden file, never empty, never whitespace or a control character.

The harness deletes or replaces a folder only when it can prove it made that folder: `claim_folder`
writes a marker file inside it when creating it, and `remove_owned_folder` refuses any folder without
the marker for the same purpose (the user's home, another tool's output, another registry's checkpoint).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from harness.errors import UsageError

NAME_RULE = "1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
OWNER_MARKER = ".harness-owned.json"


def is_valid_name(value: str) -> bool:
    return bool(_NAME.fullmatch(value))


def check_name(value: str, what: str) -> str:
    """`value` if it is a valid name, else a UsageError naming `what` (e.g. "checkpoint name") and the rule."""
    if not isinstance(value, str) or not is_valid_name(value):
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise UsageError(f"The {what} {shown[:80]} is not allowed.", f"Use {NAME_RULE}.")
    return value


def claim_folder(path: Path, purpose: str, **details: str) -> Path:
    """Create `path` (which must not exist) and mark it as made by the harness for `purpose`."""
    path.mkdir(parents=True, exist_ok=False)
    record = {"purpose": purpose, "pid": os.getpid(), **details}
    (path / OWNER_MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path


def owner_record(path: Path) -> dict[str, object] | None:
    """The marker `claim_folder` wrote, or None (no marker, unreadable, or `path` is a symlink)."""
    if path.is_symlink() or not path.is_dir():
        return None
    try:
        record = json.loads((path / OWNER_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def owns(path: Path, purpose: str, **details: str) -> bool:
    record = owner_record(path)
    return (
        record is not None
        and record.get("purpose") == purpose
        and all(record.get(key) == value for key, value in details.items())
    )


def remove_owned_folder(path: Path, purpose: str, **details: str) -> None:
    """Delete `path` only if the harness made it for `purpose` (same details); otherwise a UsageError."""
    if not owns(path, purpose, **details):
        raise UsageError(
            f"{path} exists and was not made by the harness for this {purpose}, so it is left untouched.",
            "Move or delete it yourself, or pick another name.",
        )
    shutil.rmtree(path)
