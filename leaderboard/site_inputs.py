"""The runs a site build reads, with their parsed inputs kept between builds.

Reading 5,000 manifests and metrics files (bounded, strict JSON: harness.readers) is most of a rebuild
that changed little. The site keeps `.site-build/inputs/<digest>.json`, one file per runs folder (a
rebuild after one team's bundle rewrites only that team's): per run folder, the size, mtime, inode and
ctime of its manifest and metrics files with their content as read then; and the folders the last walk
found, with every walked folder's mtime and inode. When none of those folders changed (an entry added,
removed or renamed in a folder moves its mtime; one modified within RACY_NS of the walk is not trusted),
the walk is not repeated. A run whose two stamps are
unchanged takes its content from there; any other is read from its files, as
harness.runs.catalog.load_run reads it (the same errors). The registry entries (which change without any
run file changing) are looked up afresh every build, after, exactly as catalog.load_runs does.

The file holds a checksum of its content; a file that does not match it, or is malformed in any way, is
ignored whole (every run is read from its files). Dicts and lists in the content are kept once in a
table of values (most are shared: suite settings, generation settings, lineage), which makes the file a
fraction of the manifests' size and quick to read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat as stat_module
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.runs.catalog import (
    RunView,
    parse_metrics,
    parse_reasoning,
    read_json,
    registered_entries,
    team_of,
    with_registered,
)
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, METRICS
from harness.types import Metric
from leaderboard.site_state import Stats, stat_once

INPUTS_FOLDER = "inputs"  # .site-build/inputs/<digest of a runs folder's path>.json, one per runs folder
LEGACY_FILE = "inputs.json"  # the single file of earlier builds: removed on save
_VERSION = 2
Stamp = list[int]


def stamp(path: str, stats: Stats | None = None) -> Stamp | None:
    """A file's identity: size, mtime, inode and ctime (None when it is missing or not a file)."""
    info = stat_once(path, {} if stats is None else stats)
    if info is None or not stat_module.S_ISREG(info.st_mode):
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]


def run_folders(root: Path) -> list[Path]:
    """harness.runs.store.find_runs with os.walk (a quarter of the time of Path.rglob): the folders under
    `root` holding a manifest, none of the four folders above the manifest hidden, links to folders not
    entered, sorted."""
    return _walk(root)[0]


def _walk(root: Path) -> tuple[list[Path], list[list[Any]]]:
    """(run_folders(root), [folder, mtime, inode] of every folder walked)."""
    if not root.is_dir():
        return [], []
    found, seen = [], []
    for folder, folders, files in os.walk(root):
        with contextlib.suppress(OSError):
            info = os.stat(folder)
            seen.append([folder, info.st_mtime_ns, info.st_ino])
        if MANIFEST not in files and MANIFEST not in folders:
            continue
        path = Path(folder)
        if os.path.exists(os.path.join(folder, MANIFEST)) and not any(
            part.startswith(".") for part in (path / MANIFEST).parts[-5:-1]
        ):
            found.append(path)
    return sorted(found), seen


def _unchanged(folders: list[list[Any]], settled_ns: int) -> bool:
    """Every walked folder still has its mtime and inode, and none was modified within RACY_NS of the
    walk (a change in the same clock tick as the walk would not move the mtime: walked again)."""
    for folder, mtime, inode in folders:
        try:
            info = os.stat(folder)
        except OSError:
            return False
        if info.st_mtime_ns != mtime or info.st_ino != inode or mtime >= settled_ns:
            return False
    return True


RACY_NS = 2_000_000_000


class RunInputs:
    """The runs folders' kept content, one _Table (and file) per runs folder; `stats` is the build's
    shared stat memo (leaderboard.site_state.stat_once)."""

    def __init__(self, folder: Path | None = None, stats: Stats | None = None) -> None:
        self.folder = folder
        self.stats: Stats = {} if stats is None else stats
        self.tables: dict[str, _Table] = {}  # file name -> table, of this build's runs folders

    @classmethod
    def load(cls, folder: Path | None, stats: Stats | None = None) -> RunInputs:
        """The kept entries in `folder` (a site's build folder), read per runs folder as used."""
        return cls(folder, stats)

    @property
    def read(self) -> int:
        return sum(table.read for table in self.tables.values())

    def load_runs(self, roots: Iterable[Path]) -> list[RunView]:
        """harness.runs.catalog.load_runs, taking unchanged runs' content from the kept entries."""
        runs: list[RunView] = []
        for root in roots:
            if not root.is_dir():
                raise DataError(
                    f"The runs folder {root} does not exist.",
                    "Pass folders made by `harness eval --runs DIR`.",
                )
            name = _file_name(root)
            table = self.tables.get(name)
            if table is None:
                table = self.tables[name] = _Table.load(
                    None if self.folder is None else self.folder / INPUTS_FOLDER / name, str(root)
                )
            team = team_of(root)
            entries = registered_entries(root, submitted=team is not None)
            runs.extend(with_registered([table.load_run(f, team, self.stats) for f in table.folders(root)],
                                        entries))  # fmt: skip
        return runs

    def save(self, folder: Path) -> None:
        """Each runs folder's file that changed, under a temporary name renamed into place (a killed build
        leaves the old file or the new one); files of runs folders this build did not read are removed."""
        where = folder / INPUTS_FOLDER
        where.mkdir(exist_ok=True)
        for name, table in self.tables.items():
            table.save(where / name)
        for path in where.iterdir():
            if path.name not in self.tables:
                with contextlib.suppress(OSError):
                    path.unlink()
        with contextlib.suppress(OSError):
            (folder / LEGACY_FILE).unlink()


def _file_name(root: Path) -> str:
    return hashlib.sha256(str(root).encode()).hexdigest()[:24] + ".json"


@dataclass
class _Table:
    """One runs folder's kept content (see the module docstring)."""

    root: str
    values: list[Any] = field(default_factory=list)  # the shared table of dicts and lists
    entries: dict[str, list[Any]] = field(default_factory=dict)  # as loaded: the previous build's
    kept: dict[str, list[Any]] = field(default_factory=dict)  # this build's (saved)
    walked: list[list[Any]] = field(default_factory=list)  # as loaded: [folder, mtime, inode] walked
    found: list[str] = field(default_factory=list)  # as loaded: the run folders that walk found
    walk_ns: int = 0  # when that walk started
    read: int = 0  # runs read from their files in this build
    rewalked: bool = False
    _index: dict[str, int] = field(default_factory=dict)  # JSON text of a value -> its place in values

    def folders(self, root: Path) -> list[Path]:
        """run_folders(root), kept from the last walk when no folder under root changed since."""
        if self.walked and _unchanged(self.walked, self.walk_ns - RACY_NS):
            return [Path(f) for f in self.found]
        self.walk_ns = time.time_ns()
        found, self.walked = _walk(root)
        self.found, self.rewalked = [str(f) for f in found], True
        return found

    def load_run(self, run_dir: Path, team: str | None, stats: Stats) -> RunView:
        key = str(run_dir)
        manifest_stamp = stamp(os.path.join(key, MANIFEST), stats)
        metrics_stamp = stamp(os.path.join(key, METRICS), stats)
        entry = self.entries.get(key)
        if (
            isinstance(entry, list)
            and len(entry) == 4
            and manifest_stamp is not None
            and entry[:2] == [manifest_stamp, metrics_stamp]
        ):
            run = self._from_entry(run_dir, entry, team)
            if run is not None:
                self.kept[key] = entry
                return run
        self.read += 1
        manifest_record = read_json(run_dir / MANIFEST, "run manifest")
        manifest = Manifest.from_record(manifest_record, run_dir / MANIFEST)
        metrics_record = None
        primary, metrics, reasoning = "", dict[str, Metric](), None
        if metrics_stamp is not None:
            metrics_record = read_json(run_dir / METRICS, "metrics file")
            primary, metrics = parse_metrics(metrics_record, run_dir / METRICS)
            reasoning = parse_reasoning(metrics_record)
        if manifest_stamp is not None:  # a file that vanished while read is read again next time
            self.kept[key] = [manifest_stamp, metrics_stamp, self._packed(manifest_record),
                              None if metrics_record is None else self._packed(metrics_record)]  # fmt: skip
        return RunView(run_dir, manifest, primary, metrics, team=team, reasoning=reasoning)

    def _from_entry(self, run_dir: Path, entry: list[Any], team: str | None) -> RunView | None:
        try:
            manifest = Manifest.from_record(self._unpacked(entry[2]), run_dir / MANIFEST)
            primary, metrics, reasoning = "", dict[str, Metric](), None
            if entry[3] is not None:
                metrics_record = self._unpacked(entry[3])
                primary, metrics = parse_metrics(metrics_record, run_dir / METRICS)
                reasoning = parse_reasoning(metrics_record)
            elif entry[1] is not None:
                return None
        except (DataError, TypeError, ValueError, IndexError, KeyError, AttributeError):
            return None  # a malformed entry: the files are read instead
        return RunView(run_dir, manifest, primary, metrics, team=team, reasoning=reasoning)

    def _packed(self, record: Mapping[str, Any]) -> list[Any]:
        """[[key, value or [index into values]], ...]: dicts and lists go into the shared table."""
        if not self._index and self.values:
            self._index = {_compact(v): i for i, v in enumerate(self.values)}
        out: list[Any] = []
        for key, value in record.items():
            if isinstance(value, dict | list):
                text = _compact(value)
                index = self._index.get(text)
                if index is None:
                    index = self._index[text] = len(self.values)
                    self.values.append(value)
                out.append([key, [index]])
            else:
                out.append([key, value])
        return out

    def _unpacked(self, packed: list[Any]) -> dict[str, Any]:
        """A kept record; ValueError for anything _packed does not write (checked here, on use, rather
        than for every entry on load: a malformed entry makes its run read from its files)."""
        record = {}
        n_values = len(self.values)
        for key, value in packed:
            if not isinstance(key, str) or isinstance(value, dict):
                raise ValueError("not a kept record")
            if isinstance(value, list):
                if len(value) != 1 or type(value[0]) is not int or not 0 <= value[0] < n_values:
                    raise ValueError("not a kept value")
                value = self.values[value[0]]
            record[key] = value
        return record

    def to_text(self) -> str:
        """This build's entries (only values they use) and walk, with the checksum line."""
        used = sorted({v[0] for e in self.kept.values() for part in e[2:] if part for _, v in part
                       if isinstance(v, list)})  # fmt: skip
        where = {old: new for new, old in enumerate(used)}

        def renumbered(part: list[Any] | None) -> list[Any] | None:
            if part is None:
                return None
            return [[k, [where[v[0]]] if isinstance(v, list) else v] for k, v in part]

        runs = {key: [e[0], e[1], renumbered(e[2]), renumbered(e[3])] for key, e in self.kept.items()}
        record = {"version": _VERSION, "root": self.root, "values": [self.values[i] for i in used],
                  "runs": runs, "walk": [self.walk_ns, self.walked, self.found]}  # fmt: skip
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return f"{_checksum(text)}\n{text}"

    def save(self, path: Path) -> None:
        """Not rewritten when this build read no run from its files, dropped none and did not walk."""
        if not self.read and not self.rewalked and self.kept.keys() == self.entries.keys() and path.is_file():
            return
        temporary = path.with_name(f"{path.name}.tmp")
        temporary.write_text(self.to_text(), encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path | None, root: str) -> _Table:
        """The kept entries in `path`; none when missing, altered or malformed."""
        if path is None:
            return cls(root)
        try:
            checksum, _, text = path.read_text(encoding="utf-8").partition("\n")
            if checksum != _checksum(text):
                return cls(root)
            record = json.loads(text)
            values, runs = record["values"], record["runs"]
            walk_ns, walked, found = record["walk"]
            if (
                record.get("version") != _VERSION
                or record.get("root") != root
                or not isinstance(values, list)
                or not isinstance(runs, dict)
            ):
                return cls(root)
            entries = {str(k): v for k, v in runs.items() if isinstance(v, list)}  # checked on use
            if not (isinstance(walk_ns, int) and _well_formed_walk(walked, found, root)):
                walk_ns, walked, found = 0, [], []
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return cls(root)
        return cls(root, values=values, entries=entries, walked=walked, found=found, walk_ns=walk_ns)


def _well_formed_walk(walked: Any, found: Any, root: str) -> bool:
    """A kept walk names only folders under its runs folder, starting with that folder itself."""
    inside = root.rstrip(os.sep) + os.sep
    return (
        isinstance(walked, list)
        and isinstance(found, list)
        and bool(walked)
        and walked[0][0] == root
        and all(isinstance(f, str) and f.startswith(inside) for f in found)
        and all(
            isinstance(w, list) and len(w) == 3 and isinstance(w[0], str) and isinstance(w[1], int)
            and isinstance(w[2], int)
            for w in walked
        )
    )  # fmt: skip


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
