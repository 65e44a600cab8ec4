"""tinker-cookbook's supervised, DPO and RL recipes, rebuilt on the Tinker SDK's own types.

tinker-cookbook cannot be installed next to this project (it pins transformers <= 5.5.4; see
adapters/tinker.py), so the pieces the Tinker backend needs are rebuilt here, each after the cookbook
0.5.8 function named in its docstring (read from the published wheel and from
thinking-machines-lab/tinker-cookbook on GitHub):

- SFT data: `supervised.data.conversation_to_datum` (TrainOnWhat.ALL_ASSISTANT_MESSAGES, weight reduction
  "mean": each example's weights sum to 1) over `supervised.common.datum_from_model_input_weights`; the
  step's loss is `supervised.common.compute_mean_nll`.
- DPO: `preference.dpo_datasets` (chosen and rejected as LAST_ASSISTANT_MESSAGE examples, reduction
  "none", interleaved chosen/rejected), `preference.train_dpo.compute_dpo_loss` and the `dpo_loss_fn` of
  its `do_update` (weighted log-probability sums, reference log-probabilities from `compute_logprobs` of
  the full sequence, first entry dropped).
- RL: `rl.data_processing.trajectory_to_data` for a single-turn episode (the sampler's log-probabilities
  and the advantage on the completion tokens, zeros on the prompt; no "mask" key, which
  `rl.train._remove_mask` strips before sending), `rl.metrics.incorporate_kl_penalty` (kl_coef > 0) and
  the "ppo" loss with `loss_fn_config={"clip_low_threshold", "clip_high_threshold"}` (ratio bounds,
  1 - clip_low and 1 + clip_high). Tinker's ppo loss is a plain sum over tokens, and the per-token
  objective is positively homogeneous in the advantage, so the aggregation is done by scaling each
  token's advantage: 1 / (all completion tokens of the batch) for "token" (DAPO), 1 / (completion length
  x completions) for "sequence" (GRPO).
- Adam: beta1 0.9, beta2 0.95, eps 1e-8, as every cookbook recipe passes them.

Nothing here talks to the network; it builds `tinker.Datum`s and computes losses with torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import tinker
import torch
import torch.nn.functional as F

from harness.types import Message
from training.config import RlConfig
from training.data import PreferencePair

if TYPE_CHECKING:
    from adapters.tinker_renderers import Renderer
    from training.rl import RolloutDatum

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.95, 1e-8
Reduction = Literal["none", "mean"]
CustomLoss = Callable[[list[tinker.Datum], list[torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def adam_params(learning_rate: float, weight_decay: float) -> tinker.AdamParams:
    return tinker.AdamParams(
        learning_rate=learning_rate,
        beta1=ADAM_BETA1,
        beta2=ADAM_BETA2,
        eps=ADAM_EPS,
        weight_decay=weight_decay,
    )


# -- supervised -----------------------------------------------------------------------------------


def supervised_datum(
    tokens: Sequence[int], weights: Sequence[float], max_length: int | None, reduction: Reduction
) -> tinker.Datum:
    """`datum_from_model_input_weights` for a text-only sequence: truncate to max_length, inputs are
    tokens[:-1], targets tokens[1:], weights shifted with the targets; "mean" makes them sum to 1."""
    tokens = list(tokens)[:max_length] if max_length is not None else list(tokens)
    if len(tokens) < 2:
        raise ValueError("a training example needs at least 2 tokens")
    targets = tokens[1:]
    shifted = torch.tensor(list(weights)[1 : len(targets) + 1], dtype=torch.float32)
    if reduction == "mean" and float(shifted.sum()) > 0:
        shifted = shifted / float(shifted.sum())
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "weights": tinker.TensorData(data=shifted.tolist(), dtype="float32", shape=[len(targets)]),
            "target_tokens": tinker.TensorData(data=targets, dtype="int64", shape=[len(targets)]),
        },
    )


def conversation_datum(
    renderer: Renderer, messages: Sequence[Message], max_length: int | None
) -> tinker.Datum:
    """`conversation_to_datum(messages, renderer, max_length)` with its defaults."""
    tokens, weights = renderer.build_supervised_example(messages, "all_assistant_messages")
    return supervised_datum(tokens, weights, max_length, "mean")


def mean_nll(logprobs: Sequence[tinker.TensorData], weights: Sequence[tinker.TensorData]) -> float:
    """`compute_mean_nll`: -sum(logprobs * weights) / sum(weights) over the batch (nan without weight)."""
    total = weight_sum = 0.0
    for lp, w in zip(logprobs, weights, strict=True):
        lp_t, w_t = lp.to_torch().float(), w.to_torch().float()
        total += float(lp_t.dot(w_t))
        weight_sum += float(w_t.sum())
    return float("nan") if weight_sum == 0 else -total / weight_sum


def datum_tokens(datum: tinker.Datum) -> int:
    """What a datum costs to train: its input length (the cookbook's `num_tokens` metric)."""
    return int(datum.model_input.length)


# -- DPO ------------------------------------------------------------------------------------------


def preference_data(renderer: Renderer, pair: PreferencePair, max_length: int | None) -> list[tinker.Datum]:
    """The chosen and the rejected conversation as two datums (reduction "none": DPO uses sums)."""
    data = []
    for answer in (pair.chosen, pair.rejected):
        tokens, weights = renderer.build_supervised_example((*pair.prompt, Message("assistant", answer)))
        data.append(supervised_datum(tokens, weights, max_length, "none"))
    return data


def full_sequence(datum: tinker.Datum) -> tinker.ModelInput:
    """The datum's whole sequence (its input plus the last target), for `compute_logprobs`."""
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    return datum.model_input.append_int(int(targets[-1])) if targets else datum.model_input


def reference_logprobs(answer: Sequence[float | None]) -> torch.Tensor:
    """`compute_logprobs` gives one entry per token, the first None: drop it to align with targets."""
    return torch.tensor([float(x) if x is not None else 0.0 for x in list(answer)[1:]], dtype=torch.float32)


def dpo_loss(
    chosen: Sequence[torch.Tensor],
    rejected: Sequence[torch.Tensor],
    chosen_ref: Sequence[torch.Tensor],
    rejected_ref: Sequence[torch.Tensor],
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """`compute_dpo_loss`: -log sigmoid(beta (chosen log-ratio - rejected log-ratio)), mean over pairs."""
    chosen_ratio = torch.stack([a - b for a, b in zip(chosen, chosen_ref, strict=True)])
    rejected_ratio = torch.stack([a - b for a, b in zip(rejected, rejected_ref, strict=True)])
    loss = (-F.logsigmoid(beta * (chosen_ratio - rejected_ratio))).mean()
    chosen_reward, rejected_reward = beta * chosen_ratio, beta * rejected_ratio
    return loss, {
        "dpo_loss": float(loss.item()),
        "accuracy": float((chosen_ratio > rejected_ratio).float().mean().item()),
        "margin": float((chosen_reward - rejected_reward).mean().item()),
        "chosen_reward": float(chosen_reward.mean().item()),
        "rejected_reward": float(rejected_reward.mean().item()),
    }


def dpo_loss_fn(ref_logprobs: Sequence[torch.Tensor], beta: float, sink: dict[str, float]) -> CustomLoss:
    """The loss `forward_backward_custom` runs: data and logprobs interleave chosen (even) and rejected
    (odd); each sequence's log-probability is its logprobs dotted with its weights. The metrics are
    also written to `sink` (the SDK's returned metrics may be prefixed)."""

    def loss_fn(
        data: list[tinker.Datum], logprobs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        sums, ref_sums = [], []
        for datum, lp, ref in zip(data, logprobs, ref_logprobs, strict=True):
            weights = datum.loss_fn_inputs["weights"].to_torch().float()
            sums.append(torch.dot(lp.float(), weights))
            ref_sums.append(torch.dot(ref.float(), weights))
        loss, metrics = dpo_loss(sums[0::2], sums[1::2], ref_sums[0::2], ref_sums[1::2], beta)
        sink.update(metrics)
        return loss, metrics

    return loss_fn


# -- RL -------------------------------------------------------------------------------------------


def ppo_loss_config(rl: RlConfig) -> dict[str, float | str]:
    return {"clip_low_threshold": 1.0 - rl.clip_low, "clip_high_threshold": 1.0 + rl.clip_high}


def aggregation_scales(batch: Sequence[RolloutDatum], aggregation: str) -> list[float]:
    """Per completion, the factor on each of its tokens' objective that turns Tinker's token sum into
    the configured mean."""
    if aggregation == "token":
        total = sum(len(d.completion_tokens) for d in batch)
        return [1.0 / total] * len(batch)
    return [1.0 / (len(d.completion_tokens) * len(batch)) for d in batch]


def rl_datum(rollout: RolloutDatum, completion_advantages: Sequence[float]) -> tinker.Datum:
    """`trajectory_to_data` of a one-step episode: prompt + completion shifted by one."""
    prompt, completion = list(rollout.prompt_tokens), list(rollout.completion_tokens)
    if len(completion_advantages) != len(completion) or len(rollout.sampler_logprobs) != len(completion):
        raise ValueError("one advantage and one sampler logprob per completion token")
    tokens = prompt + completion
    pad = [0.0] * (len(prompt) - 1)
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tinker.TensorData(data=tokens[1:], dtype="int64", shape=[len(tokens) - 1]),
            "logprobs": tinker.TensorData(
                data=pad + [float(x) for x in rollout.sampler_logprobs],
                dtype="float32",
                shape=[len(tokens) - 1],
            ),
            "advantages": tinker.TensorData(
                data=pad + [float(x) for x in completion_advantages], dtype="float32", shape=[len(tokens) - 1]
            ),
        },
    )


def kl_penalties(
    batch: Sequence[RolloutDatum], base_logprobs: Sequence[Sequence[float | None]], kl_coef: float
) -> tuple[list[list[float]], float]:
    """`incorporate_kl_penalty` (no discounting): per completion token kl_coef * (mean diff - diff),
    diff = sampler logprob - base logprob; returns the penalties and the mean diff (kl_policy_base)."""
    diffs = []
    for rollout, base in zip(batch, base_logprobs, strict=True):
        start = len(rollout.prompt_tokens)  # base[i] is the logprob of token i of prompt + completion
        reference = [float(x) if x is not None else 0.0 for x in list(base)[start:]]
        diffs.append([s - b for s, b in zip(rollout.sampler_logprobs, reference, strict=True)])
    mean = sum(sum(d) for d in diffs) / sum(len(d) for d in diffs)
    return [[kl_coef * (mean - x) for x in d] for d in diffs], mean


def rl_data(
    batch: Sequence[RolloutDatum], rl: RlConfig, penalties: Sequence[Sequence[float]] | None = None
) -> list[tinker.Datum]:
    """The batch as ppo datums, each token's advantage (plus its KL penalty) scaled for the aggregation."""
    data = []
    for index, (rollout, scale) in enumerate(
        zip(batch, aggregation_scales(batch, rl.loss_aggregation), strict=True)
    ):
        extra = penalties[index] if penalties is not None else [0.0] * len(rollout.completion_tokens)
        data.append(rl_datum(rollout, [(rollout.advantage + k) * scale for k in extra]))
    return data


def ppo_stats(
    data: Sequence[tinker.Datum],
    batch: Sequence[RolloutDatum],
    outputs: Sequence[Mapping[str, Any]],
    rl: RlConfig,
) -> dict[str, float]:
    """From the logprobs the forward pass returned: the loss Tinker minimized (the negated clipped
    objective, already aggregated by the scaled advantages), the fraction of completion tokens whose
    ratio was clipped, and the cookbook's kl_sample_train (mean sampler - trainer logprob)."""
    low, high = 1.0 - rl.clip_low, 1.0 + rl.clip_high
    loss = 0.0
    clipped = tokens = 0
    kl_sum = 0.0
    for datum, rollout, output in zip(data, batch, outputs, strict=True):
        new = [float(x) for x in output["logprobs"].tolist()]
        old = datum.loss_fn_inputs["logprobs"].tolist()
        advantages = datum.loss_fn_inputs["advantages"].tolist()
        start = len(rollout.prompt_tokens) - 1
        for t in range(start, len(new)):
            ratio = math.exp(new[t] - float(old[t]))
            bounded = min(max(ratio, low), high)
            loss -= min(ratio * float(advantages[t]), bounded * float(advantages[t]))
            clipped += int(bounded != ratio)
            kl_sum += float(old[t]) - new[t]
            tokens += 1
    return {"loss": loss, "clip_fraction": clipped / tokens, "kl_sample_train": kl_sum / tokens}
