"""The tinker training backend against an in-process STAND-IN for the service
(tests/support/tinker_training_standin.py: the SDK's real types, its method signatures, and a small torch
bigram "model" whose logprobs, losses and Adam steps are real numbers). Nothing here reaches Tinker.

The tokenizer is the embedded SmolLM2 model's (ChatML), converted from its GGUF, so the Qwen3 renderers
run on a real tokenizer; Llama-3 examples use it with the Llama-3 chat tokens added.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import time
from pathlib import Path
from typing import Any

import pytest

tinker = pytest.importorskip("tinker")
torch = pytest.importorskip("torch")

from adapters.tinker_renderers import RENDERER_ENV, TOKENIZER_ENV, Renderer  # noqa: E402
from harness.errors import DataError, EndpointError, MissingExtraError, UsageError  # noqa: E402
from harness.lineage import CheckpointEntry  # noqa: E402
from harness.types import Message, Sample  # noqa: E402
from tests.support.tinker_training_standin import (  # noqa: E402
    BigramModel,
    SamplingStandin,
    ServiceStandin,
    TrainingStandin,
    standin_factory,
)
from training.backend import StartPoint, StepLog, get_backend, learning_rate_at  # noqa: E402
from training.config import DpoConfig, LoraConfig, OptimConfig, RlConfig, StageConfig, TrainRequest  # noqa: E402
from training.data import ChatExample, PreferencePair  # noqa: E402
from training.prompts import RlPrompt  # noqa: E402
from training.rl import RolloutDatum, clipped_token_objective  # noqa: E402
from training.tinker_backend import TinkerBackend  # noqa: E402
from training.tinker_session import Origin, Session, TinkerPolicy  # noqa: E402

BASE = "Qwen/Qwen3-8B"
START = StartPoint(reference=f"tinker-base:{BASE}", entry=None, base_model=f"tinker-base:{BASE}")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    from adapters.llama_cpp import embedded_gguf_path

    gguf = embedded_gguf_path()
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-standin-not-a-real-key")
    monkeypatch.setenv(TOKENIZER_ENV, str(tokenizer_dir))
    monkeypatch.setenv(RENDERER_ENV, "qwen3_instruct")  # SmolLM2 speaks ChatML, like Qwen3


def service_for(tokenizer: Any, **kwargs: Any) -> ServiceStandin:
    return ServiceStandin(tokenizer, len(tokenizer), **kwargs)


def backend_for(service: ServiceStandin, **kwargs: Any) -> TinkerBackend:
    return TinkerBackend(service_factory=standin_factory(service), **kwargs)


def request_for(stage: str = "sft", **config: Any) -> TrainRequest:
    config.setdefault("base", f"tinker-base:{BASE}")
    config.setdefault("lora", LoraConfig(rank=8))
    return TrainRequest(stage, "tinker", StageConfig(**config), source="test")  # type: ignore[arg-type]


def chat(i: int) -> ChatExample:
    return ChatExample(
        f"ex-{i}",
        (
            Message("system", "Be brief."),
            Message("user", f"What is {i} + {i}?"),
            Message("assistant", f"It is {2 * i}."),
        ),
    )


def step_log(tmp_path: Path) -> StepLog:
    return StepLog(tmp_path / "train_log.jsonl", quiet=True)


def ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def llama_tokenizer(tokenizer: Any) -> Any:
    from transformers import AutoTokenizer

    llama = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    llama.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|begin_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ]
        }
    )
    return llama


# -- the stand-in is held to the SDK ------------------------------------------------------------


@pytest.mark.parametrize(
    ("standin_method", "sdk_method"),
    [
        (ServiceStandin.create_lora_training_client, tinker.ServiceClient.create_lora_training_client),
        (
            ServiceStandin.create_training_client_from_state,
            tinker.ServiceClient.create_training_client_from_state,
        ),
        (ServiceStandin.create_sampling_client, tinker.ServiceClient.create_sampling_client),
        (ServiceStandin.close, tinker.ServiceClient.close),
        (TrainingStandin.forward_backward, tinker.TrainingClient.forward_backward),
        (TrainingStandin.forward_backward_custom, tinker.TrainingClient.forward_backward_custom),
        (TrainingStandin.optim_step, tinker.TrainingClient.optim_step),
        (TrainingStandin.save_state, tinker.TrainingClient.save_state),
        (TrainingStandin.save_weights_for_sampler, tinker.TrainingClient.save_weights_for_sampler),
        (
            TrainingStandin.save_weights_and_get_sampling_client,
            tinker.TrainingClient.save_weights_and_get_sampling_client,
        ),
        (TrainingStandin.get_info, tinker.TrainingClient.get_info),
        (SamplingStandin.sample, tinker.SamplingClient.sample),
        (SamplingStandin.compute_logprobs, tinker.SamplingClient.compute_logprobs),
        (SamplingStandin.get_base_model, tinker.SamplingClient.get_base_model),
    ],
)
def test_standin_signatures_match_the_installed_sdk(standin_method: Any, sdk_method: Any) -> None:
    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(standin_method) == shape(sdk_method)


def test_the_sdk_has_the_loss_and_config_the_backend_uses() -> None:
    from typing import get_args

    assert {"cross_entropy", "ppo"} <= set(get_args(tinker.types.LossFnType))
    data = [
        tinker.Datum(
            model_input=tinker.ModelInput.from_ints([1, 2]),
            loss_fn_inputs={"target_tokens": [2, 3], "logprobs": [0.0, -1.0], "advantages": [0.0, 0.5]},
        )
    ]
    fb = tinker.types.ForwardBackwardInput(
        data=data, loss_fn="ppo", loss_fn_config={"clip_low_threshold": 0.8, "clip_high_threshold": 1.28}
    )
    assert fb.loss_fn_config == {"clip_low_threshold": 0.8, "clip_high_threshold": 1.28}
    assert set(inspect.signature(tinker.AdamParams).parameters) >= {
        "learning_rate",
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
    }


def test_get_backend_builds_the_tinker_backend() -> None:
    assert isinstance(get_backend("tinker"), TinkerBackend)


# -- supervised examples: the renderers' loss masks --------------------------------------------------


def test_supervised_example_chatml_by_hand(tokenizer: Any) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    messages = (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"))
    prompt = [
        *ids(tokenizer, "<|im_start|>system\n"),
        *ids(tokenizer, "Be brief."),
        im_end,
        *ids(tokenizer, "\n<|im_start|>user\n"),
        *ids(tokenizer, "Hi"),
        im_end,
        *ids(tokenizer, "\n<|im_start|>assistant\n"),
    ]
    answer = [*ids(tokenizer, "Hello!"), im_end]
    renderer = Renderer("qwen3_instruct", tokenizer)
    tokens, weights = renderer.build_supervised_example(messages)
    assert tokens == prompt + answer
    assert weights == [0.0] * len(prompt) + [1.0] * len(answer)  # the end-of-turn token is learned too
    assert (
        renderer.build_generation_prompt(messages[:-1]).to_ints() == prompt
    )  # trained on what sampling sees

    # Qwen3 (thinking) frames the produced turn with the empty block its template writes; it is learned.
    tokens, weights = Renderer("qwen3", tokenizer).build_supervised_example(messages)
    framed = [*ids(tokenizer, "<think>\n\n</think>\n\nHello!"), im_end]  # one piece, tokenized whole
    assert tokens == prompt + framed and weights == [0.0] * len(prompt) + [1.0] * len(framed)
    # With thinking disabled the generation prompt supplies the block, so it carries no loss.
    spaced = (*messages[:-1], Message("assistant", " Hello!"))
    tokens, weights = Renderer("qwen3_disable_thinking", tokenizer).build_supervised_example(spaced)
    assert tokens[: len(prompt)] == prompt
    trained = [t for t, w in zip(tokens, weights, strict=True) if w]
    assert tokenizer.decode(trained) == " Hello!<|im_end|>"
    # As in the cookbook, a render that does not start with the generation prompt is refused for this
    # renderer: SmolLM2's tokenizer merges the block's last newline into "\nHello" (Qwen's does not).
    with pytest.raises(DataError, match="qwen3_disable_thinking has thinking turned off"):
        Renderer("qwen3_disable_thinking", tokenizer).build_supervised_example(messages)


def test_supervised_example_llama3_and_role_colon_by_hand(tokenizer: Any) -> None:
    llama = llama_tokenizer(tokenizer)
    messages = (
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "More?"),
        Message("assistant", "No."),
    )
    renderer = Renderer("llama3", llama)
    tokens, weights = renderer.build_supervised_example(messages, "all_assistant_messages")
    assert llama.decode(tokens) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nMore?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nNo.<|eot_id|>"
    )
    # Two trained spans, one per assistant turn, each its text and end-of-turn token (headers excluded).
    runs = "".join("1" if w else "0" for w in weights)
    assert [llama.decode([tokens[j] for j in span]) for span in _runs(runs)] == [
        "Hello!<|eot_id|>",
        "No.<|eot_id|>",
    ]
    last_only = renderer.build_supervised_example(messages)[1]
    assert sum(last_only) == len(ids(llama, "No.<|eot_id|>"))

    colon = Renderer("role_colon", tokenizer)
    tokens, weights = colon.build_supervised_example(messages[:2])
    assert tokenizer.decode(tokens) == f"{tokenizer.bos_token}User: Hi\n\nAssistant: Hello!\n\nUser:"
    assert tokenizer.decode([t for t, w in zip(tokens, weights, strict=True) if w]) == " Hello!\n\nUser:"


def _runs(mask: str) -> list[range]:
    spans, start = [], None
    for i, c in enumerate(mask + "0"):
        if c == "1" and start is None:
            start = i
        elif c == "0" and start is not None:
            spans.append(range(start, i))
            start = None
    return spans


# -- SFT ------------------------------------------------------------------------------------------


def test_sft_datums_steps_schedule_and_saved_paths(env: None, tokenizer: Any, tmp_path: Path) -> None:
    service = service_for(tokenizer)
    optim = OptimConfig(
        learning_rate=0.05,
        batch_size=2,
        epochs=2,
        max_steps=5,
        lr_schedule="linear",
        warmup_steps=1,
        weight_decay=0.01,
    )
    request = request_for(optim=optim, seed=3)
    examples = [chat(i) for i in range(5)]
    out_dir = tmp_path / "sft-7"
    out_dir.mkdir()
    log = step_log(tmp_path)
    result = backend_for(service).train_sft(request, START, examples, out_dir, log)

    assert service.created_with == [
        {"method": "create_lora_training_client", "base_model": BASE, "rank": 8, "seed": 3}
    ]
    [client] = service.created
    # 5 examples in batches of 2: 3 steps per epoch, 6 in 2 epochs, capped at 5; each epoch sees each once.
    assert [len(c.data) for c in client.calls] == [2, 2, 1, 2, 2]
    firsts = [d.model_input.to_ints() for c in client.calls[:3] for d in c.data]
    assert len({tuple(x) for x in firsts}) == 5
    assert {c.loss_fn for c in client.calls} == {"cross_entropy"} and {
        c.loss_fn_config for c in client.calls
    } == {None}
    assert [p.learning_rate for p in client.optim_steps] == pytest.approx(
        [learning_rate_at(i, 5, 0.05, "linear", 1) for i in range(5)]
    )
    assert {(p.beta1, p.beta2, p.eps, p.weight_decay) for p in client.optim_steps} == {
        (0.9, 0.95, 1e-8, 0.01)
    }

    # The datum: inputs are the conversation minus its last token, targets shifted by one, weights 0 on
    # the prompt and equal on the answer and its end-of-turn token (the cookbook's "mean" reduction).
    renderer = Renderer("qwen3_instruct", tokenizer)
    datum = client.calls[0].data[0]
    example = next(
        e
        for e in examples
        if renderer.build_supervised_example(e.messages)[0][:-1] == datum.model_input.to_ints()
    )
    tokens, weights = renderer.build_supervised_example(example.messages)
    assert datum.loss_fn_inputs["target_tokens"].tolist() == tokens[1:]
    trained = sum(weights[1:])
    assert datum.loss_fn_inputs["weights"].tolist() == pytest.approx([w / trained for w in weights[1:]])
    assert datum.loss_fn_inputs["target_tokens"].tolist()[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert datum.loss_fn_inputs["weights"].tolist()[-1] > 0

    # The logged loss is the mean NLL per trained token of the step's forward pass.
    first = client.calls[0]
    total = sum(
        sum(lp * w for lp, w in zip(lps, d.loss_fn_inputs["weights"].tolist(), strict=True))
        for lps, d in zip(first.logprobs, first.data, strict=True)
    )
    weight = sum(sum(d.loss_fn_inputs["weights"].tolist()) for d in first.data)
    assert log.records[0]["loss"] == pytest.approx(-total / weight, rel=1e-5)
    assert [r["step"] for r in log.records] == [1, 2, 3, 4, 5] and log.records[-1]["epoch"] == 1
    assert log.records[-1]["loss"] < log.records[0]["loss"]  # the stand-in's model does learn

    assert result.reference == "tinker://standin-run-1/sampler_weights/sft-7"
    assert result.details["tinker_state_path"] == "tinker://standin-run-1/weights/sft-7"
    assert (result.steps, result.examples) == (5, 9)
    assert result.details["lora_rank"] == 8 and result.details["tinker_base_model"] == BASE
    assert result.details["renderer"] == "qwen3_instruct" and result.details["loss_fn"] == "cross_entropy"
    train_tokens = sum(d.model_input.length for c in client.calls for d in c.data)
    assert result.details["train_tokens"] == train_tokens
    assert result.cost_usd == pytest.approx(train_tokens * 0.44 / 1e6)  # Qwen3-8B: $0.44 per 1M trained
    assert service.closed == ["success"]
    assert (out_dir / "tinker.json").is_file()


def test_max_length_truncates_and_unpriced_models_cost_none(
    env: None, tokenizer: Any, tmp_path: Path
) -> None:
    service = service_for(tokenizer)
    request = request_for(
        optim=OptimConfig(batch_size=4, max_length=12), base="tinker-base:meta-llama/Llama-3.2-1B"
    )
    start = StartPoint("tinker-base:meta-llama/Llama-3.2-1B", None, "tinker-base:meta-llama/Llama-3.2-1B")
    result = backend_for(service).train_sft(request, start, [chat(1), chat(2)], tmp_path, step_log(tmp_path))
    [call] = service.created[0].calls
    assert {d.model_input.length for d in call.data} == {11}
    assert result.cost_usd is None and result.details["train_tokens"] == 22


# -- continuing from a recorded state; DPO --------------------------------------------------------


def sft_then(tokenizer: Any, tmp_path: Path, service: ServiceStandin) -> StartPoint:
    result = backend_for(service).train_sft(
        request_for(optim=OptimConfig(learning_rate=0.05, batch_size=2)),
        START,
        [chat(i) for i in range(4)],
        tmp_path,
        step_log(tmp_path),
    )
    entry = CheckpointEntry(
        name="sft-1",
        reference=result.reference,
        stage="sft",
        base_model=START.base_model,
        details=dict(result.details),
    )
    return StartPoint(result.reference, entry, START.base_model)


def pair(i: int) -> PreferencePair:
    return PreferencePair(f"p{i}", (Message("user", f"Say {i}."),), f"{i}.", f"No, {i + 1}.")


def test_dpo_continues_from_the_sft_state_and_matches_a_hand_computation(
    env: None, tokenizer: Any, tmp_path: Path
) -> None:
    service = service_for(tokenizer)
    start = sft_then(tokenizer, tmp_path, service)
    sft_client = service.created[0]
    request = request_for(
        "dpo",
        optim=OptimConfig(learning_rate=0.05, batch_size=2, epochs=2, lr_schedule="constant"),
        dpo=DpoConfig(beta=0.5),
    )
    log = step_log(tmp_path)
    result = backend_for(service).train_dpo(request, start, [pair(1), pair(2)], tmp_path, log)

    assert service.created_with[-1] == {
        "method": "create_training_client_from_state",
        "path": "tinker://standin-run-1/weights/" + tmp_path.name,
    }
    dpo_client = service.created[1]
    # The reference is the start model: the SFT weights, snapshotted before any DPO step.
    [reference] = dpo_client.samplers
    assert torch.equal(reference.model.table, service.states[start.details["tinker_state_path"]][0].table)
    assert not torch.equal(reference.model.table, BigramModel.for_base(BASE, len(tokenizer)).table)
    assert torch.equal(reference.model.table, sft_client.model.table)

    assert [c.kind for c in dpo_client.calls] == ["forward_backward_custom"] * 2
    for step, call in enumerate(dpo_client.calls):
        assert len(call.data) == 4  # chosen, rejected, chosen, rejected
        chosen, rejected, ref = [], [], []
        for index, (datum, lps) in enumerate(zip(call.data, call.logprobs, strict=True)):
            weights = datum.loss_fn_inputs["weights"].tolist()
            assert set(weights) == {0.0, 1.0}  # sums, not means ("none" reduction)
            sequence = [*datum.model_input.to_ints(), datum.loss_fn_inputs["target_tokens"].tolist()[-1]]
            ref_lps = reference.model.sequence_logprobs(sequence)[1:]
            policy = sum(lp * w for lp, w in zip(lps, weights, strict=True))
            ref.append(sum(float(lp) * w for lp, w in zip(ref_lps, weights, strict=True)))  # type: ignore[arg-type]
            (chosen if index % 2 == 0 else rejected).append(policy)
        margins = [
            0.5 * ((c - ref[2 * i]) - (r - ref[2 * i + 1]))
            for i, (c, r) in enumerate(zip(chosen, rejected, strict=True))
        ]
        loss = sum(-math.log(1 / (1 + math.exp(-m))) for m in margins) / 2
        record = log.records[step]
        assert record["loss"] == pytest.approx(loss, rel=1e-4) == call.loss
        assert record["margin"] == pytest.approx(sum(margins) / 2, rel=1e-4, abs=1e-6)
        assert record["accuracy"] == sum(m > 0 for m in margins) / 2
    assert log.records[0]["loss"] == pytest.approx(math.log(2))  # policy == reference at the first step
    assert log.records[1]["margin"] > 0  # one step of DPO prefers the chosen answers
    assert len(reference.logprob_calls) == 8  # every sequence of both steps
    assert result.reference == f"tinker://standin-run-2/sampler_weights/{tmp_path.name}"
    assert result.details["started_from"] == start.details["tinker_state_path"]
    assert result.details["prefill_tokens"] == sum(len(s) for s in reference.logprob_calls)
    assert result.details["train_tokens"] == 2 * sum(
        d.model_input.length for c in dpo_client.calls for d in c.data
    )


def test_a_sampler_path_without_a_state_is_refused_before_any_call(
    env: None, tokenizer: Any, tmp_path: Path
) -> None:
    service = service_for(tokenizer)
    entry = CheckpointEntry(
        name="x", reference="tinker://run-9/sampler_weights/final", stage="sft", base_model=START.base_model
    )
    start = StartPoint(entry.reference, entry, START.base_model)
    with pytest.raises(UsageError, match=r"sampler checkpoint.*no Tinker training state.*tinker-base:MODEL"):
        backend_for(service).train_dpo(request_for("dpo"), start, [pair(1)], tmp_path, step_log(tmp_path))
    assert service.created_with == []


def test_an_unknown_state_is_an_endpoint_error(env: None, tokenizer: Any, tmp_path: Path) -> None:
    service = service_for(tokenizer)
    entry = CheckpointEntry(
        name="x",
        reference="tinker://run-9/sampler_weights/final",
        stage="sft",
        base_model=START.base_model,
        details={"tinker_state_path": "tinker://run-9/weights/gone"},
    )
    start = StartPoint(entry.reference, entry, START.base_model)
    with pytest.raises(EndpointError, match=r"failed while loading the training state .*not found"):
        backend_for(service).train_dpo(request_for("dpo"), start, [pair(1)], tmp_path, step_log(tmp_path))


@pytest.mark.parametrize("reference", ["embedded", "hf:some/dir", "gguf:model.gguf", "tinker-base:"])
def test_other_start_points_list_the_accepted_forms(env: None, reference: str) -> None:
    start = StartPoint(reference, None, reference)
    with pytest.raises(UsageError, match=r"tinker-base:MODEL .*tinker://RUN/sampler_weights/ID"):
        TinkerBackend().check(request_for(), start)


# -- RL: the update ---------------------------------------------------------------------------------


def open_policy(service: ServiceStandin, kl: bool = False) -> tuple[TinkerPolicy, TrainingStandin]:
    session = Session(request_for("rlvr"), Origin(BASE, None, None), standin_factory(service), 5.0, 30.0)
    asyncio.run(session.open())
    reference = asyncio.run(session.sampler("reference")) if kl else None
    return TinkerPolicy(session, reference), service.created[0]


def rollouts(client: TrainingStandin, offsets: tuple[float, ...] = ()) -> list[RolloutDatum]:
    out = []
    for completion, advantage in (((4, 5), 1.0), ((6, 7, 8, 9), -1.0)):
        prompt = (1, 2, 3)
        lps = client.model.sequence_logprobs([*prompt, *completion])[len(prompt) :]
        shifted = [float(lp) + (offsets[i] if i < len(offsets) else 0.0) for i, lp in enumerate(lps)]  # type: ignore[arg-type]
        out.append(RolloutDatum(prompt, completion, tuple(shifted), advantage))
    return out


def test_rl_sampling_maps_sequences_to_completions(env: None, tokenizer: Any) -> None:
    from harness.types import GenerationSettings

    service = service_for(tokenizer, responder=lambda prompt, i: "one two three four five")
    policy, client = open_policy(service)
    prompt = policy.prompt_tokens((Message("user", "Count."),))
    assert (
        prompt
        == Renderer("qwen3_instruct", tokenizer)
        .build_generation_prompt([Message("user", "Count.")])
        .to_ints()
    )
    [group] = asyncio.run(
        policy.sample([prompt], GenerationSettings(max_tokens=64, temperature=1.0, n=2, seed=4))
    )
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    first = group[0]
    assert len(group) == 2 and first.finish_reason == "stop" and first.tokens[-1] == im_end
    assert first.text == "one two three four five"
    expected = client.model.sequence_logprobs([*prompt, *first.tokens])[len(prompt) :]
    assert first.logprobs == pytest.approx(expected, abs=1e-5)  # the snapshot's own logprobs
    [group] = asyncio.run(
        policy.sample([prompt], GenerationSettings(max_tokens=3, temperature=1.0, n=1, seed=4))
    )
    assert group[0].finish_reason == "length" and len(group[0].tokens) == 3
    assert len(client.samplers) == 1  # no update in between: the same published weights
    [call, _] = client.samplers[0].calls
    assert call.sampling_params.model_dump() == {
        "max_tokens": 64, "seed": 4, "stop": [im_end], "temperature": 1.0, "top_k": -1, "top_p": 1.0,
    }  # fmt: skip


def test_rl_update_scales_advantages_per_token_and_sends_ppo(env: None, tokenizer: Any) -> None:
    service = service_for(tokenizer)
    policy, client = open_policy(service)
    batch = rollouts(client)
    rl = RlConfig(clip_low=0.2, clip_high=0.28, loss_aggregation="token")
    stats = asyncio.run(policy.update(batch, rl, 0.5))
    [call] = client.calls
    assert call.loss_fn == "ppo"
    assert call.loss_fn_config == {"clip_low_threshold": 0.8, "clip_high_threshold": 1.28}
    first, second = call.data
    assert first.model_input.to_ints() == [1, 2, 3, 4] and first.loss_fn_inputs["target_tokens"].tolist() == [
        2,
        3,
        4,
        5,
    ]
    assert first.loss_fn_inputs["advantages"].tolist() == pytest.approx(
        [0, 0, 1 / 6, 1 / 6]
    )  # 6 completion tokens
    assert second.loss_fn_inputs["advantages"].tolist() == pytest.approx(
        [0, 0, -1 / 6, -1 / 6, -1 / 6, -1 / 6]
    )
    assert first.loss_fn_inputs["logprobs"].tolist()[:2] == [0.0, 0.0]
    assert first.loss_fn_inputs["logprobs"].tolist()[2:] == pytest.approx(list(batch[0].sampler_logprobs))
    # On-policy, every ratio is 1: the loss is -(sum of scaled advantages) = -(2 - 4) / 6.
    assert stats["loss"] == pytest.approx(1 / 3) and call.loss == pytest.approx(1 / 3)
    assert stats["clip_fraction"] == 0 and stats["kl_sample_train"] == pytest.approx(0, abs=1e-6)
    assert client.optim_steps[0].learning_rate == 0.5

    # A second gradient step on the same rollouts (updates_per_batch > 1): ratios move and clip.
    stats = asyncio.run(policy.update(batch, rl, 0.5))
    call = client.calls[1]
    expected = 0.0
    for rollout, lps in zip(batch, call.logprobs, strict=True):
        for t, old in enumerate(rollout.sampler_logprobs):
            ratio = math.exp(lps[len(rollout.prompt_tokens) - 1 + t] - old)
            expected -= clipped_token_objective(ratio, rollout.advantage, 0.2, 0.28) / 6
    assert stats["loss"] == pytest.approx(expected, rel=1e-4) and call.loss == pytest.approx(
        expected, rel=1e-4
    )
    assert stats["loss"] < 1 / 3 and stats["clip_fraction"] > 0

    sequence = RlConfig(loss_aggregation="sequence")
    asyncio.run(policy.update(batch, sequence, 0.1))
    first, second = client.calls[2].data
    assert first.loss_fn_inputs["advantages"].tolist()[2:] == pytest.approx([1 / (2 * 2)] * 2)
    assert second.loss_fn_inputs["advantages"].tolist()[2:] == pytest.approx([-1 / (4 * 2)] * 4)


def test_rl_kl_penalty_against_the_start_policy(env: None, tokenizer: Any) -> None:
    service = service_for(tokenizer)
    policy, client = open_policy(service, kl=True)
    offsets = (0.3, -0.1)
    batch = rollouts(client, offsets)  # sampler logprobs differ from the start policy's by these
    stats = asyncio.run(policy.update(batch, RlConfig(kl_coef=0.5, loss_aggregation="token"), 0.1))
    diffs = [[0.3, -0.1], [0.3, -0.1, 0.0, 0.0]]
    mean = sum(sum(d) for d in diffs) / 6
    assert stats["kl_policy_base"] == pytest.approx(mean, abs=1e-6)
    for rollout, datum, diff in zip(batch, client.calls[0].data, diffs, strict=True):
        expected = [(rollout.advantage + 0.5 * (mean - x)) / 6 for x in diff]
        assert datum.loss_fn_inputs["advantages"].tolist()[2:] == pytest.approx(expected, abs=1e-6)
    assert len(policy.reference.logprob_calls) == 2
    asyncio.run(policy.update(batch, RlConfig(kl_coef=0.5), 0.1))
    assert len(policy.reference.logprob_calls) == 2  # the same rollouts: reference logprobs reused


# -- RL: the whole loop -----------------------------------------------------------------------------


def gsm8k_prompt(i: int, question: str, target: str) -> RlPrompt:
    sample = Sample(f"q{i}", (Message("user", question),), target)
    return RlPrompt("gsm8k", sample, sample.messages)


def test_rlvr_dynamic_sampling_drops_uninformative_groups(env: None, tokenizer: Any, tmp_path: Path) -> None:
    def responder(prompt: str, index: int) -> str:
        if "ducks" in prompt:  # every completion right: no gradient, the group is dropped
            return "The answer is 18."
        return "The answer is 7." if index % 2 == 0 else "The answer is 8."  # half right

    service = service_for(tokenizer, responder=responder)
    prompts = [
        gsm8k_prompt(0, "Janet's ducks lay 16 eggs. How many?", "18"),
        gsm8k_prompt(1, "What is 3 + 4?", "7"),
    ]
    rl = RlConfig(
        steps=3,
        groups_per_step=1,
        group_size=4,
        max_new_tokens=16,
        temperature=0.9,
        top_p=0.95,
        max_sampling_rounds=2,
    )
    log = step_log(tmp_path)
    result = backend_for(service).train_rlvr(
        request_for("rlvr", rl=rl, seed=5), START, prompts, tmp_path, log
    )

    [client] = service.created
    assert all(r.get("groups_dropped", 0) + r.get("groups_kept", 0) >= 1 for r in log.records)
    trained = [r for r in log.records if "loss" in r]
    assert len(client.calls) == len(trained) == result.steps >= 1
    assert sum(r["groups_dropped"] for r in log.records) >= 1  # the ducks prompt came up and was dropped
    for call in client.calls:  # only the informative prompt's completions are trained on
        assert call.loss_fn == "ppo" and len(call.data) == 4
        assert all("3 + 4" in tokenizer.decode(d.model_input.to_ints()) for d in call.data)
        advantages = [sum(d.loss_fn_inputs["advantages"].tolist()) for d in call.data]
        assert [a > 0 for a in advantages] == [True, False, True, False]
    # Rollouts come from freshly published weights: a new sampler before the first round and after
    # every update (the last update's is never needed), never one per round.
    samplers = client.samplers
    assert len(samplers) == 1 + len(trained) - (1 if log.records[-1].get("loss") is not None else 0)
    assert all(not torch.equal(a.model.table, b.model.table) for a, b in itertools.pairwise(samplers))
    sample_calls = [c for s in samplers for c in s.calls]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert {c.num_samples for c in sample_calls} == {4}
    params = sample_calls[0].sampling_params.model_dump()
    assert (params["max_tokens"], params["temperature"], params["top_p"], params["stop"]) == (
        16,
        0.9,
        0.95,
        [im_end],
    )
    assert result.examples == 4 * len(sample_calls)
    usage = result.details
    assert usage["sampled_tokens"] == sum(
        len(ids(tokenizer, responder(c.prompt_text, i))) + 1 for c in sample_calls for i in range(4)
    )
    assert result.cost_usd == pytest.approx(
        (usage["prefill_tokens"] * 0.195 + usage["sampled_tokens"] * 0.60 + usage["train_tokens"] * 0.44)
        / 1e6
    )
    assert result.details["loss_fn"] == "ppo" and result.reference.startswith(
        "tinker://standin-run-1/sampler_weights/"
    )


# -- failing fast ---------------------------------------------------------------------------------


def test_no_credentials_is_a_usage_error_before_any_call(
    env: None, tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINKER_API_KEY")
    monkeypatch.delenv("TINKER_CREDENTIAL_CMD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.tinker/credentials.json
    made: list[int] = []

    def factory() -> ServiceStandin:
        made.append(1)
        return service_for(tokenizer)

    backend = TinkerBackend(service_factory=factory)
    with pytest.raises(UsageError, match="needs a Tinker API key"):
        backend.check(request_for(), START)
    with pytest.raises(UsageError, match="needs a Tinker API key"):
        backend.train_sft(request_for(), START, [chat(1)], tmp_path, step_log(tmp_path))
    assert made == []


def test_missing_sdk_is_a_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters import options

    real = options.importlib.util.find_spec
    monkeypatch.setattr(
        options.importlib.util, "find_spec", lambda name, *a: None if name == "tinker" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[tinker\]'"):
        TinkerBackend().check(request_for(), START)


def test_a_hanging_service_times_out(env: None, tokenizer: Any, tmp_path: Path) -> None:
    service = service_for(tokenizer, mode="hang")
    began = time.monotonic()
    with pytest.raises(
        EndpointError, match=r"did not answer within 0\.3 s while creating a LoRA training client"
    ):
        backend_for(service, connect_timeout_s=0.3).train_sft(
            request_for(), START, [chat(1)], tmp_path, step_log(tmp_path)
        )
    assert time.monotonic() - began < 5


def test_a_hanging_step_times_out_and_closes_the_session(
    env: None, tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_for(tokenizer)
    original = service._new_client

    def hanging(*args: Any) -> Any:
        done = original(*args)
        done._value.hang.add("forward_backward")
        return done

    monkeypatch.setattr(service, "_new_client", hanging)
    with pytest.raises(EndpointError, match=r"did not answer within 0\.3 s while training a step"):
        backend_for(service, operation_timeout_s=0.3).train_sft(
            request_for(), START, [chat(1)], tmp_path, step_log(tmp_path)
        )
    assert service.closed == ["errored"]


def test_the_real_sdk_is_bounded_when_the_service_never_answers(
    env: None, tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        monkeypatch.setenv("TINKER_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        began = time.monotonic()
        with pytest.raises(EndpointError, match=r"did not answer within 2 s"):
            TinkerBackend(connect_timeout_s=2).train_sft(
                request_for(), START, [chat(1)], tmp_path, step_log(tmp_path)
            )
        assert time.monotonic() - began < 30
