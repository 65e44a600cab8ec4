"""The local training backend (TRL + peft) on the exported embedded model, with the shared OLMo samples.

Everything here trains for real on CPU, kept small: the shortest sample rows, max_length 128-256, batch 2,
two steps (ten for the overfit check).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.checkpoints import HfRef, parse_checkpoint
from harness.errors import UsageError
from harness.types import Message
from training.backend import StartPoint, StepLog, TrainResult, learning_rate_at
from training.config import DpoConfig, LoraConfig, OptimConfig, Stage, StageConfig, TrainRequest
from training.data import ChatExample, PreferencePair, Rows, chat_examples, preference_pairs, read_rows

pytestmark = [
    pytest.mark.model,
    pytest.mark.filterwarnings(
        "ignore:.*is_gradient_checkpointing:FutureWarning"
    ),  # peft on transformers 5.2x
]
pytest.importorskip("trl", reason="the hf extra (with trl) is not installed")
pytest.importorskip("peft", reason="the hf extra is not installed")


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    import torch

    # Two cores shared with other processes: torch's OpenMP threads spin against them and a step gets ~10x
    # slower than on one thread (measured), so use a second thread only on an idle machine.
    idle = os.getloadavg()[0] < 1.0
    torch.set_num_threads(2 if idle and (os.cpu_count() or 1) >= 2 else 1)


def _shortest(rows: list[dict[str, Any]], size: Any, n: int) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (size(r), str(r.get("id"))))[:n]


def sft_sample(data_dir: Path, n: int) -> list[ChatExample]:
    rows = read_rows(data_dir / "olmo_samples" / "open-instruct_sft_sample.jsonl")
    short = _shortest(rows, lambda r: sum(len(m["content"]) for m in r["messages"]), n)
    return chat_examples(Rows(tuple(short), "sample", ()))


def preference_sample(data_dir: Path, n: int) -> list[PreferencePair]:
    rows = read_rows(data_dir / "olmo_samples" / "open-instruct_preference_sample.jsonl")
    size = lambda r: sum(len(m["content"]) for m in r["chosen"]) + len(r["rejected"][-1]["content"])  # noqa: E731
    return preference_pairs(Rows(tuple(_shortest(rows, size, n)), "sample", ()))


def request_for(stage: Stage, base: str, **optim: Any) -> TrainRequest:
    lora = optim.pop("lora", LoraConfig(rank=8, alpha=16))
    dpo = optim.pop("dpo", DpoConfig())
    config = StageConfig(base=base, seed=0, lora=lora, dpo=dpo, optim=OptimConfig(**optim))
    return TrainRequest(stage, "local", config, "test")


def lora_dir(reference: str) -> Path:
    ref = parse_checkpoint(reference)
    assert isinstance(ref, HfRef) and ref.lora is not None, reference
    return Path(ref.lora)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lora_tensors(adapter_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


@dataclass(frozen=True)
class SftRun:
    result: TrainResult
    out_dir: Path
    request: TrainRequest
    base_dir: Path


@pytest.fixture(scope="module")
def sft_run(exported_hf_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SftRun:
    from training.local_backend import LocalBackend

    out_dir = tmp_path_factory.mktemp("local-ckpts") / "sft-1"
    request = request_for(
        "sft", f"hf:{exported_hf_dir}", learning_rate=1e-3, batch_size=2, max_steps=2, max_length=128
    )
    start = StartPoint(request.config.base, None, "smollm2-135m")
    backend = LocalBackend()
    backend.check(request, start)
    log = StepLog(out_dir / "train_log.jsonl", quiet=True)
    result = backend.train_sft(request, start, sft_sample(data_dir, 4), out_dir, log)
    return SftRun(result, out_dir, request, exported_hf_dir)


def test_sft_two_steps_write_a_trained_adapter(sft_run: SftRun) -> None:
    result, out_dir = sft_run.result, sft_run.out_dir
    adapter = out_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["task_type"] == "CAUSAL_LM"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "adapter",
        "train_log.jsonl",
    ]  # no Trainer checkpoints

    steps = read_log(out_dir / "train_log.jsonl")
    assert [s["step"] for s in steps] == [1, 2] and result.steps == 2 and result.examples == 4
    assert all(isinstance(s["loss"], float) and math.isfinite(s["loss"]) and s["loss"] > 0 for s in steps)
    # The shared schedule, step for step (linear decay to 0 over 2 steps, no warm-up).
    assert [s["learning_rate"] for s in steps] == pytest.approx(
        [learning_rate_at(k, 2, 1e-3, "linear", 0) for k in range(2)]
    )

    ref = parse_checkpoint(result.reference)
    assert isinstance(ref, HfRef) and ref.lora is not None
    assert Path(ref.path) == sft_run.base_dir.resolve() and Path(ref.lora) == adapter.resolve()
    details = result.details
    assert details["backend"] == "local" and details["device"] == "cpu" and details["trl_version"]
    assert details["lora"]["continued_from"] is None and details["final_loss"] == steps[-1]["loss"]

    # peft starts B at zero (the adapter is a no-op); two optimizer steps must have moved every B.
    tensors = lora_tensors(adapter)
    b_matrices = [t for name, t in tensors.items() if "lora_B" in name]
    assert b_matrices and all(float(t.abs().max()) > 0 for t in b_matrices)
    assert not any(".ref." in name or "reference" in name for name in tensors)


def test_chat_tokens_mask_exactly_the_assistant_turns(exported_hf_dir: Path) -> None:
    from training.local_model import LocalBase, chat_tokens, load_tokenizer

    tokenizer = load_tokenizer(LocalBase(exported_hf_dir, None))
    messages = [
        Message("system", "Answer briefly."),
        Message("user", "What is 2 + 2?"),
        Message("assistant", "4, of course."),
        Message("user", "怎么不回信息"),
        Message("assistant", "因为这是你在本次对话的首个提问。"),
    ]
    ids, mask = chat_tokens(tokenizer, messages)
    as_dicts = [{"role": m.role, "content": m.content} for m in messages]
    template = tokenizer.apply_chat_template(as_dicts, tokenize=True, return_dict=True)["input_ids"]
    assert ids == list(template)  # the template's own tokens; no second BOS
    assert len(mask) == len(ids) and set(mask) == {0, 1}

    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    learned = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert learned == "4, of course.<|im_end|>因为这是你在本次对话的首个提问。<|im_end|>"
    # Each learned run ends on the end-of-turn token; the newline after it and the next header are prompt.
    runs = [k for k in range(len(ids)) if mask[k] and (k + 1 == len(ids) or not mask[k + 1])]
    assert len(runs) == 2 and all(ids[k] == end for k in runs)
    prompt_text = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert (
        "Answer briefly." in prompt_text and "What is 2 + 2?" in prompt_text and "assistant\n" in prompt_text
    )


def test_trl_gives_prompt_tokens_no_loss(exported_hf_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    import torch

    from training.local_backend import build_sft_trainer, sft_rows
    from training.local_model import LocalBase, chat_tokens, load_for_training

    base = LocalBase(exported_hf_dir, None)
    request = request_for("sft", f"hf:{exported_hf_dir}", batch_size=2, max_length=256)
    model, tokenizer, _ = load_for_training(base, request.config.lora, "cpu", 0)
    examples = [
        ChatExample("multi", (Message("system", "Be kind."), *sft_sample(data_dir, 1)[0].messages)),
        *sft_sample(data_dir, 2)[1:],
    ]
    rows, dropped = sft_rows(tokenizer, examples, 256)
    assert dropped == 0 and len(rows) == 2
    trainer = build_sft_trainer(request, model, tokenizer, rows, 1, tmp_path, StepLog(tmp_path / "log.jsonl"))
    batch = next(iter(trainer.get_train_dataloader()))

    by_ids = {
        tuple(chat_tokens(tokenizer, e.messages)[0]): chat_tokens(tokenizer, e.messages)[1] for e in examples
    }
    for row_ids, row_labels, row_attention in zip(
        batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        n = int(row_attention.sum())
        mask = by_ids[tuple(row_ids[:n].tolist())]
        assert [
            int(label != -100) for label in row_labels[:n]
        ] == mask  # collated labels: assistant tokens only
        assert bool((row_labels[n:] == -100).all())

    # TRL's loss equals cross-entropy over the assistant tokens only, not over the whole conversation.
    model.train()
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(model, dict(batch)))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits, labels = logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1)
    assistant_only = float(torch.nn.functional.cross_entropy(shift_logits, labels, ignore_index=-100))
    everything = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100).reshape(-1)
    whole = float(torch.nn.functional.cross_entropy(shift_logits, everything, ignore_index=-100))
    assert trl_loss == pytest.approx(assistant_only, rel=1e-4)
    assert abs(whole - assistant_only) > 0.05


def test_overfitting_two_examples_drives_the_loss_down(
    exported_hf_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    from training.local_backend import LocalBackend

    request = request_for(
        "sft", f"hf:{exported_hf_dir}", learning_rate=3e-3, batch_size=2, max_steps=10, epochs=10,
        max_length=128, lr_schedule="constant",
    )  # fmt: skip
    start = StartPoint(request.config.base, None, "smollm2-135m")
    out_dir = tmp_path / "overfit"
    log = StepLog(out_dir / "train_log.jsonl", quiet=True)
    result = LocalBackend().train_sft(request, start, sft_sample(data_dir, 2), out_dir, log)
    losses = [s["loss"] for s in read_log(out_dir / "train_log.jsonl")]
    assert result.steps == 10 and len(losses) == 10 and result.examples == 20
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:3]), losses


def _completion_logp(model: Any, tokenizer: Any, prompt: tuple[Message, ...], answer: str) -> float:
    """log p(answer turn | prompt) as TRL's DPO counts it: every token after the generation prompt."""
    import torch

    from training.local_model import token_logprobs

    turns = [{"role": m.role, "content": m.content} for m in prompt]
    head = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tokenizer.apply_chat_template(
        [*turns, {"role": "assistant", "content": answer}], tokenize=True, return_dict=True
    )
    head_ids, ids = list(head["input_ids"]), list(full["input_ids"])
    assert ids[: len(head_ids)] == head_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits
    return float(token_logprobs(logits, torch.tensor([ids]))[0, len(head_ids) - 1 :].sum())


def test_dpo_continues_the_sft_adapter_against_the_sft_model(
    sft_run: SftRun, data_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.local_backend import LocalBackend
    from training.local_model import LocalBase, load_tokenizer

    sft_adapter = lora_dir(sft_run.result.reference)
    pairs = preference_sample(data_dir, 2)
    request = request_for(
        "dpo", sft_run.result.reference, learning_rate=1e-4, batch_size=2, epochs=2, max_length=256,
        lora=LoraConfig(rank=4, alpha=8), dpo=DpoConfig(beta=0.1),
    )  # fmt: skip
    start = StartPoint(sft_run.result.reference, None, "smollm2-135m")
    out_dir = sft_run.out_dir.parent / "dpo-1"
    LocalBackend().check(request, start)
    result = LocalBackend().train_dpo(
        request, start, pairs, out_dir, StepLog(out_dir / "train_log.jsonl", True)
    )

    # One adapter over the original base carries SFT + DPO: the parent's rank and targets, not the config's.
    adapter = out_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    parent = json.loads((sft_adapter / "adapter_config.json").read_text())
    assert (
        config["r"] == 8
        and config["lora_alpha"] == 16
        # peft writes target_modules from a set: the order follows the process's string hash seed
        and sorted(config["target_modules"]) == sorted(parent["target_modules"])
    )
    assert result.details["lora"]["continued_from"] == str(sft_adapter)
    ref = parse_checkpoint(result.reference)
    assert isinstance(ref, HfRef) and Path(ref.path) == sft_run.base_dir.resolve()
    assert lora_tensors(adapter).keys() == lora_tensors(sft_adapter).keys()

    steps = read_log(out_dir / "train_log.jsonl")
    assert [s["step"] for s in steps] == [1, 2] and result.steps == 2 and result.examples == 4
    first = steps[0]
    # Step 1 scores the untouched start policy against the reference: equal models, zero implicit rewards.
    assert first["reward_chosen"] == pytest.approx(0, abs=1e-4)
    assert first["reward_rejected"] == pytest.approx(0, abs=1e-4)
    assert first["reward_margin"] == pytest.approx(0, abs=1e-4) and first["loss"] == pytest.approx(
        math.log(2)
    )

    # ... and that policy is the SFT model, not the bare base (whose log-probabilities differ).
    tokenizer = load_tokenizer(LocalBase(sft_run.base_dir, None))
    base_model = AutoModelForCausalLM.from_pretrained(sft_run.base_dir)
    sft_model = PeftModel.from_pretrained(base_model, str(sft_adapter)).eval()
    sft_mean = sum(_completion_logp(sft_model, tokenizer, p.prompt, p.chosen) for p in pairs) / 2
    with sft_model.disable_adapter():
        base_mean = sum(_completion_logp(sft_model, tokenizer, p.prompt, p.chosen) for p in pairs) / 2
    assert first["logp_chosen"] == pytest.approx(sft_mean, abs=0.05)
    assert abs(base_mean - sft_mean) > 0.5, (base_mean, sft_mean)

    moved = [
        float((t - lora_tensors(sft_adapter)[name]).abs().max()) for name, t in lora_tensors(adapter).items()
    ]
    assert max(moved) > 0  # DPO trained the continued adapter


def test_reference_adapter_is_the_frozen_parent(sft_run: SftRun) -> None:
    import torch

    from training.local_model import (
        LocalBase,
        load_for_training,
        load_reference,
        reference_policy,
    )

    sft_adapter = lora_dir(sft_run.result.reference)
    base = LocalBase(sft_run.base_dir, sft_adapter)
    model, tokenizer, settings = load_for_training(base, LoraConfig(rank=2, alpha=2), "cpu", 0)
    assert settings.continued and settings.rank == 8 and settings.alpha == 16
    name = load_reference(model, base)
    assert name == "reference"
    ids = torch.tensor([tokenizer("Hello there, how are you?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        start = model(input_ids=ids).logits
        for param_name, param in model.named_parameters():
            if "lora_B.default" in param_name:
                param.add_(0.05)  # what training does to the policy, never to the reference
        moved = model(input_ids=ids).logits
        with reference_policy(model, name):
            reference = model(input_ids=ids).logits
    assert float((moved - start).abs().max()) > 1e-3
    assert torch.allclose(reference, start, atol=1e-5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)  # the reference stays frozen

    fresh = LocalBase(sft_run.base_dir, None)
    assert load_reference(load_for_training(fresh, LoraConfig(rank=2, alpha=2), "cpu", 0)[0], fresh) is None


@pytest.mark.parametrize(
    "reference",
    [
        "tinker-base:meta-llama/Llama-3.2-1B",
        "tinker://run-1/sampler_weights/000010",
        "http://127.0.0.1:8000/v1#my-model",
        "vllm:/models/base+lora:/models/sft",
    ],
)
def test_start_points_without_local_weights_are_refused(reference: str, tmp_path: Path) -> None:
    from training.local_backend import LocalBackend
    from training.local_model import prepare_base

    start = StartPoint(reference, None, "x")
    for attempt in (
        lambda: prepare_base(start, tmp_path),
        lambda: LocalBackend().check(request_for("sft", reference), start),
    ):
        with pytest.raises(UsageError) as error:
            attempt()
        message = error.value.message
        assert f"'{reference}'" in message
        assert all(form in message for form in ("embedded", "gguf:PATH", "hf:DIR", "hf:DIR+lora:DIR"))
    assert not any(tmp_path.iterdir())


def test_embedded_export_is_made_once_and_reused(
    exported_hf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.hf_export
    from adapters.common import file_fingerprint
    from adapters.llama_cpp import embedded_gguf_path
    from training.local_model import _export_name, prepare_base

    gguf = embedded_gguf_path()
    target = tmp_path / _export_name(gguf, file_fingerprint(gguf))
    target.mkdir()
    for item in exported_hf_dir.iterdir():  # the session's export, as if a first stage had made it here
        if item.suffix == ".safetensors":
            (target / item.name).symlink_to(item)
        else:
            shutil.copy(item, target / item.name)

    def no_export(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a matching export was made again")

    monkeypatch.setattr(adapters.hf_export, "export_gguf", no_export)
    start = StartPoint("embedded", None, "smollm2-135m")
    assert prepare_base(start, tmp_path).base_dir == target.resolve()

    record = json.loads((target / "harness_export.json").read_text())
    (target / "harness_export.json").write_text(json.dumps({**record, "source_fingerprint": "other-weights"}))
    calls: list[Path] = []

    def fake_export(source: Path, out_dir: Path, force: bool = False) -> None:
        calls.append(source)
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_bytes(b"")
        (out_dir / "harness_export.json").write_text(json.dumps(record))

    monkeypatch.setattr(adapters.hf_export, "export_gguf", fake_export)
    assert prepare_base(start, tmp_path).base_dir == target.resolve()
    assert calls == [gguf] and json.loads((target / "harness_export.json").read_text()) == record
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no staging folder left


def test_hf_start_without_a_chat_template_is_refused(exported_hf_dir: Path, tmp_path: Path) -> None:
    from training.local_backend import LocalBackend

    bare = tmp_path / "no-template"
    bare.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(exported_hf_dir / name, bare / name)
    (bare / "model.safetensors").symlink_to(exported_hf_dir / "model.safetensors")
    reference = f"hf:{bare}"
    with pytest.raises(UsageError, match="no chat template"):
        LocalBackend().check(request_for("sft", reference), StartPoint(reference, None, "x"))
    missing = f"hf:{tmp_path / 'nowhere'}"
    with pytest.raises(UsageError, match="does not exist"):
        LocalBackend().check(request_for("sft", missing), StartPoint(missing, None, "x"))


def test_exported_base_never_replaces_a_folder_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from adapters.common import file_fingerprint
    from adapters.hf_export import EXPORT_RECORD
    from harness.errors import UsageError
    from training import local_model

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))

    def fake_export(source: Path, out: Path, force: bool = False) -> None:  # the real one takes ~10 s
        out.mkdir(parents=True)
        (out / EXPORT_RECORD).write_text(json.dumps({"source_fingerprint": file_fingerprint(source)}))
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr("adapters.hf_export.export_gguf", fake_export)
    cache = tmp_path / "_base"
    cache.mkdir()
    target = cache / local_model._export_name(gguf, file_fingerprint(gguf))
    target.mkdir()
    (target / "precious.txt").write_text("keep")
    with pytest.raises(UsageError, match="left untouched"):
        local_model.exported_base(gguf, cache)
    assert (target / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in cache.iterdir()) == [target.name]  # no staging folder left behind
    shutil.rmtree(target)
    target.mkdir()  # a stale export of other weights, which the harness wrote: replaced
    (target / EXPORT_RECORD).write_text(json.dumps({"source_fingerprint": "other weights"}))
    assert local_model.exported_base(gguf, cache) == target.resolve()
    assert json.loads((target / EXPORT_RECORD).read_text())["source_fingerprint"] == file_fingerprint(gguf)
