"""Writing `<site-data>/<team>/spot_check.json` (the format and its reader are harness.runs.provenance).

A spot check names the runs it checked with the sha256 of their samples.jsonl. It is written only while
the team's accepted folder holds exactly those responses, and `add` carries it into the team's new folder
only while it still does: a badge never outlives the responses it vouches for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from harness.errors import DataError, UsageError
from harness.runs.provenance import SPOT_CHECK_FILE, SpotCheck, read_spot_checks, spot_check_record
from harness.runs.store import SAMPLES
from leaderboard.atomic import folder_lock, storage

_SUBMISSION_FILE = "submission.json"  # leaderboard.bundle.SUBMISSION_FILE (not imported: no cycle)


def samples_sha256(run_dir: Path) -> str | None:
    path = run_dir / SAMPLES
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def still_holds(team_root: Path, check: SpotCheck) -> bool:
    """The team folder holds every run the check names, with the same responses."""
    return bool(check.runs) and all(
        samples_sha256(team_root / relative) == sha for relative, sha in check.runs.items()
    )


def write_spot_checks(team_root: Path, checks: Mapping[str, SpotCheck]) -> Path:
    """spot_check.json replaced in one rename (a reader sees the old file or the new one)."""
    path = team_root / SPOT_CHECK_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(spot_check_record(checks), handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise storage(error, path, "write") from None
    return path


def carry_spot_checks(old_root: Path, new_root: Path) -> None:
    """Into a team's new folder (not yet swapped in), the old folder's checks whose runs it still holds."""
    try:
        checks = read_spot_checks(old_root)
    except DataError:
        return  # an unreadable file vouches for nothing
    kept = {ref: check for ref, check in checks.items() if still_holds(new_root, check)}
    if kept:
        write_spot_checks(new_root, kept)


def record_spot_check(site_data: Path, team: str, check: SpotCheck) -> Path:
    """Add `check` to the team's spot_check.json, under the site-data lock that `add` takes."""
    team_root = site_data / team
    with folder_lock(site_data):
        if not (team_root / _SUBMISSION_FILE).is_file():
            raise UsageError(
                f"Team {team} has no accepted submission in {site_data}.",
                "Add the bundle first (harness leaderboard add BUNDLE --site-data DIR), then verify it.",
            )
        if not still_holds(team_root, check):
            raise UsageError(
                f"The accepted runs of '{check.checkpoint}' in {team_root} are not the bundle's (another "
                "bundle of the team was added since, or this one never was).",
                "Verify the bundle that was accepted last, or add this one first; the result was not written.",
            )
        try:
            checks = dict(read_spot_checks(team_root))
        except DataError:
            checks = {}  # replaced by a well-formed file
        checks[check.checkpoint] = check
        return write_spot_checks(team_root, checks)
