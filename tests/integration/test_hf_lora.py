"""A peft LoRA on the exported weights, end to end through `harness eval --checkpoint hf:DIR+lora:DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import eval_json, harness, texts_by_id

ARGS = ("--suite", "gsm8k", "--limit", "2", "--max-tokens", "32")


def make_lora(base_dir: Path, out_dir: Path) -> Path:
    """A tiny random LoRA (r=4 on q/v projections). `init_lora_weights=False` makes B non-zero as well as
    A, so the adapter really changes the model's outputs (peft's default init is an exact no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out_dir))
    return out_dir


@pytest.mark.model
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5.23
def test_lora_run_names_the_adapter_and_changes_responses(exported_hf_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft", reason="the hf extra is not installed")
    lora = make_lora(exported_hf_dir, tmp_path / "tiny-lora")
    base = eval_json("--checkpoint", f"hf:{exported_hf_dir}", *ARGS, "--runs", str(tmp_path / "runs"))
    tuned_ref = f"hf:{exported_hf_dir}+lora:{lora}"
    tuned = eval_json("--checkpoint", tuned_ref, *ARGS, "--runs", str(tmp_path / "runs"))

    manifest = json.loads((tuned.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["checkpoint"] == tuned_ref
    assert tuned.payload["n_samples"] == 2 and tuned.payload["invocation"]["generated"] == 2  # type: ignore[index]
    base_identity = json.loads((base.run_dir / "manifest.json").read_text())["adapter"]
    assert manifest["adapter"].startswith(base_identity.removesuffix(":float32") + "+lora:tiny-lora:")
    base_texts, tuned_texts = texts_by_id(base.run_dir), texts_by_id(tuned.run_dir)
    assert base_texts.keys() == tuned_texts.keys()
    assert all(base_texts[i] != tuned_texts[i] for i in base_texts), (base_texts, tuned_texts)

    # A finished run is answered from disk: no model load, no generation.
    again = eval_json("--checkpoint", tuned_ref, *ARGS, "--runs", str(tmp_path / "runs"))
    invocation = again.payload["invocation"]
    assert invocation["generated"] == 0 and invocation["resumed"] == 2  # type: ignore[index]
    assert texts_by_id(again.run_dir) == tuned_texts
    assert again.seconds < 20


@pytest.mark.model
def test_bad_lora_paths_exit_with_usage_errors(exported_hf_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-lora"
    proc = harness(
        "eval", "--checkpoint", f"hf:{exported_hf_dir}+lora:{missing}", *ARGS, "--runs", str(tmp_path)
    )
    assert proc.returncode == 2, proc.stderr
    assert f"The LoRA folder {missing} does not exist" in proc.stderr and "Traceback" not in proc.stderr

    not_peft = tmp_path / "not-a-lora"
    not_peft.mkdir()
    (not_peft / "adapter_model.safetensors").write_bytes(b"\0")
    proc = harness(
        "eval", "--checkpoint", f"hf:{exported_hf_dir}+lora:{not_peft}", *ARGS, "--runs", str(tmp_path)
    )
    assert proc.returncode == 2 and "no adapter_config.json" in proc.stderr, proc.stderr
