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
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from harness import __version__
from harness.errors import DataError, UsageError
from harness.manifest import Manifest, now_iso
from harness.store import MANIFEST, METRICS, SAMPLES, find_runs, read_json

BUNDLE_FILE = "bundle.json"
BUNDLE_SCHEMA = "harness-leaderboard-bundle"
BUNDLE_SCHEMA_VERSION = 1
SUBMISSION_FILE = "submission.json"  # what leaderboard.catalog reads the team from
RUN_FILES = (MANIFEST, SAMPLES, METRICS)
TOLERANCE = 1e-9
MAX_BUNDLE_BYTES = 2 * 1024**3  # uncompressed; a zip bomb is refused before anything is read
_TEAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
REBUILD_HINT = "Re-run the evaluation (harness eval) and submit again with `harness leaderboard submit`."
REMAKE_HINT = "Make the bundle with `harness leaderboard submit` and do not edit it afterwards."


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_team(team: str) -> None:
    if not _TEAM.fullmatch(team):
        raise UsageError(
            f"The team name '{team}' is not allowed.",
            "Use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit.",
        )


# ---------------------------------------------------------------------------------------------- submit


def run_folders(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        runs = [path] if (path / MANIFEST).is_file() else find_runs(path)
        if not runs:
            raise UsageError(
                f"{path} holds no runs.", "Pass runs folders (harness eval --out) or run folders."
            )
        found.extend(r.resolve() for r in runs)
    return sorted(set(found))


def write_bundle(runs: Sequence[Path], team: str, out: Path | None) -> Path:
    check_team(team)
    entries: dict[str, bytes] = {}
    claimed: list[dict[str, Any]] = []
    origin: dict[str, Path] = {}
    for run_dir in run_folders(runs):
        manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
        if manifest.status != "complete":
            raise UsageError(
                f"The run {run_dir} is not complete (status '{manifest.status}').",
                "Finish it by re-running the same `harness eval` command, or leave it out of the bundle.",
            )
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


def read_bundle(bundle: Path) -> tuple[dict[str, Any], dict[str, bytes], str]:
    """bundle.json, the listed files' bytes (sha256 verified), and the zip's own sha256."""
    if not bundle.is_file():
        raise UsageError(
            f"The bundle {bundle} does not exist.", "Pass the zip made by `harness leaderboard submit`."
        )
    raw = bundle.read_bytes()
    try:
        archive = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as error:
        raise reject(f"{bundle} is not a zip file ({error}).", REMAKE_HINT) from None
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        unsafe = [n for n in names if not safe_name(n)]
        if unsafe:
            raise reject(
                f"entries {unsafe[:5]} have absolute paths or climb out of the bundle (zip-slip).",
                "A bundle holds only runs/... and bundle.json; make it with `harness leaderboard submit`.",
            )
        repeated = sorted(n for n, c in Counter(names).items() if c > 1)
        if repeated:
            raise reject(f"entries {repeated[:5]} appear more than once in the zip.", REMAKE_HINT)
        if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
            raise reject(f"it unpacks to more than {MAX_BUNDLE_BYTES} bytes.")
        if BUNDLE_FILE not in names:
            raise reject(f"{BUNDLE_FILE} is missing from {bundle}.", REMAKE_HINT)
        try:
            meta = json.loads(archive.read(BUNDLE_FILE))
            contents = {n: archive.read(n) for n in names if n != BUNDLE_FILE and not n.endswith("/")}
        except (zipfile.BadZipFile, OSError, ValueError) as error:  # CRC errors, invalid JSON
            raise reject(f"{bundle} cannot be read ({type(error).__name__}: {error}).", REMAKE_HINT) from None
    listed = check_schema(meta)
    extra = sorted(set(contents) - set(listed))
    missing = sorted(set(listed) - set(contents))
    if extra:
        raise reject(f"files {extra[:5]} are in the zip but not listed in {BUNDLE_FILE}.", REMAKE_HINT)
    if missing:
        raise reject(
            f"files {missing[:5]} are listed in {BUNDLE_FILE} but missing from the zip.", REMAKE_HINT
        )
    for path, expected in listed.items():
        actual = sha256_hex(contents[path])
        if actual != expected:
            raise reject(
                f"{path} was altered: its sha256 is {actual}, {BUNDLE_FILE} says {expected}.",
                "Files must not be edited after `harness leaderboard submit`; re-run and submit again.",
            )
    return meta, contents, sha256_hex(raw)


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
    need(bool(_TEAM.fullmatch(meta["team"])), f"names team {meta['team']!r}, which is not a valid team name")
    files, runs = meta.get("files"), meta.get("runs")
    need(isinstance(files, list) and bool(files), "lacks a non-empty list 'files'")
    need(isinstance(runs, list) and bool(runs), "lacks a non-empty list 'runs'")
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
            len(parts) == 4 and parts[0] == "runs",
            f"has run path {run['path']!r}, not runs/<ckpt>/<suite>@<v>/<hash>",
        )
        run_paths.append(run["path"])
    need(len(set(run_paths)) == len(run_paths), "lists a run twice")
    expected = {f"{r}/{name}" for r in run_paths for name in RUN_FILES}
    need(
        set(listed) == expected,
        f"lists files {sorted(set(listed) ^ expected)[:5]} that are not exactly the runs' files",
    )
    return listed
