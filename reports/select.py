"""What a report covers: its arguments (run folders, or checkpoint references) resolved to runs.

An argument is, in this order:
- a folder: a run folder (it holds `manifest.json`), or any folder holding runs (a checkpoint's folder,
  a whole runs folder), read as it is;
- a registry name (`dpo-1`) or `STAGE:TAG` (`sft:latest`): the checkpoint the registry names;
- any other checkpoint reference (`embedded`, `replay:F`, `hf:PATH`, ...): matched against the references
  and registry names of the checkpoints that have runs in the runs folder (`--runs`).

Each checkpoint then contributes its chosen run per suite (see harness.runs.catalog). A reference that has
no runs is an error that lists the checkpoints that do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.runs.catalog import (
    Catalog,
    CheckpointView,
    RunView,
    build_catalog,
    load_run,
    load_runs,
    registered_entries,
    with_registered,
)
from harness.runs.store import MANIFEST


@dataclass(frozen=True)
class Selection:
    catalog: Catalog  # built over the selected runs only
    order: tuple[CheckpointView, ...]  # the catalog's checkpoints in argument order


def _key(run: RunView) -> tuple[str | None, str]:
    return (run.team, run.manifest.checkpoint)


def _runs_in_folder(folder: Path, runs_root: Path) -> list[RunView]:
    if (folder / MANIFEST).is_file():  # one run folder: its lineage comes from the runs folder's registry
        entries = registered_entries(runs_root, submitted=False) if runs_root.is_dir() else {}
        return with_registered([load_run(folder.resolve())], entries)
    runs = load_runs([folder.resolve()])
    if not runs:
        raise UsageError(
            f"The folder {folder} holds no runs (no {MANIFEST} under it).",
            "Pass run folders, runs folders made by `harness eval --out`, or checkpoint references.",
        )
    return runs


def _known_text(catalog: Catalog, root: Path) -> str:
    if not catalog.checkpoints:
        return f"There are no runs under {root}; make some with: harness eval --checkpoint REF --out {root}"
    lines = [f"Checkpoints with runs under {root}:"]
    for checkpoint in catalog.checkpoints:
        name = "" if checkpoint.label == checkpoint.reference else f"{checkpoint.label} = "
        suites = ", ".join(sorted(checkpoint.runs))
        lines.append(f"  {name}{checkpoint.reference}  ({suites})")
    return "\n".join(lines)


def _match(text: str, catalog: Catalog, root: Path) -> list[CheckpointView]:
    from harness.checkpoints import RegistryRef, parse_checkpoint
    from harness.lineage import CheckpointRegistry, registry_path

    registry = CheckpointRegistry(registry_path(root))
    try:  # a reference with credentials in its URL is stored (and so matched and shown) without them
        text = parse_checkpoint(text).raw
    except UsageError:
        pass
    names = {text}
    references = {text}
    entry = registry.by_name(text)
    if entry is None and not any(c.label == text or c.reference == text for c in catalog.checkpoints):
        try:
            ref = parse_checkpoint(text)
        except UsageError:
            ref = None  # neither a name nor a reference: reported below with what does exist
        if isinstance(ref, RegistryRef):
            entry = registry.lookup(ref)  # an unknown STAGE:TAG fails here with the registry's references
    if entry is not None:
        names.add(entry.name)
        references.add(entry.reference)
    found = [c for c in catalog.checkpoints if c.label in names or c.reference in references]
    if not found:
        what = f"'{text}'" + ("" if entry is None else f" (registered as {entry.name} = {entry.reference})")
        raise UsageError(f"No runs of {what} under {root}.", _known_text(catalog, root))
    return found


def select(arguments: Sequence[str], runs_root: Path) -> Selection:
    """Resolve report arguments to one catalog of runs, keeping the order in which they were named."""
    if not arguments:
        raise UsageError(
            "Name at least one run folder or checkpoint.", "e.g. harness report sft:latest dpo:latest"
        )
    root_catalog: Catalog | None = None
    chosen: dict[Path, RunView] = {}
    order: list[tuple[str | None, str]] = []
    for text in arguments:
        path = Path(text).expanduser()
        if path.is_dir():
            runs = _runs_in_folder(path, runs_root)
        else:
            if root_catalog is None:
                root_catalog = (
                    build_catalog(load_runs([runs_root])) if runs_root.is_dir() else build_catalog([])
                )
            runs = [run for c in _match(text, root_catalog, runs_root) for run in c.runs.values()]
        for run in runs:
            chosen.setdefault(run.run_dir, run)
            if _key(run) not in order:
                order.append(_key(run))
    catalog = build_catalog(list(chosen.values()))
    by_key = {(c.team, c.reference): c for c in catalog.checkpoints}
    return Selection(catalog=catalog, order=tuple(by_key[key] for key in order if key in by_key))
