"""The checkpoint registry: STAGE:TAG resolution, lineage, the tree listing, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checkpoints import HfRef, RegistryRef, parse_checkpoint
from harness.errors import DataError, UsageError
from harness.lineage import CheckpointRegistry, resolve_checkpoint
from tests.conftest import cli_env, eval_json, harness


def _registry(tmp_path: Path) -> CheckpointRegistry:
    registry = CheckpointRegistry(tmp_path / "registry.jsonl")
    registry.add("base", "hf:/models/llama-1b", stage="base")
    registry.add("sft-a", "hf:/ckpt/sft-a", stage="sft", parent="base", seed=1, config_sha256="c1")
    registry.add("sft-b", "hf:/ckpt/sft-b", stage="sft", parent="base", tags=["best"])
    registry.add("dpo-1", "hf:/ckpt/sft-b+lora:/ckpt/dpo-1", stage="dpo", parent="sft:best")
    return registry


def _resolve(registry: CheckpointRegistry, raw: str) -> str:
    ref = parse_checkpoint(raw)
    assert isinstance(ref, RegistryRef)
    return registry.lookup(ref).name


def test_stage_tags_resolve_latest_nth_name_and_tag(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert _resolve(registry, "sft:latest") == "sft-b"
    assert _resolve(registry, "sft:v1") == "sft-a"
    assert _resolve(registry, "sft:v2") == "sft-b"
    assert _resolve(registry, "sft:sft-a") == "sft-a"
    assert _resolve(registry, "sft:best") == "sft-b"
    assert _resolve(registry, "dpo:latest") == "dpo-1"


def test_lineage_and_inherited_base_model(tmp_path: Path) -> None:
    registry = CheckpointRegistry(_registry(tmp_path).path)  # re-read from disk
    dpo = registry.by_name("dpo-1")
    assert dpo is not None and dpo.parent == "sft-b"
    assert dpo.base_model == "hf:/models/llama-1b"
    assert [e.name for e in registry.lineage(dpo)] == ["base", "sft-b", "dpo-1"]
    sft_a = registry.by_name("sft-a")
    assert sft_a is not None and (sft_a.seed, sft_a.config_sha256) == (1, "c1")


def test_dangling_reference_lists_known_ones(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    with pytest.raises(UsageError) as caught:
        _resolve(registry, "sft:v9")
    assert "No checkpoint 'sft:v9'" in caught.value.message
    hint = caught.value.fix or ""
    assert "sft:latest -> sft-b" in hint and "dpo:dpo-1 (dpo:v1)" in hint and "sft:best" in hint
    with pytest.raises(UsageError, match="rlvr:latest"):
        _resolve(registry, "rlvr:latest")


def test_add_refuses_duplicates_unknown_parents_and_registry_refs(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    with pytest.raises(UsageError, match="already in the registry"):
        registry.add("sft-a", "hf:/other", stage="sft")
    with pytest.raises(UsageError, match="parent 'nope' is not in the registry"):
        registry.add("x", "hf:/x", stage="sft", parent="nope")
    with pytest.raises(UsageError, match="itself a registry reference"):
        registry.add("y", "sft:latest", stage="dpo")
    with pytest.raises(UsageError, match="Invalid --checkpoint"):
        registry.add("z", "not a reference", stage="dpo")
    assert len(CheckpointRegistry(registry.path).entries) == 4  # nothing half-written


def test_corrupt_line_is_reported_with_path_and_line(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    lines = registry.path.read_text().splitlines()
    lines[2] = lines[2][:20]
    registry.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{registry.path} line 3 is corrupt"):
        CheckpointRegistry(registry.path)


def test_resolve_checkpoint_gives_concrete_reference_and_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARNESS_REGISTRY", raising=False)
    _registry(tmp_path)
    ref, entry = resolve_checkpoint("dpo:latest", tmp_path)
    assert isinstance(ref, HfRef) and ref.lora == "/ckpt/dpo-1"
    assert entry is not None and entry.name == "dpo-1"
    ref, entry = resolve_checkpoint("hf:/ckpt/sft-a", tmp_path)  # registered concrete refs carry lineage too
    assert entry is not None and entry.name == "sft-a"
    ref, entry = resolve_checkpoint("embedded", tmp_path)
    assert entry is None
    monkeypatch.setenv("HARNESS_REGISTRY", str(tmp_path / "elsewhere.jsonl"))
    with pytest.raises(UsageError, match="has no entries yet"):
        resolve_checkpoint("sft:latest", tmp_path)


def test_cli_add_list_tree_show_and_eval_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    config = tmp_path / "sft.yaml"
    config.write_text("lr: 2e-5\n")
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    assert harness("checkpoints", "add", "base", "embedded", "--stage", "base", env=env).returncode == 0
    added = harness(
        "checkpoints", "add", "sft-1", "gguf:/m/sft.gguf", "--stage", "sft", "--parent", "base",
        "--config", str(config), "--seed", "3", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "registered sft-1 as sft:v1 (sft:latest)" in added.stdout
    harness(
        "checkpoints", "add", "dpo-1", "gguf:/m/dpo.gguf", "--stage", "dpo", "--parent", "sft:latest", env=env
    )
    harness("checkpoints", "add", "sft-2", "gguf:/m/sft2.gguf", "--stage", "sft", "--parent", "base", env=env)
    listing = harness("checkpoints", env=env)
    assert listing.returncode == 0
    tree = listing.stdout.splitlines()[1:]
    assert tree == [
        "base [base:v1,latest] embedded",
        "├── sft-1 [sft:v1] gguf:/m/sft.gguf",
        "│   └── dpo-1 [dpo:v1,latest] gguf:/m/dpo.gguf",
        "└── sft-2 [sft:v2,latest] gguf:/m/sft2.gguf",
    ]
    shown = harness("checkpoints", "show", "dpo:latest", "--json", env=env)
    record = json.loads(shown.stdout)
    assert record["lineage"] == ["base", "sft-1", "dpo-1"]
    assert record["entry"]["base_model"] == "embedded"
    entries = json.loads(harness("checkpoints", "--json", env=env).stdout)
    assert entries[1]["config_sha256"] and entries[1]["seed"] == 3

    missing = harness("eval", "--checkpoint", "dpo:v7", "--suite", "gsm8k", "--limit", "1", env=env)
    assert missing.returncode == 2
    assert "No checkpoint 'dpo:v7'" in missing.stderr and "dpo:latest -> dpo-1" in missing.stderr
    duplicate = harness("checkpoints", "add", "sft-1", "embedded", "--stage", "sft", env=env)
    assert duplicate.returncode == 2 and "already in the registry" in duplicate.stderr


def test_eval_through_a_stage_tag_runs_the_concrete_checkpoint_and_records_lineage(
    data_dir: Path, tmp_path: Path
) -> None:
    from harness.data import DataSource
    from suites import get_suite

    suite = get_suite("gsm8k")
    samples = suite.load(DataSource(data_dir), limit=3).samples
    replay = tmp_path / "gold.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": suite.gold_response(s)}) + "\n" for s in samples)
    )
    runs = tmp_path / "runs"
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    harness("checkpoints", "add", "base", "embedded", "--stage", "base", env=env)
    assert (
        harness(
            "checkpoints", "add", "gold", f"replay:{replay}", "--stage", "sft", "--parent", "base", env=env
        ).returncode
        == 0
    )
    run = eval_json("--checkpoint", "sft:latest", "--suite", "gsm8k", "--limit", "3", env=env)
    assert run.metrics["exact_match_flex"]["value"] == 1.0
    manifest = json.loads((Path(run.payload["run_dir"]) / "manifest.json").read_text())
    assert manifest["checkpoint"] == f"replay:{replay}"  # stored as what it is, not as a moving tag
    assert manifest["lineage"]["name"] == "gold" and manifest["lineage"]["parent"] == "base"
    assert manifest["lineage"]["base_model"] == "embedded"


def test_a_moved_tag_names_one_checkpoint_and_survives_a_reload(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.tag("sft-a", "best")  # was on sft-b
    assert _resolve(registry, "sft:best") == "sft-a"
    registry.tag("dpo-1", "best")  # moves across stages: one holder in the whole registry
    reloaded = CheckpointRegistry(tmp_path / "registry.jsonl")
    assert _resolve(reloaded, "dpo:best") == "dpo-1"
    with pytest.raises(UsageError, match="No checkpoint 'sft:best'"):
        _resolve(reloaded, "sft:best")
    assert [e.name for e in reloaded.entries] == ["base", "sft-a", "sft-b", "dpo-1"]  # tag lines add no entry
    with pytest.raises(UsageError, match="No checkpoint named 'nope'"):
        reloaded.tag("nope", "best")
    with pytest.raises(UsageError, match="The tag 'v2' is reserved"):
        reloaded.tag("sft-a", "v2")
