"""`harness package CHECKPOINT --kaggle`: the zip's exact contents, determinism, and every refusal (rank
limit, rank_pattern, shapes that disagree with the config, broken weights, non-LoRA references)."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env, harness
from tests.unit.test_cli import assert_clean_error

MODULES = {"q_proj": (64, 64), "v_proj": (64, 32)}  # name -> (in, out)


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A real safetensors file (F32 zeros), written by hand so the test needs no torch."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in sorted(shapes.items()):
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def make_adapter(
    folder: Path,
    r: int = 16,
    tensor_rank: int | None = None,
    rank_pattern: dict[str, int] | None = None,
    **config: Any,
) -> Path:
    """A peft-layout LoRA folder: adapter_config.json + adapter_model.safetensors, 2 layers x q/v."""
    folder.mkdir(parents=True)
    pattern = rank_pattern or {}
    shapes = {}
    for layer in range(2):
        for module, (fan_in, fan_out) in MODULES.items():
            rank = tensor_rank or pattern.get(module, r)
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            shapes[f"{prefix}.lora_A.weight"] = (rank, fan_in)
            shapes[f"{prefix}.lora_B.weight"] = (fan_out, rank)
    write_safetensors(folder / "adapter_model.safetensors", shapes)
    settings = {
        "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": sorted(MODULES),
        "rank_pattern": pattern, "bias": "none", "base_model_name_or_path": "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
        **config,
    }  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(settings, indent=2))
    return folder


def package(ref: str, out: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    return harness("package", ref, "--kaggle", "--out", str(out), *extra, env=env)


def test_rank_16_adapter_becomes_a_deterministic_submission_zip(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "lora-r16")
    out = tmp_path / "submission.zip"
    proc = package(f"hf:/models/base+lora:{lora}", out)
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"wrote {out}" in proc.stdout and f"sha256 {digest}" in proc.stdout
    assert "LoRA r=16 (limit 32" in proc.stdout and "4 modules" in proc.stdout
    assert "warning" not in proc.stderr  # a Nemotron-3-Nano base

    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == ["adapter_config.json", "adapter_model.safetensors"]  # at the root, sorted
        for name in names:
            assert archive.read(name) == (lora / name).read_bytes()
            assert archive.getinfo(name).date_time == (1980, 1, 1, 0, 0, 0)

    (lora / "adapter_model.safetensors").touch()  # a newer mtime, another path: the same bytes
    again = package(str(lora), tmp_path / "elsewhere" / "again.zip", "--json")
    assert again.returncode == 0, again.stderr
    payload = json.loads(again.stdout)
    assert payload["sha256"] == digest and payload["size_bytes"] == out.stat().st_size
    assert payload["rank"] == 16 and payload["max_module_rank"] == 16 and payload["lora_modules"] == 4
    assert [f["name"] for f in payload["files"]] == names and payload["warnings"] == []


def test_rank_above_32_is_refused(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "lora-r64", r=64)
    proc = package(f"vllm:base+lora:{lora}", tmp_path / "s.zip")
    assert_clean_error(proc, 2, "r=64", "Kaggle limit of 32", "max_lora_rank=32", "lora.rank")
    assert not (tmp_path / "s.zip").exists()
    lowered = package(str(make_adapter(tmp_path / "lora-r32", r=32)), tmp_path / "s.zip", "--max-rank", "16")
    assert_clean_error(lowered, 2, "r=32", "limit of 16")
    raised = package(str(tmp_path / "lora-r32"), tmp_path / "s.zip", "--max-rank", "64")
    assert_clean_error(raised, 2, "--max-rank 64", "max_lora_rank of 32")


def test_rank_pattern_is_checked_and_followed(tmp_path: Path) -> None:
    high = make_adapter(tmp_path / "high", r=16, rank_pattern={"v_proj": 64})
    assert_clean_error(
        package(str(high), tmp_path / "s.zip"), 2, "rank_pattern", "'v_proj': 64", "limit of 32"
    )
    mixed = make_adapter(tmp_path / "mixed", r=8, rank_pattern={"v_proj": 32})  # tensors follow the pattern
    proc = package(str(mixed), tmp_path / "s.zip", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["rank"] == 8 and payload["max_module_rank"] == 32


def test_weights_that_disagree_with_the_config_are_refused(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "lora", r=16, tensor_rank=64)
    proc = package(str(lora), tmp_path / "s.zip")
    assert_clean_error(proc, 4, "rank 64", "says rank 16", "do not belong together")
    assert not (tmp_path / "s.zip").exists()
    ignored = make_adapter(tmp_path / "ignored", r=16, rank_pattern={"v_proj": 8}, tensor_rank=16)
    assert_clean_error(package(str(ignored), tmp_path / "s.zip"), 4, "v_proj", "rank 16", "says rank 8")


def test_missing_or_broken_weights_are_refused(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "lora")
    weights = lora / "adapter_model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    assert_clean_error(package(str(lora), tmp_path / "s.zip"), 4, "does not fit the file's data", "truncated")
    weights.write_bytes(b"\xff" * 4)
    assert_clean_error(package(str(lora), tmp_path / "s.zip"), 4, "no readable safetensors header")
    weights.unlink()
    assert_clean_error(
        package(str(lora), tmp_path / "s.zip"), 4, "no adapter weights", "adapter_model.safetensors"
    )
    write_safetensors(weights, {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (16, 64)})
    assert_clean_error(package(str(lora), tmp_path / "s.zip"), 4, "has no lora_B tensor")
    write_safetensors(weights, {"model.embed_tokens.weight": (10, 64)})
    assert_clean_error(package(str(lora), tmp_path / "s.zip"), 4, "holds no LoRA tensors")
    (lora / "adapter_config.json").write_text("{not json")
    assert_clean_error(package(str(lora), tmp_path / "s.zip"), 4, "adapter_config.json is not valid JSON")
    (lora / "adapter_config.json").unlink()
    assert_clean_error(package(str(lora), tmp_path / "s.zip"), 4, "has no adapter_config.json")
    assert_clean_error(package(f"hf:b+lora:{tmp_path / 'nope'}", tmp_path / "s.zip"), 2, "does not exist")
    assert not (tmp_path / "s.zip").exists()


def test_what_vllm_refuses_is_refused(tmp_path: Path) -> None:
    dora = make_adapter(tmp_path / "dora", use_dora=True, modules_to_save=["lm_head"])
    assert_clean_error(package(str(dora), tmp_path / "s.zip"), 2, "DoRA", "modules_to_save")
    ia3 = make_adapter(tmp_path / "ia3", peft_type="IA3")
    assert_clean_error(package(str(ia3), tmp_path / "s.zip"), 2, "IA3 adapter")


def test_another_base_model_packages_with_a_warning(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "smol", base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct")
    proc = package(str(lora), tmp_path / "s.zip")
    assert proc.returncode == 0, proc.stderr
    assert "harness: warning:" in proc.stderr and "SmolLM2-135M-Instruct" in proc.stderr
    assert "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" in proc.stderr


def test_registry_tag_resolves_to_its_lora(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "sft-1")
    env = cli_env(HARNESS_RUNS_DIR=str(tmp_path / "runs"))
    added = harness("checkpoints", "add", "sft-1", f"hf:/models/base+lora:{lora}", "--stage", "sft", env=env)
    assert added.returncode == 0, added.stderr
    proc = package("sft:latest", tmp_path / "s.zip", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["checkpoint"] == f"hf:/models/base+lora:{lora}" and payload["adapter_folder"] == str(lora)
    assert zipfile.ZipFile(tmp_path / "s.zip").namelist() == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert_clean_error(package("dpo:best", tmp_path / "t.zip", env=env), 2, "No checkpoint 'dpo:best'")


@pytest.mark.parametrize(
    ("ref", "needles"),
    [
        ("hf:/models/base", ("without a LoRA", "hf:/models/base+lora:DIR", "Packageable")),
        ("vllm:meta-llama/Llama-3.2-1B", ("without a LoRA", "vllm:meta-llama/Llama-3.2-1B+lora:DIR")),
        ("embedded", ("embedded GGUF", "Packageable")),
        ("gguf:/m/model.gguf", ("GGUF file", "Packageable")),
        ("http://127.0.0.1:8000/v1#m", ("endpoint", "Packageable")),
        ("tinker-base:meta-llama/Llama-3.2-1B", ("Tinker base model", "Packageable")),
        ("replay:/r.jsonl", ("stored responses",)),
        ("tinker://run-1/sampler_weights/final", ("cannot be downloaded", "tinker checkpoint download")),
        ("gpt4", ("Invalid --checkpoint 'gpt4'",)),
    ],
)
def test_references_without_a_lora_are_refused(ref: str, needles: tuple[str, ...], tmp_path: Path) -> None:
    assert_clean_error(package(ref, tmp_path / "s.zip", "--runs", str(tmp_path)), 2, *needles)
    assert not (tmp_path / "s.zip").exists()


def test_a_target_is_required(tmp_path: Path) -> None:
    lora = make_adapter(tmp_path / "lora")
    proc = harness("package", str(lora), "--out", str(tmp_path / "s.zip"))
    assert_clean_error(proc, 2, "--kaggle", "--repro")
    assert not (tmp_path / "s.zip").exists()


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`:UserWarning")
def test_real_peft_adapter_and_bin_weights(tmp_path: Path) -> None:
    """peft's own save_pretrained() layout (safetensors and the legacy .bin), on a tiny random Llama."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    lora_config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "embed_tokens"])
    peft.get_peft_model(model, lora_config).save_pretrained(str(tmp_path / "real"))
    proc = package(str(tmp_path / "real"), tmp_path / "s.zip", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["rank"] == 8 and payload["lora_modules"] == 5  # 2 layers x q/v + the embedding

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "adapter_config.json").write_bytes((tmp_path / "real" / "adapter_config.json").read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(str(tmp_path / "real" / "adapter_model.safetensors")), legacy / "adapter_model.bin")
    proc = package(str(legacy), tmp_path / "b.zip")
    assert proc.returncode == 0, proc.stderr
    assert zipfile.ZipFile(tmp_path / "b.zip").namelist() == ["adapter_config.json", "adapter_model.bin"]
    (legacy / "adapter_model.bin").write_bytes(b"not a torch file")
    assert_clean_error(package(str(legacy), tmp_path / "c.zip"), 4, "not a readable torch state dict")
