"""Same prompt, same answer: keep llama-cpp-python's prompt replay batched.

llama-cpp-python reuses the KV cache of the longest prefix the new prompt shares with the last one.
When the cache already holds the whole prompt (a retried request, a resumed run, the same prompt asked
twice) it re-evaluates only the last token, and a one-token batch goes through llama.cpp's matrix-vector
kernels, which round differently from the batched kernels that computed the prompt the first time. Greedy
decoding then drifts: asked twice in a row, 4 of the first 26 GSM8K prompts got a different answer from
the embedded model (measured with llama-cpp-python 0.3.36). For batches of two or more tokens each row's
result does not depend on the batch, so `install()` cuts the cache back to leave at least two prompt
tokens to evaluate whenever it would leave fewer. The cost is one extra token of prompt evaluation on a
repeated prompt.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("harness")
MIN_SUFFIX = 2  # prompt tokens always evaluated in one batch, so never the one-token kernels
_MARK = "_harness_batched_replay"


def install() -> bool:
    """Patch llama_cpp.Llama.generate once per process; False if this llama-cpp-python lacks the parts."""
    from llama_cpp import Llama

    if getattr(Llama.generate, _MARK, False):
        return True
    if not (hasattr(Llama, "_input_ids") and hasattr(Llama, "longest_token_prefix")):
        log.warning(
            "llama-cpp-python changed its prefix cache; repeated prompts may not give identical answers"
        )
        return False
    original = Llama.generate

    @functools.wraps(original)
    def generate(self: Any, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Any:
        tokens = list(tokens)
        keep = len(tokens) - MIN_SUFFIX
        if keep > 0 and self.n_tokens > keep:
            shared = Llama.longest_token_prefix(self._input_ids, tokens)
            if shared > keep and self._ctx.kv_cache_seq_rm(-1, keep, -1):
                self.n_tokens = keep  # llama-cpp-python then re-evaluates the last MIN_SUFFIX tokens
        return original(self, tokens, *args, **kwargs)

    setattr(generate, _MARK, True)
    Llama.generate = generate  # type: ignore[method-assign]
    return True
