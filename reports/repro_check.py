"""Verifying a reproducibility package (a zip, or the folder it was extracted to) before anything re-runs.

Trusts nothing in it, and fails (DataError, exit 4) naming the file:
- the zip itself: size, entry count and central directory bounded before parsing (leaderboard.zipcheck),
  names that are absolute or climb out (zip-slip), repeated entries, methods other than stored/deflate,
  encryption, declared sizes over the limits; every entry streams to disk through a byte limit;
- a folder: links, and anything but plain files (Python's `__pycache__` folders are skipped: running the
  packaged code writes them);
- MANIFEST.json: its format, and the files it lists: none missing, none extra, every sha256 equal;
- each packaged run: its metrics.json re-graded from its samples.jsonl with the suite's own scorer and
  metric code (leaderboard.verify.verify_run: the checks `leaderboard add` makes on a bundle).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from harness.readers import MiB
from leaderboard.bundle import safe_name
from leaderboard.zipcheck import CHUNK, ZIP_ERRORS, ZipProblem, central_directory, read_entry
from reports.repro_package import FORMAT, FORMAT_VERSION, MANIFEST_FILE, RUN_FILES

MAX_ZIP_BYTES = 1024 * MiB
MAX_ENTRIES = 50_000
MAX_DIRECTORY_BYTES = 16 * MiB
MAX_FILE_BYTES = 256 * MiB
MAX_UNPACKED_BYTES = 2048 * MiB
MAX_MANIFEST_BYTES = 32 * MiB
SKIPPED_FOLDERS = ("__pycache__",)
FIX = "Rebuild it with `harness package CHECKPOINT... --repro OUT.zip` and do not edit it afterwards."
_BUNDLE_PREFIX = "Bundle rejected: "


def reject(problem: str) -> DataError:
    return DataError(f"Package rejected: {problem}", FIX)


@dataclass(frozen=True)
class VerifiedPackage:
    root: Path  # the folder holding the verified files
    manifest: Mapping[str, Any]  # MANIFEST.json
    files: int  # files verified (MANIFEST.json excluded)

    def runs(self) -> list[Mapping[str, Any]]:
        return [run for c in self.manifest["checkpoints"] for run in c["runs"]]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_manifest(meta: Any) -> dict[str, str]:
    """The files MANIFEST.json lists (path -> sha256), once its fields have the right shapes."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise reject(f"{MANIFEST_FILE} {what}.")

    need(isinstance(meta, dict), "is not a JSON object")
    need(meta.get("format") == FORMAT, f"has format {str(meta.get('format'))[:60]!r}, expected '{FORMAT}'")
    need(
        meta.get("format_version") == FORMAT_VERSION,
        f"has format_version {str(meta.get('format_version'))[:20]}; this harness reads {FORMAT_VERSION}",
    )
    files, checkpoints = meta.get("files"), meta.get("checkpoints")
    need(isinstance(files, list) and bool(files), "lacks a non-empty list 'files'")
    need(isinstance(checkpoints, list) and bool(checkpoints), "lacks a non-empty list 'checkpoints'")
    need(isinstance(meta.get("subset"), list), "lacks the list 'subset'")
    listed: dict[str, str] = {}
    for entry in files:
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
        )
        need(ok, f"has a files entry without string 'path' and 'sha256': {str(entry)[:120]}")
        path = entry["path"]
        need(safe_name(path) and path != MANIFEST_FILE, f"lists {path[:120]!r}, a path outside the package")
        need(path not in listed, f"lists {path[:120]} twice")
        listed[path] = entry["sha256"]
    for checkpoint in checkpoints:
        need(
            isinstance(checkpoint, dict) and isinstance(checkpoint.get("runs"), list),
            "has a malformed checkpoint",
        )
        for run in checkpoint["runs"]:
            need(isinstance(run, dict) and isinstance(run.get("path"), str), "has a run without a 'path'")
            need(isinstance(run.get("suite"), str), f"has run {run['path'][:120]} without a 'suite'")
            absent = [f"{run['path']}/{n}" for n in RUN_FILES if f"{run['path']}/{n}" not in listed]
            need(not absent, f"names run {run['path'][:120]}, but does not list its files {absent[:3]}")
    return listed


def _compare(listed: Mapping[str, str], present: set[str], where: str) -> None:
    extra = sorted(present - set(listed))
    missing = sorted(set(listed) - present)
    if extra:
        raise reject(f"files {extra[:5]} are in {where} but not listed in {MANIFEST_FILE}.")
    if missing:
        raise reject(f"files {missing[:5]} are listed in {MANIFEST_FILE} but missing from {where}.")


def _altered(path: str, actual: str, expected: str) -> DataError:
    return reject(f"{path} was altered: its sha256 is {actual}, {MANIFEST_FILE} says {expected}.")


def _parse_manifest(raw: bytes, where: Path) -> dict[str, str]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise reject(f"{MANIFEST_FILE} in {where} is not JSON ({type(error).__name__}).") from None
    return check_manifest(meta)


def verify_folder(folder: Path) -> VerifiedPackage:
    """A package extracted to `folder`: every file listed, none extra, every sha256 equal."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise reject(f"{folder} has no {MANIFEST_FILE}; it is not a reproducibility package.")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise reject(f"{MANIFEST_FILE} is over {MAX_MANIFEST_BYTES:,} bytes.")
    raw = manifest_path.read_bytes()
    listed = _parse_manifest(raw, folder)
    present: set[str] = set()
    for top, folders, names in os.walk(folder):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS)
        for name in [*names, *folders]:
            path = Path(top) / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise reject(f"{relative} is a symbolic link; a package holds plain files only.")
            if name in folders:
                continue
            if not path.is_file():
                raise reject(f"{relative} is not a plain file.")
            if relative != MANIFEST_FILE:
                present.add(relative)
    _compare(listed, present, str(folder))
    for relative, expected in sorted(listed.items()):
        actual = _sha256_file(folder / relative)
        if actual != expected:
            raise _altered(relative, actual, expected)
    return VerifiedPackage(folder, json.loads(raw), len(listed))


def _check_entries(source: Path, infos: list[zipfile.ZipInfo]) -> None:
    names = [i.filename for i in infos]
    unsafe = [n for n in names if not safe_name(n.rstrip("/"))]
    if unsafe:
        raise reject(
            f"entries {[n[:120] for n in unsafe[:5]]} have absolute paths or climb out of the package (zip-slip)."
        )
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        raise reject(f"entries {repeated[:5]} appear more than once in {source.name}.")
    if any(i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) for i in infos):
        raise reject("it holds entries compressed with a method other than deflate.")
    if any(i.flag_bits & 0x1 for i in infos):
        raise reject("it holds encrypted entries.")
    big = [i.filename for i in infos if i.file_size > MAX_FILE_BYTES]
    if big:
        raise reject(f"entries {big[:3]} unpack to more than {MAX_FILE_BYTES:,} bytes each.")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise reject(f"it unpacks to {total:,} bytes, more than {MAX_UNPACKED_BYTES:,}.")


def extract_zip(source: Path, into: Path) -> VerifiedPackage:
    """Check the zip (see the module docstring) and extract its listed files into `into`."""
    size = source.stat().st_size
    if size > MAX_ZIP_BYTES:
        raise reject(f"{source} is {size:,} bytes; a package is at most {MAX_ZIP_BYTES:,}.")
    try:
        with source.open("rb") as handle:
            directory = central_directory(handle)
    except (ZipProblem, OSError, struct.error) as problem:
        raise reject(f"{source} is not a zip file ({problem}).") from None
    if directory.entries > MAX_ENTRIES or directory.size > MAX_DIRECTORY_BYTES:
        raise reject(
            f"{source} declares {directory.entries:,} entries in a {directory.size:,}-byte directory."
        )
    try:
        archive = zipfile.ZipFile(source)
    except ZIP_ERRORS as error:
        raise reject(f"{source} is not a zip file ({type(error).__name__}: {error}).") from None
    with archive:
        infos = archive.infolist()
        _check_entries(source, infos)
        files = {i.filename: i for i in infos if not i.filename.endswith("/")}
        if MANIFEST_FILE not in files:
            raise reject(f"{MANIFEST_FILE} is missing from {source}.")
        raw = bytearray()
        _read(source, archive, files[MANIFEST_FILE], MAX_MANIFEST_BYTES, raw.extend)
        listed = _parse_manifest(bytes(raw), source)
        _compare(listed, set(files) - {MANIFEST_FILE}, source.name)
        into.mkdir(parents=True, exist_ok=True)
        (into / MANIFEST_FILE).write_bytes(bytes(raw))
        for name, expected in sorted(listed.items()):
            target = into.joinpath(*name.split("/"))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                out = target.open("wb")
            except OSError as error:  # a name that is both a file and a folder ("a" and "a/b")
                raise reject(f"{name} cannot be extracted ({type(error).__name__}: {error}).") from None
            with out:
                actual = _read(source, archive, files[name], MAX_FILE_BYTES, out.write)
            if actual != expected:
                raise _altered(name, actual, expected)
            if name.endswith(".sh"):
                target.chmod(0o755)
    return VerifiedPackage(into, json.loads(bytes(raw)), len(listed))


def _read(source: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, sink: Any) -> str:
    try:
        digest, _ = read_entry(archive, info, limit, sink)
    except ZipProblem as problem:
        raise reject(f"{problem}.") from None
    except ZIP_ERRORS as error:  # CRC errors, truncated data
        raise reject(
            f"{info.filename} in {source} cannot be read ({type(error).__name__}: {error})."
        ) from None
    return digest


def open_package(source: Path, into: Path) -> VerifiedPackage:
    """A verified package: `source` itself when it is a folder, else the zip extracted into `into`."""
    if source.is_dir():
        return verify_folder(source)
    if not source.is_file():
        raise UsageError(
            f"The package {source} does not exist.",
            "Pass the zip `harness package ... --repro` wrote, or the folder it was extracted to.",
        )
    return extract_zip(source, into)


def verify_runs(package: VerifiedPackage) -> list[str]:
    """Every packaged run re-graded from its stored samples (leaderboard.verify.verify_run); the notes of
    runs that could not be re-scored here (model judges)."""
    from leaderboard.verify import verify_run

    notes = []
    for run in package.runs():
        base = str(run["path"])
        files = {f"{base}/{name}": package.root.joinpath(*base.split("/"), name) for name in RUN_FILES}
        try:
            metrics = json.loads(files[f"{base}/metrics.json"].read_text(encoding="utf-8"))
            claimed = metrics.get("metrics") if isinstance(metrics, dict) else None
            accepted = verify_run(
                {"path": base, "metrics": claimed if isinstance(claimed, dict) else {}}, files
            )
        except ValueError as error:  # metrics.json that is not JSON
            raise reject(f"{base}/metrics.json is not JSON ({type(error).__name__}).") from None
        except DataError as error:
            if error.problem.startswith(_BUNDLE_PREFIX):
                raise reject(error.problem.removeprefix(_BUNDLE_PREFIX)) from None
            raise
        if accepted.note:
            notes.append(f"{base}: {accepted.note}")
    return notes
