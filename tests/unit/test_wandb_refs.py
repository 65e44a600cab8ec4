"""`wandb:ENTITY/PROJECT/NAME:ALIAS` references: parsed like every form, resolved through the artifact's
metadata to the concrete reference, recorded in the manifest's lineage like STAGE:TAG. The W&B API is a
stand-in (no network), checked against the installed `wandb.Api.artifact` signature."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.checkpoints import WandbRef, parse_checkpoint
from harness.errors import UsageError
from harness.lineage import CheckpointRegistry, registry_path, resolve_checkpoint
from tests.conftest import ROOT

wandb = pytest.importorskip("wandb")


class StandInArtifact:
    def __init__(self, metadata: dict[str, Any], version: str) -> None:
        self.metadata, self.version = metadata, version


class StandInWandbApi:
    """Answers `artifact(name, type)` from a dict, as `wandb.Api` answers from the W&B server."""

    def __init__(self, artifacts: dict[str, StandInArtifact]) -> None:
        self.artifacts, self.asked = artifacts, []

    def artifact(self, name: str, type: str | None = None) -> StandInArtifact:
        self.asked.append((name, type))
        if name not in self.artifacts:
            raise ValueError(f"artifact '{name}' not found")  # wandb raises CommError/ValueError
        return self.artifacts[name]


def test_the_stand_in_matches_the_real_api() -> None:
    real = inspect.signature(wandb.Api.artifact).parameters
    assert list(inspect.signature(StandInWandbApi.artifact).parameters) == list(real)


def test_parsing() -> None:
    ref = parse_checkpoint("wandb:my-team/evals/sft:best")
    assert isinstance(ref, WandbRef)
    assert (ref.entity, ref.project, ref.name, ref.alias, ref.artifact_path) == (
        "my-team", "evals", "sft", "best", "my-team/evals/sft:best",
    )  # fmt: skip
    for bad in ("wandb:evals/sft:best", "wandb:a/b/c", "wandb:a/b/c:", "wandb:a/b/c/d:e"):
        with pytest.raises(UsageError, match="wandb:ENTITY/PROJECT/NAME:ALIAS"):
            parse_checkpoint(bad)


def _entry_record(reference: str) -> dict[str, Any]:
    return {"name": "sft-1", "reference": reference, "stage": "sft", "base_model": "embedded",
            "parent": "base-0", "tags": ["best"], "config_sha256": "c" * 64, "data_sha256": "d" * 64,
            "seed": 7, "created_at": "2026-01-01T00:00:00+00:00", "details": {"steps": 5}}  # fmt: skip


def _api(reference: str) -> StandInWandbApi:
    metadata = {"harness_reference": reference, "registry_entry": _entry_record(reference)}
    return StandInWandbApi({"ent/proj/sft:best": StandInArtifact(metadata, "v1")})


def test_an_evaluation_of_a_wandb_reference_records_the_artifact_in_its_lineage(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:2]]
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": r["answer"]}) + "\n"
                              for i, r in enumerate(rows)))  # fmt: skip
    api = _api(f"replay:{replay}")
    monkeypatch.setattr("harness.wandb_refs.wandb_api", lambda: api)
    results = harness.evaluate(
        "wandb:ent/proj/sft:best", "gsm8k", limit=2, runs=tmp_path / "runs", progress=False
    )
    assert api.asked == [("ent/proj/sft:best", "model")]
    assert results.checkpoint == f"replay:{replay}"  # stored under the concrete checkpoint, like STAGE:TAG
    manifest = json.loads((results.runs[0].run_dir / "manifest.json").read_text())
    assert manifest["checkpoint"] == f"replay:{replay}"
    lineage = manifest["lineage"]
    assert (lineage["name"], lineage["stage"], lineage["parent"], lineage["seed"]) == (
        "sft-1",
        "sft",
        "base-0",
        7,
    )
    assert lineage["details"] == {"steps": 5, "wandb_artifact": "ent/proj/sft:v1"}


def test_resolution_failures_say_what_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.wandb_refs.wandb_api", lambda: _api("hf:/models/sft"))
    with pytest.raises(UsageError, match="W&B could not resolve the checkpoint 'wandb:ent/proj/sft:v9'"):
        resolve_checkpoint("wandb:ent/proj/sft:v9", tmp_path)
    bare = StandInWandbApi({"ent/proj/sft:best": StandInArtifact({"other": 1}, "v0")})
    monkeypatch.setattr("harness.wandb_refs.wandb_api", lambda: bare)
    with pytest.raises(UsageError, match="names no harness checkpoint"):
        resolve_checkpoint("wandb:ent/proj/sft:best", tmp_path)
    loop = _api("sft:latest")
    monkeypatch.setattr("harness.wandb_refs.wandb_api", lambda: loop)
    with pytest.raises(UsageError, match="itself a reference to resolve"):
        resolve_checkpoint("wandb:ent/proj/sft:best", tmp_path)


def test_the_registry_refuses_a_wandb_reference(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="itself a registry reference"):
        CheckpointRegistry(registry_path(tmp_path)).add("x", "wandb:ent/proj/sft:best", "sft")


def test_the_harness_and_its_cli_never_import_wandb_at_startup() -> None:
    code = "import sys, harness; from harness.cli import build_parser; build_parser(); print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
