"""`wandb:ENTITY/PROJECT/NAME:ALIAS` references: a model artifact that `harness export wandb` logged,
resolved through the W&B API to the harness reference stored in its metadata.

The artifact holds no weights: its metadata names the concrete reference (`hf:PATH`, `tinker://...`) and
carries the registry entry it was logged from (stage, parent, config and data hashes, seed), so a run of
`wandb:me/proj/sft:latest` is stored under the concrete checkpoint with that entry as its lineage, exactly
as a run of `sft:latest` is. `wandb` is imported only here, inside the function, and only when a `wandb:`
reference is used: `import harness` and the CLI never import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.checkpoints import RegistryRef, WandbRef, parse_checkpoint, redact_reference
from harness.errors import UsageError

# The metadata keys of a model artifact (written by reports.export_wandb, read here).
REFERENCE_KEY = "harness_reference"
ENTRY_KEY = "registry_entry"
ARTIFACT_TYPE = "model"
WANDB_MISSING = "pip install 'harness[wandb]' (or pip install wandb)"


@dataclass(frozen=True)
class ResolvedArtifact:
    reference: str  # the concrete harness reference in the artifact's metadata
    entry: Mapping[str, Any] | None  # the registry entry it was logged from
    artifact: str  # the version resolved: ENTITY/PROJECT/NAME:vN


def wandb_api() -> Any:
    """`wandb.Api()`: the network client (it reads the key from WANDB_API_KEY or `wandb login`)."""
    try:
        import wandb
    except ImportError:
        raise UsageError("A wandb: checkpoint reference needs the wandb package.", WANDB_MISSING) from None
    return wandb.Api()


def resolve_wandb_ref(ref: WandbRef, api: Any | None = None) -> ResolvedArtifact:
    """The harness reference the artifact stands for. `api`: a `wandb.Api` (default: a new one)."""
    client = wandb_api() if api is None else api
    try:
        artifact = client.artifact(ref.artifact_path, type=ARTIFACT_TYPE)
    except Exception as error:  # wandb raises CommError, ValueError, its own UsageError...: one message
        raise UsageError(
            f"W&B could not resolve the checkpoint '{ref.raw}' ({type(error).__name__}: {str(error)[:300]}).",
            "Check the entity, project, artifact name and alias (the artifact must be of type 'model', "
            "logged by `harness export wandb`), and that you are logged in (`wandb login` or WANDB_API_KEY).",
        ) from None
    metadata = dict(artifact.metadata or {})
    reference = metadata.get(REFERENCE_KEY)
    if not isinstance(reference, str) or not reference:
        raise UsageError(
            f"The W&B artifact '{ref.artifact_path}' names no harness checkpoint (no '{REFERENCE_KEY}' "
            "in its metadata).",
            "Use a model artifact logged by `harness export wandb`, or pass the concrete reference.",
        )
    concrete = parse_checkpoint(reference)
    if isinstance(concrete, RegistryRef | WandbRef):
        raise UsageError(
            f"The W&B artifact '{ref.artifact_path}' names '{redact_reference(reference)}', "
            "which is itself a reference to resolve.",
            "Its metadata must hold a concrete reference (hf:PATH, tinker://..., http://...#MODEL, ...).",
        )
    entry = metadata.get(ENTRY_KEY)
    return ResolvedArtifact(
        reference=concrete.raw,
        entry=dict(entry) if isinstance(entry, Mapping) else None,
        artifact=f"{ref.entity}/{ref.project}/{ref.name}:{artifact.version}",  # the alias pinned to vN
    )
