"""Token counts and Tinker cost bounds behind docs/course.md's estimates (no network, no GPU).

For each suite the course evaluates: the number of samples, the pinned max new tokens, and the prompt
tokens of every request as the suite builds it (chat messages, counted with the embedded SmolLM2 BPE
tokenizer plus 4 tokens per message for the chat frame; Llama-3's 128k vocabulary needs a little fewer).
The cost bound is what `--max-cost` checks: prompt tokens at the prompt price plus max_tokens at the
sample price, as if every answer ran to the limit. Training tokens come from the 100-row Tulu 3 SFT and
preference samples in the shared data folder, scaled to the row counts the course uses.

    HARNESS_DATA_DIR=../shared/data python bench/course_estimates.py [--prompt 0.03 --sample 0.09 --train 0.09]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from harness.data import resolve_data_source
from harness.suite import SuiteOptions
from suites import SUITES

COURSE_SUITES = ("gsm8k", "ifeval", "mbpp", "safety")
PER_MESSAGE = 4  # role header and end-of-turn tokens of a chat template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompt", type=float, default=0.03, help="USD per 1M prompt tokens")
    parser.add_argument("--sample", type=float, default=0.09, help="USD per 1M sampled tokens")
    parser.add_argument("--train", type=float, default=0.09, help="USD per 1M training tokens")
    parser.add_argument("--sft-rows", type=int, default=20_000)
    parser.add_argument("--dpo-pairs", type=int, default=10_000)
    args = parser.parse_args()

    from llama_cpp import Llama

    from adapters.llama_cpp import embedded_gguf_path

    vocab = Llama(str(embedded_gguf_path()), vocab_only=True, verbose=False)

    def tokens(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    source = resolve_data_source(None)
    total_prompt = total_sample = 0
    print(
        f"{'suite':<8} {'samples':>7} {'max':>5} {'prompt tok':>11} {'sample tok (max)':>16} {'USD bound':>9}"
    )
    for name in COURSE_SUITES:
        suite = SUITES.get(name).create(SuiteOptions())
        loaded = suite.load(source, None)
        settings = suite.default_settings()
        prompt = 0
        for sample in loaded.samples:
            for request in suite.requests(sample, settings, "chat"):
                for message in request.messages or ():
                    prompt += tokens(message.content) + PER_MESSAGE
        sampled = len(loaded.samples) * settings.max_tokens * settings.n
        cost = (prompt * args.prompt + sampled * args.sample) / 1e6
        total_prompt, total_sample = total_prompt + prompt, total_sample + sampled
        print(
            f"{name:<8} {len(loaded.samples):>7} {settings.max_tokens:>5} {prompt:>11,} {sampled:>16,} {cost:>9.2f}"
        )
    cost = (total_prompt * args.prompt + total_sample * args.sample) / 1e6
    print(f"{'all':<8} {'':>7} {'':>5} {total_prompt:>11,} {total_sample:>16,} {cost:>9.2f}")

    data = Path(os.environ.get("HARNESS_DATA_DIR", "../shared/data")) / "olmo_samples"

    def mean_tokens(file: str, key: str) -> float:
        rows = [json.loads(line) for line in (data / file).read_text().splitlines() if line.strip()]
        counts = [min(1024, sum(tokens(m["content"]) + PER_MESSAGE for m in row[key])) for row in rows]
        return sum(counts) / len(counts)

    sft = mean_tokens("open-instruct_sft_sample.jsonl", "messages")
    dpo = mean_tokens("open-instruct_preference_sample.jsonl", "chosen") + mean_tokens(
        "open-instruct_preference_sample.jsonl", "rejected"
    )
    for label, per_row, rows in (("SFT", sft, args.sft_rows), ("DPO", dpo, args.dpo_pairs)):
        total = per_row * rows
        print(
            f"{label}: {per_row:,.0f} tokens per row (max_length 1024) x {rows:,} rows = {total / 1e6:,.1f}M "
            f"tokens, USD {total * args.train / 1e6:.2f} per epoch at {args.train}/1M"
        )


if __name__ == "__main__":
    main()
