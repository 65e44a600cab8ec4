"""A prompt asked again (a retry, a resumed run) gets the answer it got the first time (adapters/llama_replay.py).

Without the patch, llama-cpp-python re-evaluates a fully cached prompt's last token alone, through
llama.cpp's one-row kernels, and greedy answers drift: 4 of these 16 prompts changed on the machine this
was written on (among them gsm8k-test-0014, which broke a fault drill's "resume equals the clean run").
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the local extra is not installed")

from adapters.llama_cpp import LlamaCppAdapter, embedded_gguf_path
from harness.data import resolve_data_source
from suites.gsm8k import GSM8K

pytestmark = pytest.mark.model


def test_the_same_prompt_twice_in_a_row_gets_the_same_answer(data_dir: Path) -> None:
    suite = GSM8K()
    settings = replace(suite.default_settings(), max_tokens=24)
    samples = suite.load(resolve_data_source(str(data_dir)), 16).samples
    requests = [suite.requests(s, settings, "chat")[0] for s in samples]
    adapter = LlamaCppAdapter(embedded_gguf_path(), "embedded")

    async def twice() -> list[tuple[str, str]]:
        try:
            pairs = []
            for request in requests:  # the second ask finds the whole prompt (and the answer) cached
                first = (await adapter.generate([request]))[0].text
                pairs.append((first, (await adapter.generate([request]))[0].text))
            return pairs
        finally:
            await adapter.aclose()

    pairs = asyncio.run(twice())
    changed = [s.id for s, (a, b) in zip(samples, pairs, strict=True) if a != b]
    assert changed == []
