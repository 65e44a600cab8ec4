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
a time. Accepted runs land in `<site-data>/<team>/` (a runs folder with submission.json, normal
permissions), replacing that team's previous submission: the new folder is built next to it and swapped
in by rename. The swap and the site rebuild (`--site`) hold a lock on `<site-data>/.lock`, so concurrent
adds take turns and the last rebuild lists every accepted team.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.names import remove_owned_folder
from harness.runs.manifest import now_iso
from leaderboard.atomic import (
    clean_stale,
    folder_lock,
    marked_by_harness,
    remove_replaced,
    storage,
    swap_in,
    work_folder,
)
from leaderboard.bundle import BUNDLE_FILE, SUBMISSION_FILE, read_bundle, write_bundle
from leaderboard.verify import AcceptedRun, verify_run

if TYPE_CHECKING:
    from leaderboard.site import SiteSummary

__all__ = ["AcceptedRun", "AddResult", "accepted_roots", "add_bundle", "write_bundle"]

PURPOSE = "leaderboard submission"  # owner marker (harness.names) of a team folder and its work folder
_STAGING = "submission"  # work folders are .submission.incoming-<pid>-<random> in the site-data folder


@dataclass(frozen=True)
class AddResult:
    team: str
    folder: Path
    bundle_sha256: str
    runs: tuple[AcceptedRun, ...]
    replaced: bool
    site: SiteSummary | None = None  # the rebuilt site, when asked for

    def describe(self) -> str:
        head = (
            f"accepted bundle {self.bundle_sha256[:12]} from team {self.team}: {len(self.runs)} run(s) "
            f"in {self.folder}" + (" (replaces the team's previous submission)" if self.replaced else "")
        )
        lines = [head]
        for run in self.runs:
            value = "n/a" if run.value is None else f"{run.value:.4f}"
            check = "re-scored from responses" if run.rescored else f"NOT re-scored: {run.note}"
            lines.append(
                f"  {run.checkpoint}  {run.suite}  {run.primary}={value}  n={run.n_samples}  ({check})"
            )
        return "\n".join(lines)


def add_bundle(
    bundle: Path,
    site_data: Path,
    site: Path | None = None,
    on_accepted: Callable[[AddResult], object] | None = None,
) -> AddResult:
    """Verify a bundle, file its runs under `site_data/<team>/`, and rebuild `site` from every team.
    `on_accepted` hears of the acceptance before the site is rebuilt (the CLI prints it)."""
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
        team = str(meta["team"])
        record = {"team": team, "bundle_sha256": contents.sha256, "accepted_at": now_iso(),
                  "harness_version": meta["harness_version"], "created_at": meta["created_at"]}  # fmt: skip
        _write(incoming / SUBMISSION_FILE, json.dumps(record, indent=2) + "\n")
        _write(incoming / BUNDLE_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        final = site_data / team
        with folder_lock(site_data):
            replaced = final.exists() or final.is_symlink()
            if replaced and not marked_by_harness(final, PURPOSE, SUBMISSION_FILE):
                raise UsageError(
                    f"{final} exists and was not made by `harness leaderboard add`, so it is left untouched.",
                    "Move it away, or keep accepted submissions in a folder of their own.",
                )
            try:
                old = swap_in(incoming, final)
            except OSError as error:
                raise storage(error, final, "move the accepted runs to") from None
            remove_replaced(old, PURPOSE, SUBMISSION_FILE)
            result = AddResult(team, final, contents.sha256, runs, replaced)
            if on_accepted is not None:
                on_accepted(result)
            if site is not None:
                from leaderboard.site import build_site

                result = replace(result, site=build_site(accepted_roots(site_data), site, None))
    finally:
        if incoming.exists() and marked_by_harness(incoming, PURPOSE):
            remove_owned_folder(incoming, PURPOSE)  # a rejected bundle's files
    return result


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
