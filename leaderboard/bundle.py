"""The submission bundle format: `harness leaderboard submit` writes it; reading it back checks the zip
itself (schema, paths, sha256 of every file) before leaderboard.submissions verifies the runs inside.

A bundle is a zip holding, for each run, exactly `runs/<checkpoint>/<suite>@<version>/<hash>/` with
manifest.json, samples.jsonl and metrics.json, plus `bundle.json` (team, harness version, the sha256 of
every file, the metrics each run claims). Nothing else goes in: no response cache, no environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from harness.checkpoints import redact_reference
from harness.errors import DataError, UsageError
from harness.names import check_name, is_valid_name
from harness.readers import MiB, parse_json
from harness.runs.manifest import Manifest, now_iso
from harness.runs.provenance import is_replay
from harness.runs.store import MANIFEST, METRICS, SAMPLES, read_json
from harness.version import __version__
from leaderboard.atomic import storage
from leaderboard.sources import registered_lineage, resolve_sources
from leaderboard.zipcheck import CHUNK, ZIP_ERRORS, ZipProblem, central_directory, read_entry

BUNDLE_FILE = "bundle.json"
BUNDLE_SCHEMA = "harness-leaderboard-bundle"
BUNDLE_SCHEMA_VERSION = 1
SUBMISSION_FILE = "submission.json"  # what harness.runs.catalog reads the team from
RUN_FILES = (MANIFEST, SAMPLES, METRICS)
TOLERANCE = 1e-9
# Limits sized to what real bundles hold (a run's manifest ~2 KB, metrics ~2 KB, samples ~1-3 KB per
# sample with n=1: a full GSM8K run ~4 MB; bundle.json ~1 KB per run), with wide margins. Memory stays
# bounded well below them: files stream to disk and samples are parsed a line at a time.
MAX_RUNS = 300
MAX_ENTRIES = 2000  # 3 files per run + bundle.json, and folder entries some zip tools add
MAX_NAME_CHARS = 512
MAX_DIRECTORY_BYTES = 2 * MiB
MAX_ZIP_BYTES = 512 * MiB
MAX_UNPACKED_BYTES = 512 * MiB
MAX_BUNDLE_JSON_BYTES = 4 * MiB
FILE_LIMITS = {MANIFEST: 1 * MiB, METRICS: 4 * MiB, SAMPLES: 64 * MiB}
_CHECKPOINT_DIR = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")  # CheckpointRef.slug(), never hidden
_SUITE_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}@[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}")
_HASH_DIR = re.compile(r"[0-9a-f]{6,64}")
REBUILD_HINT = "Re-run the evaluation (harness eval) and submit again with `harness leaderboard submit`."
REPLAY_HINT = (
    "Leave them out (submit the checkpoint's runs: harness leaderboard submit CHECKPOINT), or pass "
    "--allow-replay to submit them anyway; the leaderboard marks them as replayed."
)
REMAKE_HINT = "Make the bundle with `harness leaderboard submit` and do not edit it afterwards."


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_team(team: str) -> str:
    """The team name, if it follows the shared name rule (harness.names); else a UsageError (exit 2)."""
    return check_name(team, "team name")


# ---------------------------------------------------------------------------------------------- submit


def write_bundle(
    runs: Sequence[Path | str],
    team: str,
    out: Path | None,
    *,
    runs_root: Path | str | None = None,
    allow_replay: bool = False,
) -> Path:
    """Bundle the runs that `runs` name (run folders, runs folders, checkpoint references resolved in
    `runs_root`; see leaderboard.sources). `replay:` runs are refused unless `allow_replay`."""
    check_team(team)
    entries: dict[str, bytes] = {}
    claimed: list[dict[str, Any]] = []
    origin: dict[str, Path] = {}
    replayed: list[str] = []
    registries: dict[Path, Mapping[str, Mapping[str, Any]]] = {}
    for run_dir in resolve_sources(runs, runs_root):
        manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
        if manifest.status != "complete":
            raise UsageError(
                f"The run {run_dir} is not complete (status '{manifest.status}').",
                "Finish it by re-running the same `harness eval` command, or leave it out of the bundle.",
            )
        if is_replay(manifest):
            replayed.append(f"{run_dir} ({redact_reference(manifest.checkpoint)[:120]})")
        for name in RUN_FILES:
            if not (run_dir / name).is_file():
                raise UsageError(f"The run {run_dir} has no {name}.", "Re-run `harness eval` to finish it.")
        relative = "runs/" + "/".join(run_dir.parts[-3:])  # <checkpoint>/<suite>@<version>/<hash>
        if relative in origin:
            raise UsageError(
                f"{run_dir} and {origin[relative]} are the same run ({relative}) from two runs folders.",
                "Submit one of them.",
            )
        origin[relative] = run_dir
        for name in RUN_FILES:
            entries[f"{relative}/{name}"] = (run_dir / name).read_bytes()
        registered = registered_lineage(run_dir.parents[2], registries).get(manifest.checkpoint)
        if registered is not None and registered != manifest.lineage:  # registered after it was evaluated
            record = replace(manifest, lineage=registered).to_record()
            entries[f"{relative}/{MANIFEST}"] = (
                json.dumps(record, indent=2, ensure_ascii=False) + "\n"
            ).encode()
        metrics = read_json(run_dir / METRICS, "metrics file")
        claimed.append({
            "path": relative,
            "suite": manifest.suite,
            "suite_version": manifest.suite_version,
            "checkpoint": manifest.checkpoint,
            "settings_hash": manifest.settings_hash,
            "n_samples": manifest.n_samples,
            "primary": metrics.get("primary"),
            "metrics": metrics.get("metrics"),
        })  # fmt: skip
    if replayed and not allow_replay:
        raise UsageError(
            f"{len(replayed)} run(s) hold replayed responses (a replay: file), not a model's: "
            + "; ".join(replayed[:10])
            + (" ..." if len(replayed) > 10 else "")
            + ".",
            REPLAY_HINT,
        )
    bundle = {
        "schema": BUNDLE_SCHEMA,
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "team": team,
        "created_at": now_iso(),
        "harness_version": __version__,
        "files": [
            {"path": p, "sha256": sha256_hex(data), "size": len(data)} for p, data in sorted(entries.items())
        ],
        "runs": claimed,
    }
    target = (out or Path(f"{team}-bundle.zip")).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # Only the listed run files and bundle.json: nothing from the environment or the cache.
        for path, data in sorted(entries.items()):
            archive.writestr(path, data)
        archive.writestr(BUNDLE_FILE, json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target


def reject(problem: str, fix: str = REBUILD_HINT) -> DataError:
    return DataError(f"Bundle rejected: {problem}", fix)


def safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and "\\" not in name
        and not name.startswith("/")
        and not re.match(r"^[A-Za-z]:", name)
        and all(part not in ("", ".", "..") for part in name.split("/"))
        and not path.is_absolute()
    )


@dataclass(frozen=True)
class Bundle:
    meta: dict[str, Any]  # bundle.json, schema-checked
    files: Mapping[str, Path]  # bundle path (runs/...) -> the extracted file, sha256 verified
    sha256: str  # of the zip itself


def _limit_of(name: str) -> int | None:
    """The most bytes a real bundle's file of this name holds (None: not a bundle file; never read)."""
    if name == BUNDLE_FILE:
        return MAX_BUNDLE_JSON_BYTES
    return FILE_LIMITS.get(name.rsplit("/", 1)[-1]) if name.startswith("runs/") else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_directory(bundle: Path) -> None:
    """Size, entry count and central-directory size, from the end of the file, before zipfile parses it."""
    size = bundle.stat().st_size
    if size > MAX_ZIP_BYTES:
        raise reject(f"{bundle} is {size:,} bytes; a bundle is at most {MAX_ZIP_BYTES:,}.")
    try:
        with bundle.open("rb") as handle:
            directory = central_directory(handle)
    except ZipProblem as problem:
        raise reject(f"{bundle} is not a zip file ({problem}).", REMAKE_HINT) from None
    except (OSError, struct.error) as error:
        raise reject(f"{bundle} is not a zip file ({type(error).__name__}: {error}).", REMAKE_HINT) from None
    if directory.entries > MAX_ENTRIES:
        raise reject(
            f"{bundle} holds {directory.entries:,} entries; a bundle holds at most {MAX_ENTRIES:,} "
            f"(3 files per run, at most {MAX_RUNS} runs, and bundle.json).",
            REMAKE_HINT,
        )
    if directory.size > MAX_DIRECTORY_BYTES:
        raise reject(
            f"{bundle} has a {directory.size:,}-byte zip directory; a bundle's is at most "
            f"{MAX_DIRECTORY_BYTES:,}.",
            REMAKE_HINT,
        )


def _check_entries(bundle: Path, infos: Sequence[zipfile.ZipInfo]) -> list[str]:
    """Names, methods and declared sizes of every entry, before any is read; the file names."""
    if len(infos) > MAX_ENTRIES:
        raise reject(f"{bundle} holds more than {MAX_ENTRIES:,} entries.", REMAKE_HINT)
    names = [i.filename for i in infos]
    unsafe = [n for n in names if not safe_name(n) or len(n) > MAX_NAME_CHARS]
    if unsafe:
        raise reject(
            f"entries {[n[:120] for n in unsafe[:5]]} have absolute paths or climb out of the bundle (zip-slip).",
            "A bundle holds only runs/... and bundle.json; make it with `harness leaderboard submit`.",
        )
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        raise reject(f"entries {repeated[:5]} appear more than once in the zip.", REMAKE_HINT)
    odd = [i.filename for i in infos if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)]
    if odd:  # bzip2/lzma could ask for large decoder memory; submit writes deflate only
        raise reject(f"entries {odd[:5]} use a compression method other than deflate.", REMAKE_HINT)
    if any(i.flag_bits & 0x1 for i in infos):
        raise reject("it holds encrypted entries.", REMAKE_HINT)
    for info in infos:
        limit = _limit_of(info.filename)
        if limit is not None and info.file_size > limit:
            raise reject(
                f"{info.filename} unpacks to {info.file_size:,} bytes; a bundle's "
                f"{info.filename.rsplit('/', 1)[-1]} is at most {limit:,}.",
                REMAKE_HINT,
            )
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise reject(f"it unpacks to {total:,} bytes, more than {MAX_UNPACKED_BYTES:,}.", REMAKE_HINT)
    return [n for n in names if not n.endswith("/")]


def read_bundle(bundle: Path, into: Path) -> Bundle:
    """Check a bundle and extract its listed files into `into` (runs/<c>/<s>/<h>/F -> into/<c>/<s>/<h>/F).

    Memory stays bounded whatever the zip holds: counts and declared sizes are checked before reading,
    every entry streams through a byte limit to disk, bundle.json is parsed depth- and size-bounded."""
    if not bundle.is_file():
        raise UsageError(
            f"The bundle {bundle} does not exist.", "Pass the zip made by `harness leaderboard submit`."
        )
    _check_directory(bundle)
    try:
        archive = zipfile.ZipFile(bundle)
    except ZIP_ERRORS as error:
        raise reject(f"{bundle} is not a zip file ({type(error).__name__}: {error}).", REMAKE_HINT) from None
    with archive:
        names = _check_entries(bundle, archive.infolist())
        if BUNDLE_FILE not in names:
            raise reject(f"{BUNDLE_FILE} is missing from {bundle}.", REMAKE_HINT)
        raw = bytearray()
        _read(bundle, archive, BUNDLE_FILE, raw.extend)
        try:
            meta = parse_json(bytes(raw), BUNDLE_FILE, "bundle file", fix=REMAKE_HINT)
        except DataError as error:
            raise reject(error.problem, REMAKE_HINT) from None
        del raw
        listed = check_schema(meta)
        present = set(names) - {BUNDLE_FILE}
        extra = sorted(present - set(listed))
        missing = sorted(set(listed) - present)
        if extra:
            raise reject(f"files {extra[:5]} are in the zip but not listed in {BUNDLE_FILE}.", REMAKE_HINT)
        if missing:
            raise reject(
                f"files {missing[:5]} are listed in {BUNDLE_FILE} but missing from the zip.", REMAKE_HINT
            )
        files: dict[str, Path] = {}
        for path, expected in sorted(listed.items()):
            target = into.joinpath(*path.split("/")[1:])
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = target.open("wb")
            except OSError as error:
                raise storage(error, target, "write") from None
            with handle:
                actual = _read(bundle, archive, path, _writer(handle, target))
            if actual != expected:
                raise reject(
                    f"{path} was altered: its sha256 is {actual}, {BUNDLE_FILE} says {expected}.",
                    "Files must not be edited after `harness leaderboard submit`; re-run and submit again.",
                )
            files[path] = target
    return Bundle(meta, files, _file_sha256(bundle))


def _writer(handle: BinaryIO, target: Path) -> Callable[[bytes], object]:
    """handle.write, its failures (a full disk) a StorageError rather than "the zip cannot be read"."""

    def write(chunk: bytes) -> None:
        try:
            handle.write(chunk)
        except OSError as error:
            raise storage(error, target, "write") from None

    return write


def _read(bundle: Path, archive: zipfile.ZipFile, name: str, sink: Callable[[bytes], object]) -> str:
    limit = _limit_of(name)
    if limit is None:  # check_schema admits only bundle files; belt and braces
        raise reject(f"{name} is not a file a bundle holds.", REMAKE_HINT)
    try:
        digest, _ = read_entry(archive, archive.getinfo(name), limit, sink)
    except ZipProblem as problem:
        raise reject(f"{problem}.", REMAKE_HINT) from None
    except ZIP_ERRORS as error:  # CRC errors, truncated data
        raise reject(f"{bundle} cannot be read ({type(error).__name__}: {error}).", REMAKE_HINT) from None
    return digest


def check_schema(meta: Any) -> dict[str, str]:
    """The listed files (path -> sha256) of a bundle.json whose fields have the right shapes."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise reject(f"{BUNDLE_FILE} {what}.", "Make the bundle with `harness leaderboard submit`.")

    need(isinstance(meta, dict), "is not a JSON object")
    need(
        meta.get("schema") == BUNDLE_SCHEMA, f"has schema {meta.get('schema')!r}, expected '{BUNDLE_SCHEMA}'"
    )
    version = meta.get("schema_version")
    need(
        version == BUNDLE_SCHEMA_VERSION,
        f"has schema_version {version!r}; this harness reads version {BUNDLE_SCHEMA_VERSION}",
    )
    for key in ("team", "created_at", "harness_version"):
        need(isinstance(meta.get(key), str), f"lacks the string field '{key}'")
    need(is_valid_name(meta["team"]), f"names team {meta['team'][:80]!r}, which is not a valid team name")
    files, runs = meta.get("files"), meta.get("runs")
    need(isinstance(files, list) and bool(files), "lacks a non-empty list 'files'")
    need(isinstance(runs, list) and bool(runs), "lacks a non-empty list 'runs'")
    need(len(runs) <= MAX_RUNS, f"lists {len(runs)} runs; a bundle holds at most {MAX_RUNS}")
    listed: dict[str, str] = {}
    for entry in files:
        need(
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str),
            f"has a files entry without string 'path' and 'sha256': {str(entry)[:120]}",
        )
        path = entry["path"]
        need(
            safe_name(path),
            f"lists {path!r}, an absolute path or one that climbs out of the bundle (zip-slip)",
        )
        need(path not in listed, f"lists {path} twice")
        listed[path] = entry["sha256"]
    run_paths = []
    for run in runs:
        need(
            isinstance(run, dict)
            and isinstance(run.get("path"), str)
            and isinstance(run.get("metrics"), dict),
            f"has a runs entry without string 'path' and object 'metrics': {str(run)[:120]}",
        )
        parts = run["path"].split("/")
        need(
            len(parts) == 4
            and parts[0] == "runs"
            and bool(_CHECKPOINT_DIR.fullmatch(parts[1]))
            and parts[1] not in (BUNDLE_FILE, SUBMISSION_FILE)  # the files add writes next to the runs
            and bool(_SUITE_DIR.fullmatch(parts[2]))
            and bool(_HASH_DIR.fullmatch(parts[3])),
            f"has run path {run['path'][:200]!r}, not runs/<ckpt>/<suite>@<v>/<hash>",
        )
        run_paths.append(run["path"])
    need(len(set(run_paths)) == len(run_paths), "lists a run twice")
    expected = {f"{r}/{name}" for r in run_paths for name in RUN_FILES}
    need(
        set(listed) == expected,
        f"lists files {sorted(set(listed) ^ expected)[:5]} that are not exactly the runs' files",
    )
    return listed
