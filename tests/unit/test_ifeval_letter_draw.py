"""IFEval prompts 1122 and 1129: the letter-frequency checker gets '#' / '!', which it replaces by a random
letter. lm-eval draws it twice (strict and loose apart); the suite draws it once per instruction, seeded with
the prompt key and instruction index, so strict and loose agree and every run and machine draws the same."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.types import Sample
from suites import ifeval as ifeval_module
from suites.ifeval import IFEval, checkers, instruction_args

ROOT = Path(__file__).resolve().parents[2]
LETTER_FREQUENCY = "keywords:letter_frequency"
# (sample id, index of the letter-frequency instruction, the letter the suite draws, how many it needs)
DRAWN = (("ifeval-1122", 1, "t", 4), ("ifeval-1129", 0, "s", 6))


@pytest.fixture(scope="module")
def samples(data_dir: Path) -> dict[str, Sample]:
    checkers(data_dir)
    return {s.id: s for s in IFEval().load(DataSource(data_dir), None).samples}


def drawn_letters(samples: dict[str, Sample]) -> dict[str, str]:
    letters = {}
    for sample_id, index, _, _ in DRAWN:
        meta = samples[sample_id].metadata
        args = instruction_args(
            meta["key"], meta["instruction_id_list"], meta["kwargs"], samples[sample_id].prompt_text
        )
        letters[sample_id] = args[index]["letter"]
    return letters


def test_only_these_two_instructions_draw_a_random_value(samples: dict[str, Sample]) -> None:
    """Of all 834 instructions, building the checker moves Python's random state for exactly two."""
    registry = checkers()
    drawing = []
    saved = random.getstate()
    for sample in samples.values():
        meta = sample.metadata
        for index, instruction_id in enumerate(meta["instruction_id_list"]):
            before = random.getstate()
            registry.INSTRUCTION_DICT[instruction_id](instruction_id).build_description(
                **{k: v for k, v in meta["kwargs"][index].items() if v}
            )
            if random.getstate() != before:
                drawing.append((sample.id, index, instruction_id))
    random.setstate(saved)
    assert drawing == [(sample_id, index, LETTER_FREQUENCY) for sample_id, index, _, _ in DRAWN]


def test_the_draw_is_fixed_and_ignores_the_global_random_state(samples: dict[str, Sample]) -> None:
    expected = {sample_id: letter for sample_id, _, letter, _ in DRAWN}
    for seed in (0, 1, 12345):
        random.seed(seed)
        assert drawn_letters(samples) == expected
        assert random.random() == random.Random(seed).random()  # the global state was left as it was


@pytest.mark.parametrize(("sample_id", "index", "letter", "needed"), DRAWN)
def test_strict_pass_implies_loose_pass_for_every_letter(
    samples: dict[str, Sample], sample_id: str, index: int, letter: str, needed: int
) -> None:
    """A response with `needed` copies of one letter (and no other letters) passes the instruction iff it is
    the drawn letter, strictly and loosely alike; under lm-eval the same response can pass only one."""
    suite, sample = IFEval(), samples[sample_id]
    for candidate in "abcdefghijklmnopqrstuvwxyz":
        response = candidate * needed  # e.g. "tttt"
        strict, loose = suite.verdicts(sample, response)
        assert strict[index] == loose[index] == (candidate == letter), (sample_id, candidate)


def test_lm_eval_draws_twice_so_one_response_is_strict_pass_loose_fail(samples: dict[str, Sample]) -> None:
    """The bug being fixed, shown on lm-eval itself: at seed 0 it draws "y" for strict and "w" for loose."""
    from lm_eval.tasks.ifeval import utils

    sample = samples["ifeval-1122"]
    doc = {
        "key": 1122, "prompt": sample.prompt_text, "instruction_id_list": [LETTER_FREQUENCY],
        "kwargs": [sample.metadata["kwargs"][1]],
    }  # fmt: skip
    random.seed(ifeval_module.JUDGE_SEED)
    theirs = utils.process_results(doc, ["yyyy"])
    assert theirs["inst_level_strict_acc"] == [True] and theirs["inst_level_loose_acc"] == [False]
    strict, loose = IFEval().verdicts(sample, "yyyy")
    assert strict[1] == loose[1] is False  # the suite's letter is "t": neither check passes
    strict, loose = IFEval().verdicts(sample, "tttt")
    assert strict[1] is True and loose[1] is True


def test_two_processes_draw_the_same_letters(samples: dict[str, Sample], data_dir: Path) -> None:
    """Fresh interpreters with different hash seeds and global random states draw what this one draws."""
    code = (
        "import json, random, sys\n"
        "from pathlib import Path\n"
        "from harness.data import DataSource\n"
        "from suites.ifeval import IFEval, checkers, instruction_args\n"
        "random.seed(int(sys.argv[2]))\n"
        "checkers(Path(sys.argv[1]))\n"
        "suite = IFEval()\n"
        "found = {}\n"
        "for s in suite.load(DataSource(Path(sys.argv[1])), None).samples:\n"
        "    if s.id in ('ifeval-1122', 'ifeval-1129'):\n"
        "        m = s.metadata\n"
        "        found[s.id] = [instruction_args(m['key'], m['instruction_id_list'], m['kwargs'], s.prompt_text),\n"
        "                       suite.verdicts(s, 'tttt ssssss')]\n"
        "print(json.dumps(found, sort_keys=True))\n"
    )
    outputs = []
    for hash_seed, random_seed in (("1", "7"), ("2", "99")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", code, str(data_dir), random_seed],
            capture_output=True, text=True, cwd=ROOT, env=env, check=True, timeout=300,
        )  # fmt: skip
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    letters = {sample_id: outputs[0][sample_id][0][index]["letter"] for sample_id, index, _, _ in DRAWN}
    assert letters == drawn_letters(samples)
    suite = IFEval()
    for sample_id in ("ifeval-1122", "ifeval-1129"):
        assert outputs[0][sample_id][1] == [
            list(v) for v in suite.verdicts(samples[sample_id], "tttt ssssss")
        ]
