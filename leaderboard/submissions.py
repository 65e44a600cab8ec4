"""Class submissions: `harness leaderboard submit` writes a bundle, `harness leaderboard add` verifies it.

A bundle is a zip holding, for each run, exactly `runs/<checkpoint>/<suite>@<version>/<hash>/` with
manifest.json, samples.jsonl and metrics.json, plus `bundle.json` (team, harness version, the sha256 of
every file, the metrics each run claims). Nothing else goes in: no response cache, no environment.

`add` trusts nothing in the bundle. It rejects, naming the file, run, metric or sample ids:
- a malformed zip or bundle.json, a path that is absolute or climbs out (zip-slip), a duplicated entry;
- a file whose sha256 differs from bundle.json, a file missing from or not listed in bundle.json;
- a run that is not complete, a suite that is not registered, a suite version, pinned settings or
  settings hash other than those of the registered suite, data other than the suite's data;
- a sample set that is not exactly the suite's samples for the run's --limit (missing, extra, repeated);
- responses that do not answer the pinned prompts (request keys), per-sample scores that the suite's own
  scorer does not reproduce from the stored responses (skipped, and said, for model judges), and claimed
  metrics that differ from the metrics recomputed from the per-sample records (tolerance 1e-9).
Memory stays bounded whatever a bundle holds (see leaderboard.bundle and leaderboard.verify): counts and
sizes are checked before reading, files stream to disk through byte limits, samples are parsed a line at
a time. Runs of replayed responses (`replay:`) are refused unless allowed. Accepted runs land in
`<site-data>/<team>/` (a runs folder with submission.json, normal permissions), replacing that team's
previous submission (the rows it loses are reported), or with `merge` only its runs of the rows the new
bundle holds: the new folder is built next to it and swapped in by rename. The swap and the site rebuild (`--site`) hold a lock on `<site-data>/.lock`, so concurrent
adds take turns and the last rebuild lists every accepted team.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkpoints import redact_reference
from harness.errors import StorageError, UsageError
from harness.names import remove_owned_folder
from harness.runs.manifest import Manifest, now_iso
from harness.runs.provenance import is_replay
from harness.runs.store import MANIFEST, find_runs, read_json
from leaderboard.atomic import (
    clean_stale,
    folder_lock,
    marked_by_harness,
    remove_replaced,
    storage,
    swap_in,
    work_folder,
)
from leaderboard.bundle import BUNDLE_FILE, SUBMISSION_FILE, read_bundle, reject, write_bundle
from leaderboard.class_config import CLASS_CONFIG_FILE, ClassConfig, load_class_config
from leaderboard.spot_check_file import carry_spot_checks
from leaderboard.verify import AcceptedRun, verify_run
from leaderboard.verify_checks import load_manifest

if TYPE_CHECKING:
    from leaderboard.site import SiteSummary

__all__ = ["AcceptedRun", "AddResult", "Row", "accepted_roots", "add_bundle", "team_runs", "write_bundle"]

PURPOSE = "leaderboard submission"  # owner marker (harness.names) of a team folder and its work folder
_STAGING = "submission"  # work folders are .submission.incoming-<pid>-<random> in the site-data folder


@dataclass(frozen=True, order=True)
class Row:
    """One leaderboard row's cell: a checkpoint's runs of one suite."""

    checkpoint: str
    suite: str

    def describe(self) -> str:
        return f"{redact_reference(self.checkpoint)} x {self.suite}"


@dataclass(frozen=True)
class AddResult:
    team: str
    folder: Path
    bundle_sha256: str
    runs: tuple[AcceptedRun, ...]
    replaced: bool
    site: SiteSummary | None = None  # the rebuilt site, when asked for
    removed: tuple[Row, ...] = ()  # the team's earlier rows the new bundle does not hold, now gone
    kept: tuple[Row, ...] = ()  # with --merge: those rows, kept
    replayed: tuple[str, ...] = ()  # runs (bundle paths) of replayed responses, accepted with --allow-replay

    def describe(self) -> str:
        if self.kept:
            how = f" (merged into the team's previous submission, which keeps {len(self.kept)} other row(s))"
        elif self.replaced:
            how = " (replaces the team's previous submission)"
        else:
            how = ""
        lines = [
            f"accepted bundle {self.bundle_sha256[:12]} from team {self.team}: {len(self.runs)} run(s) "
            f"in {self.folder}{how}"
        ]
        for run in self.runs:
            value = "n/a" if run.value is None else f"{run.value:.4f}"
            check = "re-scored from responses" if run.rescored else f"NOT re-scored: {run.note}"
            replay = "  [replayed responses, not a model's]" if run.path in self.replayed else ""
            lines.append(
                f"  {run.checkpoint}  {run.suite}  {run.primary}={value}  n={run.n_samples}  ({check}){replay}"
            )
        if self.removed:
            lines.append(
                f"removed {len(self.removed)} row(s) of the team's previous submission that this bundle does "
                "not hold (add it again with --merge to keep them):"
            )
            lines.extend(f"  {row.describe()}" for row in self.removed)
        if self.kept:
            lines.append("kept from the team's previous submission:")
            lines.extend(f"  {row.describe()}" for row in self.kept)
        return "\n".join(lines)


def add_bundle(
    bundle: Path,
    site_data: Path,
    site: Path | None = None,
    on_accepted: Callable[[AddResult], object] | None = None,
    *,
    allow_replay: bool = False,
    merge: bool = False,
    class_config: ClassConfig | None = None,
) -> AddResult:
    """Verify a bundle, file its runs under `site_data/<team>/`, and rebuild `site` from every team.
    `on_accepted` hears of the acceptance before the site is rebuilt (the CLI prints it).

    The team's previous submission is replaced; with `merge`, only its runs of the rows (checkpoint x
    suite) the new bundle holds are, and its other runs are kept. Runs of replayed responses (`replay:`)
    are refused unless `allow_replay`. The site ranks by `class_config`, else by `site_data/leaderboard.yaml`
    when the staff put one there (read before anything is accepted: a bad one refuses the add)."""
    if class_config is None and (site_data / CLASS_CONFIG_FILE).is_file():
        class_config = load_class_config(site_data / CLASS_CONFIG_FILE)
    if not bundle.is_file():
        raise UsageError(
            f"The bundle {bundle} does not exist.", "Pass the zip made by `harness leaderboard submit`."
        )
    try:
        site_data.mkdir(parents=True, exist_ok=True)
        clean_stale(site_data / _STAGING, (PURPOSE,))  # work folders of killed adds
        incoming = work_folder(site_data / _STAGING, PURPOSE, "incoming")
    except OSError as error:
        raise storage(error, site_data, "write to") from None
    try:
        contents = read_bundle(bundle, incoming)
        meta = contents.meta
        runs = tuple(verify_run(run, contents.files) for run in meta["runs"])
        replayed = _replayed(runs, contents.files)
        if replayed and not allow_replay:
            raise reject(
                f"{len(replayed)} run(s) hold replayed responses (a replay: file), not a model's: "
                f"{', '.join(replayed[:10])}{' ...' if len(replayed) > 10 else ''}.",
                "Ask the team for runs of their checkpoint, or pass --allow-replay to accept these; the "
                "leaderboard marks them as replayed.",
            )
        team = str(meta["team"])
        record = {"team": team, "bundle_sha256": contents.sha256, "accepted_at": now_iso(),
                  "harness_version": meta["harness_version"], "created_at": meta["created_at"]}  # fmt: skip
        _write(incoming / BUNDLE_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        final = site_data / team
        with folder_lock(site_data):
            replaced = final.exists() or final.is_symlink()
            if replaced and not marked_by_harness(final, PURPOSE, SUBMISSION_FILE):
                raise UsageError(
                    f"{final} exists and was not made by `harness leaderboard add`, so it is left untouched.",
                    "Move it away, or keep accepted submissions in a folder of their own.",
                )
            new_rows = {Row(r.checkpoint, r.suite) for r in runs}
            earlier = team_runs(final) if replaced else {}
            left_out = tuple(sorted({row for row in earlier.values() if row not in new_rows}))
            if merge and left_out:
                _copy_runs(final, incoming, [p for p, row in earlier.items() if row not in new_rows])
                record["merged_into"] = _read_record(final / SUBMISSION_FILE)
            _write(incoming / SUBMISSION_FILE, json.dumps(record, indent=2) + "\n")
            if replaced:
                carry_spot_checks(final, incoming)
            try:
                old = swap_in(incoming, final)
            except OSError as error:
                raise storage(error, final, "move the accepted runs to") from None
            remove_replaced(old, PURPOSE, SUBMISSION_FILE)
            result = AddResult(
                team, final, contents.sha256, runs, replaced,
                removed=() if merge else left_out, kept=left_out if merge else (), replayed=replayed,
            )  # fmt: skip
            if on_accepted is not None:
                on_accepted(result)
            if site is not None:
                from leaderboard.site import build_site

                built = build_site(
                    accepted_roots(site_data), site, None, changed_teams=[team], class_config=class_config
                )
                result = replace(result, site=built)
    finally:
        if incoming.exists() and marked_by_harness(incoming, PURPOSE):
            remove_owned_folder(incoming, PURPOSE)  # a rejected bundle's files
    return result


def _replayed(runs: tuple[AcceptedRun, ...], files: Mapping[str, Path]) -> tuple[str, ...]:
    """The bundle paths of runs whose manifests say their responses were replayed from a file."""
    found = []
    for run in runs:
        path = f"{run.path}/{MANIFEST}"
        if is_replay(load_manifest(path, files[path])):
            found.append(run.path)
    return tuple(found)


def team_runs(team_root: Path) -> dict[Path, Row]:
    """A team folder's accepted runs (relative path -> row), from their manifests."""
    rows: dict[Path, Row] = {}
    for run_dir in find_runs(team_root):
        manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
        rows[run_dir.relative_to(team_root)] = Row(manifest.checkpoint, manifest.suite)
    return rows


def _copy_runs(source: Path, target: Path, runs: list[Path]) -> None:
    """The kept runs of the previous submission, copied (the previous folder stays intact until the swap)."""
    for relative in runs:
        try:
            shutil.copytree(source / relative, target / relative, symlinks=True)
        except (OSError, shutil.Error) as error:
            raise StorageError(
                f"Cannot copy the kept run {source / relative} into {target}: {error}.",
                "Free space or make the folder writable, then add again (the accepted runs are unchanged).",
            ) from None


def _read_record(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # an earlier record that cannot be read is history only; the runs are what count


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise storage(error, path, "write") from None


def accepted_roots(site_data: Path) -> list[Path]:
    """The accepted teams' runs folders (hidden work folders of an add in progress are skipped)."""
    if not site_data.is_dir():
        return []
    return sorted(
        p
        for p in site_data.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / SUBMISSION_FILE).is_file()
    )
