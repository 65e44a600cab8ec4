"""Alice's Wonderland puzzles, synthetic: the six Kaggle categories and prompt formats, no data needed.

A fixed set of 600 puzzles (100 per category) from `suites.alice_generators.generate_set(600,
seed=SYNTH_SEED, difficulty=2)`, categories interleaved round-robin (bit_manipulation, cipher, numeral,
unit_conversion, gravity, equation), so `--limit N` takes the first N and any N >= 6 covers all six.
The set is contamination-free (drawn here, not from Kaggle) and its rules are known; the bit and equation
rules are this project's own families in the Kaggle surface format (see the generators' docstring).
Training draws fresh puzzles with `generate(category, random.Random(seed), difficulty)` instead.

Prompting, extraction, matching and metrics are those of the `alice` suite: 0-shot, the puzzle followed by
"\\n\\nPlease reason step by step, and put your final answer within \\boxed{}.", greedy, at most 1,024 new
tokens; the last complete `\\boxed{}` is matched exactly after whitespace/case normalization (unit_conversion
and gravity also numerically within max(1e-2 relative, 0.01 absolute)); accuracy (primary) and
accuracy_<category>, each with stderr and a Wilson 95% interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.data import DataSource, rows_hash
from harness.suite import LoadedData
from harness.types import Message, Sample
from suites.alice import ABS_TOL, INSTRUCTION, NUMERIC_CATEGORIES, REL_TOL, AliceBase
from suites.alice_generators import Puzzle, generate_set

SYNTH_SEED, SYNTH_SIZE, SYNTH_DIFFICULTY = 20260402, 600, 2
GENERATOR_VERSION = "1"


def puzzle_sample(index: int, puzzle: Puzzle) -> Sample:
    return Sample(
        id=f"alice-synth-{index:04d}",
        messages=(Message("user", puzzle.prompt),),
        target=puzzle.answer,
        metadata={"category": puzzle.category, "split": "synthetic", "params": dict(puzzle.params)},
    )


class AliceSynth(AliceBase):
    name = "alice-synth"
    description = __doc__ or ""

    def __init__(
        self, size: int = SYNTH_SIZE, seed: int = SYNTH_SEED, difficulty: int = SYNTH_DIFFICULTY
    ) -> None:
        self.size, self.seed, self.difficulty = size, seed, difficulty

    def pinned_settings(self) -> Mapping[str, Any]:
        return {
            "split": "synthetic",
            "size": self.size,
            "seed": self.seed,
            "difficulty": self.difficulty,
            "generator_version": GENERATOR_VERSION,
            "num_fewshot": 0,
            "instruction": INSTRUCTION,
            "extraction": "last-complete-boxed",
            "numeric_tolerance": {"rel": REL_TOL, "abs": ABS_TOL, "categories": sorted(NUMERIC_CATEGORIES)},
            **self.reasoning.pinned(),
        }

    def load(self, source: DataSource, limit: int | None) -> LoadedData:
        """Ignores the data source: the puzzles are generated."""
        puzzles = generate_set(self.size, self.seed, self.difficulty)
        samples = [puzzle_sample(i, p) for i, p in enumerate(puzzles)]
        rows = [{"prompt": p.prompt, "answer": p.answer, "category": p.category} for p in puzzles]
        origin = (
            f"synthetic:alice_generators@{GENERATOR_VERSION}:seed={self.seed}:difficulty={self.difficulty}"
        )
        picked = samples if limit is None else samples[:limit]
        return LoadedData(
            tuple(picked), len(samples), origin, rows_hash(rows, ("prompt", "answer", "category"))
        )
