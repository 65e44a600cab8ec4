"""`harness package CHECKPOINT... --repro OUT.zip`: one zip that holds what a course's reproducibility
deliverable asks for, and that `harness reproduce` verifies and re-runs (reports.repro_check).

The zip (docs/reproducibility.md):
- MANIFEST.json: format and version, created_at, harness version, git revision + dirty flag (+ the
  untracked files carried), the declared subset, the packaged checkpoints and their runs, and the sha256
  and size of every other file;
- code/: the project's files (reports.repro_code), with UNCOMMITTED.diff when the tree is dirty;
- registry/: registry.jsonl, the registry entries of the packaged checkpoints and their ancestors, and
  NAME.config.json, each trained checkpoint's training config as it ran (when its folder still has it);
- runs/<checkpoint>/<suite>@<version>/<hash>/: each run's manifest.json, metrics.json and samples.jsonl
  (the runs folder layout, so `runs/` is a runs folder `harness report` and `harness eval` read);
- commands.sh: every command line, rebuilt from the manifests and the registry; seeds.json; environment.json
  (reports.repro_env); MODEL_CARD.md, metrics.md, examples.md (reports.repro_docs); reproduce.sh.

Bytes are deterministic where the content is: sorted entries, fixed timestamps and permissions (the
report's and the manifest's creation times differ; SOURCE_DATE_EPOCH fixes the latter).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.checkpoints import redact_reference
from harness.errors import UsageError
from harness.runs.catalog import CheckpointView, RunView
from harness.runs.manifest import now_iso
from harness.runs.store import MANIFEST, METRICS, SAMPLES
from harness.version import __version__
from reports.repro_code import PROJECT_ROOT, check_no_secrets, snapshot_code
from reports.repro_docs import report_documents
from reports.repro_env import environment

FORMAT = "harness-repro-package"
FORMAT_VERSION = 1
MANIFEST_FILE = "MANIFEST.json"
REPRODUCE_SCRIPT = "reproduce.sh"
COMMANDS_SCRIPT = "commands.sh"
RUN_FILES = (MANIFEST, METRICS, SAMPLES)
DEFAULT_SUBSET_LIMIT = 50
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: the same bytes on every machine


@dataclass(frozen=True)
class PackagedRun:
    checkpoint: str  # the label (registry name, else the reference)
    reference: str  # concrete, redacted
    suite: str
    path: str  # runs/<checkpoint>/<suite>@<version>/<hash>
    primary: str
    value: float | None
    n_samples: int
    seed: int | None
    command: str  # the `harness eval` line that made it

    def to_record(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint, "reference": self.reference, "suite": self.suite, "path": self.path,
            "primary": self.primary, "value": self.value, "n_samples": self.n_samples, "seed": self.seed,
            "command": self.command,
        }  # fmt: skip


@dataclass(frozen=True)
class PackageResult:
    path: Path
    size_bytes: int
    sha256: str
    files: int
    runs: tuple[PackagedRun, ...]
    subset_limit: int
    git_revision: str | None
    git_dirty: bool | None
    missing_card_fields: tuple[str, ...]


def _redacted(value: Any) -> Any:
    """Every URL-like string with its credentials taken out (registry details, training configs)."""
    if isinstance(value, str):
        return redact_reference(value) if "//" in value else value
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def eval_argv(run: RunView) -> list[str]:
    """The `harness eval` argv that made `run` (harness.gating.collect.eval_command)."""
    from harness.gating.collect import eval_command

    m = run.manifest
    argv = eval_command(redact_reference(m.checkpoint), m.suite, run, Path("runs"))
    return ["harness", *argv]


def _registry(order: Sequence[CheckpointView], runs_root: Path) -> list[dict[str, Any]]:
    """The registry entries of the checkpoints and their ancestors, oldest first; a checkpoint missing
    from the registry contributes the entry its manifests recorded, if any."""
    from harness.lineage import CheckpointRegistry, registry_path

    path = registry_path(runs_root)
    registry = CheckpointRegistry(path) if path.is_file() else None
    found: dict[str, dict[str, Any]] = {}
    for view in order:
        entry = None
        if registry is not None:
            matches = [e for e in registry.entries if e.reference == view.reference]
            entry = registry.by_name(view.label) or (matches[-1] if matches else None)
        if registry is not None and entry is not None:
            for ancestor in registry.lineage(entry):
                found.setdefault(ancestor.name, ancestor.to_record())
            continue
        recorded = next((dict(r.lineage) for r in view.runs.values() if r.lineage), None)
        if recorded is not None and recorded.get("name"):
            found.setdefault(str(recorded["name"]), recorded)
    return [_redacted(record) for record in found.values()]


def _training_files(entries: Sequence[Mapping[str, Any]]) -> tuple[dict[str, bytes], list[str]]:
    """registry/NAME.config.json per trained entry whose folder still holds its config, and the training
    command lines (`harness train STAGE --config FILE`) the registry records."""
    files: dict[str, bytes] = {}
    commands: list[str] = []
    for entry in entries:
        details = entry.get("details") or {}
        out_dir, config_file = details.get("out_dir"), details.get("config_file")
        name = str(entry["name"])
        if isinstance(out_dir, str) and (Path(out_dir) / "config.json").is_file():
            try:
                record = json.loads((Path(out_dir) / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):  # unreadable: the registry entry's config hash still stands
                record = None
            if record is not None:
                files[f"registry/{name}.config.json"] = _json(_redacted(record))
        if isinstance(config_file, str) and config_file:
            line = shlex.join(["harness", "train", str(entry["stage"]), "--config", config_file])
            kept = f"registry/{name}.config.json" in files
            commands.append(
                f"# {name} ({entry['stage']}, seed {entry.get('seed')})"
                + (f"; the config as it ran: registry/{name}.config.json" if kept else "")
            )
            commands.append(line)
    return files, commands


def _commands(runs: Sequence[PackagedRun], training: Sequence[str], revision: str | None) -> bytes:
    lines = [
        "#!/bin/sh",
        "# Every command behind this package, rebuilt from the run manifests and the checkpoint registry",
        f"# (harness {__version__}, git revision {revision or 'unknown'}). Run from the project root (code/),",
        "# with the upstream data in $HARNESS_DATA_DIR. API keys are read from the environment variables",
        "# the references name (api_key_env); no key is written here.",
        "set -eu",
    ]
    if training:
        lines += ["", "# Training, oldest first (the registry's records)", *training]
    lines += ["", "# Evaluation (one line per packaged run)"]
    lines += [run.command for run in runs]
    return ("\n".join(lines) + "\n").encode()


def _reproduce(subset: Sequence[str]) -> bytes:
    flags = " ".join(f"--subset {shlex.quote(s)}" for s in subset)
    return f"""#!/bin/sh
# Re-run the declared subset of this package and compare it with the packaged results. `harness
# reproduce` first verifies every file against MANIFEST.json (a tampered package fails, exit 4), then
# re-runs each packaged (checkpoint, suite) on the first samples and compares: identical responses for
# greedy decoding on a deterministic backend, else the primary metric within its paired 95% CI.
# Usage: sh reproduce.sh [more `harness reproduce` flags, e.g. --runs DIR]
# It runs the packaged code (code/ on PYTHONPATH) with $PYTHON (default python3), whose environment needs
# the project's dependencies (environment.json lists them); set HARNESS_DATA_DIR to the upstream data.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -d "$here/code/harness" ]; then
    PYTHONPATH="$here/code${{PYTHONPATH:+:$PYTHONPATH}}"
    export PYTHONPATH
fi
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
exec "${{PYTHON:-python3}}" -m harness reproduce "$here" {flags} "$@"
""".encode()


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC).isoformat(timespec="milliseconds")
    return now_iso()


def write_zip(path: Path, entries: Mapping[str, bytes]) -> None:
    """Sorted entries, fixed times and permissions (scripts executable), deflate; atomic replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the permission bits below are honoured by unzip
            info.external_attr = (0o100000 | (0o755 if name.endswith(".sh") else 0o644)) << 16
            archive.writestr(info, entries[name], compresslevel=9)
    os.replace(tmp, path)


def _runs(order: Sequence[CheckpointView]) -> tuple[dict[str, bytes], list[PackagedRun]]:
    files: dict[str, bytes] = {}
    runs: list[PackagedRun] = []
    for view in order:
        for suite in sorted(view.runs):
            run = view.runs[suite]
            if not run.complete:
                raise UsageError(
                    f"The run {run.run_dir} is not complete (status '{run.manifest.status}').",
                    "Finish it by re-running the same `harness eval` command, then package again.",
                )
            path = "runs/" + "/".join(run.run_dir.parts[-3:])
            if f"{path}/{MANIFEST}" in files:
                raise UsageError(f"Two packaged runs are both {path}.", "Package one of them.")
            for name in RUN_FILES:
                files[f"{path}/{name}"] = (run.run_dir / name).read_bytes()
            metric = run.primary_metric()
            runs.append(PackagedRun(
                view.label, redact_reference(view.reference), suite, path, run.primary,
                None if metric is None else metric.value, run.manifest.n_samples, run.manifest.generation.seed,
                shlex.join(eval_argv(run)),
            ))  # fmt: skip
    return files, runs


def write_repro_package(
    arguments: Sequence[str],
    out: Path,
    runs_root: Path,
    *,
    subset_limit: int = DEFAULT_SUBSET_LIMIT,
    card_file: Path | None = None,
    examples: int = 3,
    environ: Mapping[str, str] | None = None,
    code_root: Path = PROJECT_ROOT,
) -> PackageResult:
    """Package the runs of the checkpoints `arguments` name (as `harness report` resolves them) into
    `out`. Refused (UsageError, nothing written): an incomplete run, or a file holding a secret."""
    from reports.select import select

    if subset_limit < 1:
        raise UsageError(f"--subset-limit must be at least 1, got {subset_limit}.")
    selection = select(arguments, runs_root)
    entries, runs = _runs(selection.order)
    registry = _registry(selection.order, runs_root)
    training_files, training = _training_files(registry)
    entries.update(training_files)
    entries["registry/registry.jsonl"] = "".join(
        json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in registry
    ).encode()
    code = snapshot_code(code_root)
    entries.update({f"code/{name}": data for name, data in code.files.items()})
    entries[COMMANDS_SCRIPT] = _commands(runs, training, code.revision)
    seeds = {
        "evaluation": [{"checkpoint": r.checkpoint, "suite": r.suite, "seed": r.seed} for r in runs],
        "training": [{"checkpoint": e["name"], "seed": e.get("seed")} for e in registry],
    }
    entries["seeds.json"] = _json(seeds)
    entries["environment.json"] = _json(environment())
    documents, missing = report_documents(arguments, runs_root, selection.order, card_file, examples)
    entries.update(documents)
    subset = [f"{s}:{subset_limit}" for s in sorted({r.suite for r in runs})]
    entries[REPRODUCE_SCRIPT] = _reproduce(subset)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": _created_at(),
        "harness_version": __version__,
        "code": {
            "source": code.source,
            "git_revision": code.revision,
            "git_dirty": code.dirty,
            "untracked": list(code.untracked),
        },
        "subset": subset,
        "checkpoints": [
            {
                "label": v.label,
                "reference": redact_reference(v.reference),
                "runs": [r.to_record() for r in runs if r.checkpoint == v.label],
            }
            for v in selection.order
        ],
        "files": [
            {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
            for p, d in sorted(entries.items())
        ],
    }
    entries[MANIFEST_FILE] = _json(manifest)
    check_no_secrets(entries, environ)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_zip(out, entries)
    data = out.read_bytes()
    return PackageResult(
        out, len(data), hashlib.sha256(data).hexdigest(), len(entries), tuple(runs), subset_limit,
        code.revision, code.dirty, tuple(missing),
    )  # fmt: skip
