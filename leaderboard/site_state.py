"""What a site build remembers for the next one, so a rebuild rewrites only the pages whose inputs changed.

The site keeps `.site-build/state.json`: the build key (harness version and a digest of the code and
templates that render pages) and, per checkpoint, a fingerprint of everything its pages are made from
(its index row without the rank fields, its registry entry, and each run's folder and the path, size,
mtime and inode of its manifest, metrics and samples files) with the files those pages are. The next
build renders a checkpoint's pages only when its fingerprint changed (or its team is named as changed),
in place (leaderboard.site); the others stay as they are. A missing or unreadable state, or another
build key, makes a full build (into a new folder, swapped in whole). `.site-build/paired.json` is the
stage-deltas figure's store (reports.paired_cache), `.site-build/inputs/` the runs' parsed
manifests and metrics, one file per runs folder (leaderboard.site_inputs). Each run file is stat'ed once
per build (stat_once: the inputs' reuse check, the fingerprint, the samples reader and the figure's pair
keys share the result).

A rebuild in place first saves the state with every checkpoint it will rewrite or delete marked pending
(no fingerprint, and every file it may write for it listed), and the final state only after the last
page, index data file and deletion: a build killed at any moment leaves pages that are each old or new,
and the next build re-renders whatever is pending and deletes what no checkpoint owns any more.

Ranks move for many rows when one team's scores change, so the checkpoint pages do not print them:
they read `data/ranks.js` (rewritten every build with the index data).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.runs.catalog import CheckpointView
from harness.runs.store import MANIFEST, METRICS, SAMPLES
from harness.version import __version__

BUILD_FOLDER = ".site-build"
STATE_FILE = "state.json"
PAIRED_FILE = "paired.json"
STATE_VERSION = 1
HERE = Path(__file__).resolve().parent
# Row fields that change when other rows change (ranks shift): in data/ranks.js, not in the pages.
RANK_FIELDS = ("rank", "average", "average_n", "qualified", "unranked_reasons", "covered")
_CODE = ("site.py", "site_pages.py", "site_samples.py", "site_data.py", "site_state.py")


def build_key(extra: str = "") -> str:
    """The harness version and a digest of what renders pages: code, templates and static files."""
    digest = hashlib.sha256(f"{STATE_VERSION}|{__version__}|{extra}".encode())
    paths = [HERE / name for name in _CODE]
    for folder in ("templates", "static"):
        paths.extend(sorted((HERE / folder).glob("*")))
    for path in paths:
        digest.update(path.name.encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


Stats = dict[str, "os.stat_result | None"]  # path -> its stat in this build (one stat per file)


def stat_once(path: str, stats: Stats) -> os.stat_result | None:
    """os.stat(path), None when it fails, taken once per build: the fingerprint, the run inputs'
    reuse check and the figure's pair keys (reports.paired_cache) share it."""
    try:
        return stats[path]
    except KeyError:
        pass
    try:
        info: os.stat_result | None = os.stat(path)
    except OSError:
        info = None
    stats[path] = info
    return info


def _stamp(path: str, stats: Stats) -> list[int] | None:
    info = stat_once(path, stats)
    return None if info is None else [info.st_size, info.st_mtime_ns, info.st_ino]


def page_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as its pages use it: without the fields that move with other rows (see RANK_FIELDS)."""
    return {k: v for k, v in row.items() if k not in RANK_FIELDS}


def fingerprint(
    checkpoint: CheckpointView,
    row: Mapping[str, Any],
    lineage: Mapping[str, Any],
    stats: Stats | None = None,
) -> str:
    known: Stats = {} if stats is None else stats
    runs = []
    for suite, run in sorted(checkpoint.runs.items()):
        folder = str(run.run_dir)
        stamps = [_stamp(os.path.join(folder, name), known) for name in (MANIFEST, METRICS, SAMPLES)]
        runs.append([suite, folder, *stamps])
    payload = [checkpoint.id, checkpoint.label, checkpoint.reference, page_row(row), lineage, runs]
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class BuildState:
    key: str
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"fingerprint", "files"}

    def reusable(self, checkpoint_id: str, print_: str, old_site: Path) -> list[str] | None:
        """The previous build's files of this checkpoint, when its fingerprint is unchanged and all exist."""
        entry = self.pages.get(checkpoint_id)
        if entry is None or entry.get("fingerprint") != print_:
            return None
        files = entry.get("files")
        if not isinstance(files, list) or not all(isinstance(f, str) and _inside(f) for f in files):
            return None
        root = str(old_site)
        if not all(_regular_file(os.path.join(root, f)) for f in files):
            return None
        return list(files)

    def files(self, pending_only: bool = False) -> set[str]:
        """The files the state names (`pending_only`: of checkpoints a killed build left unfinished)."""
        return {
            f
            for entry in self.pages.values()
            if not pending_only or not entry.get("fingerprint")
            for f in entry.get("files") or ()
            if isinstance(f, str)
        }

    def save(self, site: Path) -> None:
        """Written under a temporary name and renamed: a killed build leaves the old state or this one."""
        folder = site / BUILD_FOLDER
        folder.mkdir(exist_ok=True)
        record = {"version": STATE_VERSION, "key": self.key, "pages": self.pages}
        temporary = folder / f"{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
        os.replace(temporary, folder / STATE_FILE)


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_temporaries(site: Path, files: Iterable[str]) -> None:
    """Delete the temporary files (`<file>.tmp`, leaderboard.site_pages) a killed build left next to these."""
    for relative in files:
        if _inside(relative):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(site, f"{relative}.tmp"))


def remove_files(site: Path, files: Iterable[str]) -> None:
    """Delete these site-relative files (and a killed build's temporary files next to them), then
    their folders under runs/ that are left empty."""
    folders = set()
    for relative in files:
        if not _inside(relative):
            continue
        for path in (site / relative, site / f"{relative}.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        folders.add((site / relative).parent)
    for folder in folders:
        if folder.parent == site / "runs":
            with contextlib.suppress(OSError):  # not empty (a user's file): kept
                folder.rmdir()


def _inside(relative: str) -> bool:
    """A path the state may name: relative, inside the site, no `..` (the state file could be edited).
    Path(relative).parts as strings (a thousand times per rebuild): empty and `.` parts dropped."""
    if relative.startswith("/"):
        return False
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    return bool(parts) and ".." not in parts and parts[0] != BUILD_FOLDER


def load_state(site: Path, key: str) -> BuildState | None:
    """The previous build's state when it was made with the same build key (else None: full build)."""
    try:
        record = json.loads((site / BUILD_FOLDER / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != STATE_VERSION or record.get("key") != key:
        return None
    pages = record.get("pages")
    if not isinstance(pages, dict) or not all(isinstance(v, dict) for v in pages.values()):
        return None
    return BuildState(key, {str(k): dict(v) for k, v in pages.items()})
