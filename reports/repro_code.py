"""The code a reproducibility package holds, and the check that no secret goes into it.

From a git checkout: every file git tracks plus the untracked files it does not ignore, read from the
working tree (so `code/` is exactly what ran, new modules included), and `code/UNCOMMITTED.diff`
(`git diff HEAD`) when the tree differs from the revision. Outside git: only the installed package's
version, in `code/INSTALLED.txt`.

Secrets: the value of every environment variable whose name looks secret (KEY, TOKEN, SECRET, PASSWORD,
CREDENTIAL) is searched for, as bytes, in every file and file name going in; one found refuses the
package, naming the file and the variable (never the value).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.version import __version__

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DIFF_FILE = "UNCOMMITTED.diff"
INSTALLED_FILE = "INSTALLED.txt"
GIT_TIMEOUT_S = 60
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_CHARS = 6  # shorter values ("1", "true") would match by chance and are no credential
# Code is small; a file or a tree above these is a checkpoint or a dataset left untracked in the tree, which
# must not be read into memory or shipped as code.
MAX_CODE_FILE_BYTES = 8 * 1024 * 1024
MAX_CODE_TOTAL_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class CodeSnapshot:
    files: Mapping[str, bytes]  # path under code/ -> bytes
    revision: str | None  # None outside git
    dirty: bool | None
    untracked: tuple[str, ...]  # files in code/ that the revision does not hold
    source: str  # "git" | "installed"


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, timeout=GIT_TIMEOUT_S, check=True
    ).stdout


def snapshot_code(root: Path = PROJECT_ROOT) -> CodeSnapshot:
    """The project's files as they are in the working tree (see the module docstring)."""
    try:
        # Installed outside its checkout (site-packages inside some other repository): not our git tree.
        top = Path(_git(root, "rev-parse", "--show-toplevel").decode().strip())
        if top.resolve() != root.resolve():
            raise subprocess.SubprocessError(f"{root} is not the top of its git tree ({top})")
        revision = _git(root, "rev-parse", "HEAD").decode().strip()
        tracked = _git(root, "ls-files", "-z", "--cached").split(b"\0")
        others = _git(root, "ls-files", "-z", "--others", "--exclude-standard").split(b"\0")
        diff = _git(root, "diff", "HEAD", "--binary")
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        return CodeSnapshot(
            {INSTALLED_FILE: f"post-train-harness=={__version__}\n".encode()}, None, None, (), "installed"
        )
    files: dict[str, bytes] = {}
    untracked = sorted({p.decode() for p in others if p})
    names = sorted({p.decode() for p in tracked if p} | set(untracked))
    paths = {n: root / n for n in names if not (root / n).is_symlink() and (root / n).is_file()}
    sizes = {n: path.stat().st_size for n, path in paths.items()}  # deleted in the tree, or a link: skipped
    too_big = [n for n, size in sizes.items() if size > MAX_CODE_FILE_BYTES]
    if too_big or sum(sizes.values()) > MAX_CODE_TOTAL_BYTES:
        raise UsageError(
            f"Refusing to package the code: {', '.join(too_big[:5]) or 'the working tree'} "
            f"{'is' if len(too_big) == 1 else 'are'} larger than code should be "
            f"({MAX_CODE_FILE_BYTES // 2**20} MiB a file, {MAX_CODE_TOTAL_BYTES // 2**20} MiB in all).",
            "Move weights and data out of the project folder or list them in .gitignore, then package again.",
        )
    for name, path in paths.items():
        files[name] = path.read_bytes()
    if diff:
        files[DIFF_FILE] = diff
    return CodeSnapshot(files, revision, bool(diff) or bool(untracked), tuple(untracked), "git")


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Environment variable name -> value, for the names that look like they hold a secret."""
    env = os.environ if environ is None else environ
    return {
        name: value.encode()
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_CHARS
    }


def check_no_secrets(files: Mapping[str, bytes], environ: Mapping[str, str] | None = None) -> None:
    """A UsageError naming the files (or file names) that hold a secret variable's value, and the variable."""
    secrets = secret_values(environ)
    for name, value in sorted(secrets.items()):
        found = [
            path + (" (its name)" if value in path.encode() else "")
            for path in sorted(files)
            if value in path.encode() or value in files[path]
        ]
        if found:
            raise UsageError(
                f"Refusing to write the reproducibility package: {', '.join(found[:5])}"
                + (f" and {len(found) - 5} more" if len(found) > 5 else "")
                + f" {'holds' if len(found) == 1 else 'hold'} the value of the environment variable {name}, "
                "which looks like a secret.",
                "Remove the value from those files (or unset the variable if it is not a secret) and package "
                "again; API keys belong in the environment, named by api_key_env.",
            )
