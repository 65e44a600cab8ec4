"""RLVR on the local backend: the shared GRPO/DAPO loop (training/rl.py) over transformers + peft.

Rollouts: batched `generate` (left padding, the tokenizer's chat template, sampling at the configured
temperature/top_p, seeded), then one no-grad forward pass for the sampler's per-token log-probabilities at
the same temperature (logits / T, as the policy-gradient terms use), so the first update's ratios are 1.
Update: per completion token, ratio r = exp(logp_new - logp_old) and objective min(r A, clip(r, 1 - lo,
1 + hi) A); the loss is minus its mean over all completion tokens of the batch ("token", DAPO) or the mean
over completions of each completion's token mean ("sequence", GRPO). With kl_coef > 0 the k3 estimator
exp(ref - new) - (ref - new) - 1 against the start policy (the parent's LoRA loaded a second time, or the
base with adapters disabled) is added with that weight. Micro-batches of MICRO_BATCH sequences accumulate
into one AdamW step over the LoRA parameters. Dropout stays off in rollouts and updates alike, so a
first update is exactly on-policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapters.common import truncate_at_stop
from harness.types import GenerationSettings, Message
from training.backend import StartPoint, StepLog, TrainResult
from training.config import RlConfig, TrainRequest
from training.prompts import RlPrompt
from training.rl import RolloutDatum, SampledCompletion, run_grpo

MICRO_BATCH = 4


class LocalPolicy:
    """RlPolicy over a peft model whose trainable adapter is "default"."""

    def __init__(
        self, model: Any, tokenizer: Any, reference_adapter: str | None, device: str, weight_decay: float
    ) -> None:
        import torch

        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.reference_adapter = reference_adapter
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=weight_decay)
        self.temperature = 1.0
        self.eos_ids = _eos_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """Rendered exactly as the hf: adapter renders an evaluation prompt (chat template, no extra BOS)."""
        turns = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(str(text), add_special_tokens=False)["input_ids"])

    async def sample(
        self, prompts: Sequence[Sequence[int]], settings: GenerationSettings
    ) -> list[list[SampledCompletion]]:
        return await asyncio.to_thread(self._sample, prompts, settings)

    def _sample(
        self, prompts: Sequence[Sequence[int]], settings: GenerationSettings
    ) -> list[list[SampledCompletion]]:
        import torch

        self.temperature = settings.temperature if settings.temperature > 0 else 1.0
        torch.manual_seed(settings.seed or 0)
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends where generation starts
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        self.model.eval()
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                do_sample=settings.temperature > 0, temperature=self.temperature, top_p=settings.top_p,
                top_k=0,  # no top-k cut: the sampler's log-probs below are of the full softmax
                max_new_tokens=settings.max_tokens, num_return_sequences=settings.n,
                pad_token_id=self.pad_id, eos_token_id=self.eos_ids,
            )  # fmt: skip
        new = out[:, width:].tolist()
        results: list[list[SampledCompletion]] = []
        for row, prompt in enumerate(prompts):
            group = []
            for j in range(settings.n):
                tokens = _until_eos(new[row * settings.n + j], self.eos_ids)
                finish = "stop" if tokens and tokens[-1] in self.eos_ids else "length"
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                group.append((tuple(tokens), truncate_at_stop(text, settings.stop)[0], finish))
            logprobs = self._logprobs_no_grad(list(prompt), [g[0] for g in group])
            results.append(
                [SampledCompletion(t, lp, text, f) for (t, text, f), lp in zip(group, logprobs, strict=True)]
            )
        return results

    def _logprobs_no_grad(
        self, prompt: list[int], completions: Sequence[Sequence[int]]
    ) -> list[tuple[float, ...]]:
        import torch

        with torch.no_grad():
            pieces = self._token_logprobs([(prompt, list(c)) for c in completions])
        return [tuple(float(x) for x in p) for p in pieces]

    def _token_logprobs(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[Any]:
        """Log-probabilities (at the sampling temperature) of each completion token given its prompt."""
        import torch

        from training.local_model import token_logprobs

        width = max(len(p) + len(c) for p, c in pairs)
        ids = torch.full((len(pairs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for row, (p, c) in enumerate(pairs):
            ids[row, : len(p) + len(c)] = torch.tensor(p + c)
            mask[row, : len(p) + len(c)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        logprobs = token_logprobs(logits / self.temperature, ids)  # position i: token i + 1
        return [logprobs[row, len(p) - 1 : len(p) + len(c) - 1] for row, (p, c) in enumerate(pairs)]

    async def update(
        self, batch: Sequence[RolloutDatum], config: RlConfig, learning_rate: float
    ) -> Mapping[str, float]:
        return await asyncio.to_thread(self._update, batch, config, learning_rate)

    def _update(
        self, batch: Sequence[RolloutDatum], config: RlConfig, learning_rate: float
    ) -> Mapping[str, float]:
        import torch

        from training.local_model import reference_policy

        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.model.eval()  # no dropout: the first update's ratios must be exactly 1 (on-policy)
        self.optimizer.zero_grad(set_to_none=True)
        total_tokens = sum(len(d.completion_tokens) for d in batch)
        totals = {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0}
        for start in range(0, len(batch), MICRO_BATCH):
            chunk = batch[start : start + MICRO_BATCH]
            pairs = [(list(d.prompt_tokens), list(d.completion_tokens)) for d in chunk]
            reference = None
            if config.kl_coef > 0:
                with torch.no_grad(), reference_policy(self.model, self.reference_adapter):
                    reference = self._token_logprobs(pairs)
            new = self._token_logprobs(pairs)
            loss = torch.zeros((), device=new[0].device)
            for index, (datum, logp) in enumerate(zip(chunk, new, strict=True)):
                old = torch.tensor(datum.sampler_logprobs, device=logp.device)
                ratio = torch.exp(logp - old)
                clipped = torch.clamp(ratio, 1.0 - config.clip_low, 1.0 + config.clip_high)
                objective = torch.minimum(ratio * datum.advantage, clipped * datum.advantage)
                per_token = -objective
                if reference is not None:
                    delta = reference[index] - logp
                    kl = torch.exp(delta) - delta - 1.0
                    per_token = per_token + config.kl_coef * kl
                    totals["kl"] += float(kl.sum()) / total_tokens
                weight = (
                    1.0 / total_tokens
                    if config.loss_aggregation == "token"
                    else 1.0 / (len(logp) * len(batch))
                )
                loss = loss + per_token.sum() * weight
                totals["clip_fraction"] += float((ratio != clipped).float().sum()) / total_tokens
            loss.backward()  # type: ignore[no-untyped-call]
            totals["loss"] += float(loss)
        self.optimizer.step()
        return totals


def _eos_ids(tokenizer: Any) -> list[int]:
    ids = []
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
            ids.append(token_id)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def _until_eos(tokens: Sequence[int], eos: Sequence[int]) -> list[int]:
    out = []
    for token in tokens:
        out.append(int(token))
        if token in eos:
            break
    return out


def train_rlvr_local(
    request: TrainRequest, start: StartPoint, prompts: Sequence[RlPrompt], out_dir: Path, log: StepLog
) -> TrainResult:
    from training.local_model import (
        checkpoint_reference,
        load_for_training,
        load_reference,
        prepare_base,
        save_adapter,
    )

    config = request.config
    base = prepare_base(start, out_dir.parent / "_base")
    model, tokenizer, lora = load_for_training(base, config.lora, config.device, config.seed)
    reference = load_reference(model, base) if config.rl.kl_coef > 0 else None
    device = str(next(model.parameters()).device)
    policy = LocalPolicy(model, tokenizer, reference, device, config.optim.weight_decay)
    summary = asyncio.run(run_grpo(policy, prompts, config, log))
    adapter_dir = save_adapter(model, tokenizer, out_dir / "adapter")
    return TrainResult(
        reference=checkpoint_reference(base, adapter_dir),
        steps=summary.steps,
        examples=summary.completions,
        cost_usd=None,
        details={
            "backend": "local",
            "adapter_dir": str(adapter_dir),
            "lora": lora.record(),
            "device": device,
            "reward_mean_first": summary.mean_reward_first,
            "reward_mean_last": summary.mean_reward_last,
            "algorithm": "grpo+dapo"
            if config.rl.dynamic_sampling and config.rl.clip_high > config.rl.clip_low
            else "grpo",
        },
    )
