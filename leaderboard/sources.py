"""What `harness leaderboard submit` bundles: each argument is a run folder, a runs folder, or a checkpoint
reference (`embedded`, `hf:DIR`, `sft:latest`, ...) whose complete runs are taken from the runs folder.

A path that exists wins over a reference of the same spelling. A registry reference `STAGE:TAG` resolves
through the registry of the runs folder (harness.lineage), like `harness eval --checkpoint STAGE:TAG`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.checkpoints import VALID_FORMS, redact_reference
from harness.errors import UsageError
from harness.runs.catalog import registered_entries
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, find_runs, read_json, runs_root

ACCEPTED_FORMS = (
    "Pass what to submit as any of:\n"
    "  RUN_FOLDER                            one run (runs/<checkpoint>/<suite>@<version>/<hash>)\n"
    "  RUNS_FOLDER                           every run under it (harness eval --runs)\n"
    "  CHECKPOINT                            every complete run of that checkpoint in --runs DIR:\n"
    f"{VALID_FORMS}"
)


def _manifest(run_dir: Path) -> Manifest:
    return Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)


def runs_of_checkpoint(text: str, root: Path) -> list[Path]:
    """Every complete run in `root` whose manifest names the checkpoint `text` resolves to."""
    from harness.lineage import resolve_checkpoint

    ref, _ = resolve_checkpoint(text, root)
    manifests = {run: _manifest(run) for run in find_runs(root)}
    runs = [run for run, manifest in manifests.items() if manifest.checkpoint == ref.raw]
    complete = [run.resolve() for run in runs if manifests[run].status == "complete"]
    shown = redact_reference(text)
    resolved = "" if ref.raw == text.strip() else f" ({redact_reference(ref.raw)})"
    if not complete:
        unfinished = f"; {len(runs)} of its runs there are not complete" if runs else ""
        raise UsageError(
            f"No complete run of the checkpoint '{shown}'{resolved} in the runs folder {root}{unfinished}.",
            f"Evaluate it first (harness eval --checkpoint {shown} --runs {root}), or name the runs folder "
            "that holds its runs with --runs DIR.",
        )
    return complete


def resolve_source(text: str, root: Path) -> list[Path]:
    """One argument of `submit`: a run folder, a runs folder, or a checkpoint reference."""
    path = Path(text).expanduser()
    if (path / MANIFEST).is_file():
        return [path.resolve()]
    if path.is_dir():
        runs = find_runs(path)
        if not runs:
            raise UsageError(f"{path} holds no runs.", ACCEPTED_FORMS)
        return [r.resolve() for r in runs]
    try:
        return runs_of_checkpoint(text, root)
    except UsageError as error:
        if "Invalid --checkpoint" not in error.problem:
            raise  # a reference, but no runs of it (or not in the registry): that error says what to do
    raise UsageError(
        f"'{redact_reference(text)}' is not a run folder, a runs folder or a checkpoint reference.",
        ACCEPTED_FORMS,
    )


def resolve_sources(sources: Sequence[str | Path], runs: Path | str | None = None) -> list[Path]:
    """The run folders (sorted, each once) that the arguments of `submit` name."""
    root = runs_root(None if runs is None else str(runs))
    found: list[Path] = []
    for text in sources:
        found.extend(resolve_source(str(text), root))
    return sorted(set(found))


def registered_lineage(
    root: Path, cache: dict[Path, Mapping[str, Mapping[str, Any]]]
) -> Mapping[str, Mapping[str, Any]]:
    """The registry entries of a runs folder by reference: the lineage a bundle's manifests carry is the
    registry's now (the site has no other way to learn it), not what it was when the run began."""
    if root not in cache:
        cache[root] = registered_entries(root, submitted=False)
    return cache[root]
