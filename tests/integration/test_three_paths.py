"""Same weights, three paths: the embedded GGUF in process (llama.cpp), the same GGUF behind the
OpenAI-compatible llama.cpp server (`harness serve`), and its float32 dequantization run by transformers
(`harness export-hf embedded DIR`, then `hf:DIR`).

The same 20 GSM8K problems, greedy, identical settings on every path, 128 new tokens instead of the pinned
512: transformers on 2 CPU cores needs about 100 s for 20 problems at 128 tokens (the 8-shot prompt is
~850 tokens, prefilled for every problem, while llama.cpp reuses the shared few-shot prefix). Measured:
embedded 47 s, server 45 s, hf 102 s, plus 26 s for the session's export. The embedded and server runs are
the session's fixtures `embedded_gsm8k_20` and `server_gsm8k_20` (the same settings), so only hf runs here.

Measured here (2 cores, transformers 5.23, llama-cpp-python 0.3.36), agreement of the extracted answers
(last number in the response) over the 20 problems:

    embedded vs server   20/20 (100%)   identical texts 20/20: one engine, one GGUF, one template
    embedded vs hf        9/20  (45%)   identical texts  6/20
    server   vs hf        9/20  (45%)   identical texts  6/20
    (at 256 tokens: embedded vs hf 8/20 answers, 6/20 identical texts)
    GSM8K exact_match_flex: 0/20 on every path (a 135M model)

Why hf differs although the weights are the same: Q4_1 dequantized to float32 is exactly the GGUF's
weights (the exported tokenizer gives llama.cpp's token ids, and teacher-forced logits correlate at 0.999,
see tests/unit/test_hf_adapter.py), but llama.cpp multiplies the Q4_1 weights by activations rounded to
8 bits (Q8_1), while transformers multiplies in float32. The logits differ by a few tenths, enough to flip
greedy near-ties: on problems 14 and 15 the very first token flips (llama.cpp: "The" 32.06 vs "In" 32.02,
and "The" 30.96 vs "To" 30.87; transformers puts the other one first), and after one flipped token the
two greedy continuations are different texts. Batching does not add to this: hf with batch 8 and
batch 1 gave identical texts on the first 16 of these problems (all that were checked).

Thresholds, a little below the measurements: 95% between the two llama.cpp paths (they are identical by
construction; another test checks every text), 30% between transformers and llama.cpp (9/20 measured; a
CPU with other SIMD kernels can flip other near-ties). The unit tests check the export itself more
sharply (token ids and teacher-forced logits).
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from tests.conftest import EMBEDDED_GSM8K, EvalResult, eval_json, read_samples

SAME_ENGINE_MIN = 0.95  # embedded vs server, measured 1.00
CROSS_ENGINE_MIN = 0.30  # llama.cpp vs transformers, measured 0.45


def _answers(run: EvalResult) -> dict[str, str | None]:
    return {str(r["id"]): r["extracted"]["flex"] for r in read_samples(run.run_dir)}  # type: ignore[index]


def _texts(run: EvalResult) -> dict[str, str]:
    return {str(r["id"]): r["completions"][0]["texts"][0] for r in read_samples(run.run_dir)}  # type: ignore[index]


@pytest.mark.model
def test_same_weights_three_paths_agree(
    embedded_gsm8k_20: EvalResult, server_gsm8k_20: EvalResult, exported_hf_dir: Path, tmp_path: Path
) -> None:
    runs = {
        "embedded": embedded_gsm8k_20,  # the session's runs at the same settings (tests/conftest.py)
        "server": server_gsm8k_20,
        "hf": eval_json(
            "--checkpoint", f"hf:{exported_hf_dir}", *EMBEDDED_GSM8K, "--runs", str(tmp_path / "hf")
        ),
    }
    generations = {
        name: json.loads((run.run_dir / "manifest.json").read_text())["generation"]
        for name, run in runs.items()
    }
    assert len({json.dumps(g, sort_keys=True) for g in generations.values()}) == 1, generations
    answers = {name: _answers(run) for name, run in runs.items()}
    texts = {name: _texts(run) for name, run in runs.items()}
    ids = sorted(answers["embedded"])
    assert len(ids) == 20 and all(sorted(a) == ids for a in answers.values())

    lines = [f"{'paths':<20} {'answers agree':>14} {'identical texts':>16}"]
    agreement: dict[tuple[str, str], float] = {}
    for a, b in combinations(runs, 2):
        same = sum(answers[a][i] == answers[b][i] for i in ids)
        identical = sum(texts[a][i] == texts[b][i] for i in ids)
        agreement[(a, b)] = same / len(ids)
        lines.append(f"{a + ' vs ' + b:<20} {f'{same}/{len(ids)}':>14} {f'{identical}/{len(ids)}':>16}")
    for name, run in runs.items():
        value = float(run.metrics["exact_match_flex"]["value"])  # type: ignore[arg-type]
        lines.append(f"gsm8k flex {name:<9} {value:.0%} ({run.seconds:.0f} s)")
    table = "\n".join(lines)
    print("\n" + table)

    assert agreement[("embedded", "server")] >= SAME_ENGINE_MIN, table
    assert agreement[("embedded", "hf")] >= CROSS_ENGINE_MIN, table
    assert agreement[("server", "hf")] >= CROSS_ENGINE_MIN, table
