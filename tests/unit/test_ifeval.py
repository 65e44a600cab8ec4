"""IFEval: loading, requests, NLTK set-up, hand-checked verdicts, and a sample-by-sample check against
lm-eval's own `lm_eval.tasks.ifeval.utils.process_results` on the embedded model's real responses (the one
exception, an instruction whose checker draws a random value, is stated in `reference`)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import harness.data
from harness.checkpoints import parse_checkpoint
from harness.data import DataSource
from harness.errors import DataError
from harness.runner import EvalSpec, evaluate
from harness.types import Completion, Message, Sample, Score
from suites import ifeval as ifeval_module
from suites.ifeval import (
    INST_LOOSE,
    INST_STRICT,
    PROMPT_LOOSE,
    PROMPT_STRICT,
    IFEval,
    checkers,
    loose_variants,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "ifeval_embedded_responses.jsonl"
N_PROMPTS, N_INSTRUCTIONS = 541, 834

# Responses that exercise the edges of the scorer: empty, whitespace, asterisks only, a preamble line,
# a trailing line, markdown emphasis, JSON in a fence, all caps, non-English, a two-response split.
EDGE_RESPONSES = (
    "",
    "   \n  ",
    "***",
    "Sure, here is my answer:\n<<A Title>>\nit is all lower case and has no commas.\nHope this helps!",
    '**"Quoted answer with *two* *highlights*."**',
    '```json\n{"answer": "yes", "reason": "because"}\n```',
    "THIS IS ALL IN CAPITAL LETTERS. P.S. IT ENDS HERE.",
    "यह उत्तर हिंदी भाषा में लिखा गया है। मुझे आशा है कि यह मदद करेगा।",
    "First response.\n******\nSecond response.\nIs there anything else I can help with?",
    "Section 1\nintro\n\nSECTION 2\nmore\n\n* bullet one\n* bullet two\n\n[name] [address] [date]",
)


@pytest.fixture(scope="module")
def suite(data_dir: Path) -> IFEval:
    checkers(data_dir)
    return IFEval()


@pytest.fixture(scope="module")
def rows(data_dir: Path) -> list[dict[str, Any]]:
    lines = (data_dir / "ifeval" / "input_data.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def samples(suite: IFEval, data_dir: Path) -> tuple[Sample, ...]:
    return suite.load(DataSource(data_dir), None).samples


def random_draws(doc: Mapping[str, Any]) -> list[int]:
    """The indices of `doc`'s instructions whose lm-eval checker draws a random value when built (its kwargs
    are missing or invalid, as the letters "#" of 1122 and "!" of 1129): building it moves `random`."""
    registry = checkers()
    drawn = []
    for index, instruction_id in enumerate(doc["instruction_id_list"]):
        random.seed(ifeval_module.JUDGE_SEED)
        before = random.getstate()
        checker = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
        checker.build_description(**{k: v for k, v in doc["kwargs"][index].items() if v})
        if random.getstate() != before:
            drawn.append(index)
    return drawn


def reference(doc: Mapping[str, Any], response: str) -> dict[str, Any]:
    """lm-eval's own per-sample verdicts (`process_results`, Python's random seeded to JUDGE_SEED), with one
    stated exception: an instruction whose checker draws a random value (only 1122's and 1129's letter) is
    drawn twice by lm-eval (strict and loose apart) and once by the suite (suite 1.1), so that instruction's
    two verdicts come from lm-eval's checker given the suite's drawn value explicitly; nothing else changes."""
    from lm_eval.tasks.ifeval import utils

    random.seed(ifeval_module.JUDGE_SEED)
    result: dict[str, Any] = utils.process_results(dict(doc), [response])
    drawn = random_draws(doc)
    if drawn:
        ids, kwargs = doc["instruction_id_list"], doc["kwargs"]
        args = ifeval_module.instruction_args(doc["key"], ids, kwargs, doc["prompt"])
        for index in drawn:
            given = {**doc, "instruction_id_list": [ids[index]], "kwargs": [args[index]]}
            assert random_draws(given) == []  # the drawn value, passed explicitly, draws nothing
            alone = utils.process_results(given, [response])
            for name in ("inst_level_strict_acc", "inst_level_loose_acc"):
                result[name][index] = alone[name][0]
        result["prompt_level_strict_acc"] = all(result["inst_level_strict_acc"])
        result["prompt_level_loose_acc"] = all(result["inst_level_loose_acc"])
    return result


def fixture_lines() -> list[dict[str, str]]:
    if not FIXTURE.is_file():
        return []
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_sample(ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]], prompt: str = "Do it.") -> Sample:
    return Sample(
        id="ifeval-test",
        messages=(Message("user", prompt),),
        target=", ".join(ids),
        metadata={"key": 0, "instruction_id_list": tuple(ids), "kwargs": tuple(kwargs)},
    )


# --- data, requests, settings -------------------------------------------------------------------


def test_load_gives_541_prompts_834_instructions_25_types(
    suite: IFEval, samples: tuple[Sample, ...], data_dir: Path
) -> None:
    loaded = suite.load(DataSource(data_dir), limit=5)
    assert loaded.total == N_PROMPTS and len(loaded.samples) == 5
    assert loaded.source.startswith("dir:") and len(loaded.sha256) == 64
    assert len(samples) == N_PROMPTS and samples[0].id == "ifeval-1000"
    ids = [i for s in samples for i in s.metadata["instruction_id_list"]]
    assert len(ids) == N_INSTRUCTIONS and len(set(ids)) == 25
    assert set(ids) == set(checkers().INSTRUCTION_DICT)
    assert samples[0].metadata["kwargs"][1] == {"num_highlights": 3}


def test_requests_are_zero_shot_greedy_1280_tokens(suite: IFEval, samples: tuple[Sample, ...]) -> None:
    settings = suite.default_settings()
    assert settings.max_tokens == 1280 and settings.temperature == 0.0 and settings.stop == ()
    (chat,) = suite.requests(samples[0], settings, "chat")
    assert chat.messages == (Message("user", samples[0].prompt_text),)
    (text,) = suite.requests(samples[0], settings, "text")
    assert text.prompt == samples[0].prompt_text
    assert suite.pinned_settings()["num_fewshot"] == 0
    assert suite.primary_metric == PROMPT_LOOSE and suite.gold_response(samples[0]) is None


def test_hub_rows_with_none_kwargs_load_and_score_like_the_local_file(
    suite: IFEval, rows: list[dict[str, Any]], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub export fills every kwargs dict with all keys (unused ones None); they must be dropped."""
    all_keys = sorted({k for row in rows for kw in row["kwargs"] for k in kw})
    hub_rows = [{**row, "kwargs": [{k: kw.get(k) for k in all_keys} for kw in row["kwargs"]]} for row in rows]
    calls: list[tuple[str, str | None, str, str]] = []

    def fake_hub(repo: str, config: str | None, split: str, revision: str) -> list[dict[str, Any]]:
        calls.append((repo, config, split, revision))
        return hub_rows

    monkeypatch.setattr(harness.data, "load_hub_rows", fake_hub)
    hub = suite.load(DataSource(None), None)
    local = suite.load(DataSource(data_dir), None)
    assert calls == [("google/IFEval", None, "train", ifeval_module.HUB.revision)]
    assert hub.sha256 == local.sha256 and hub.samples == local.samples
    assert [s.metadata["kwargs"] for s in hub.samples] == [s.metadata["kwargs"] for s in local.samples]
    response = EDGE_RESPONSES[3]
    for sample, hub_row in list(zip(hub.samples, hub_rows, strict=True))[:60]:
        ref = reference(hub_row, response)  # lm-eval on the hub form, Nones and all
        strict, loose = suite.verdicts(sample, response)
        assert (strict, loose) == (ref["inst_level_strict_acc"], ref["inst_level_loose_acc"]), sample.id


def test_nltk_points_at_the_data_dir(suite: IFEval, data_dir: Path) -> None:
    import nltk

    folder = str(data_dir / "nltk_data")
    assert os.environ["NLTK_DATA"] == folder and folder in nltk.data.path
    assert nltk.data.find("tokenizers/punkt_tab")
    from lm_eval.tasks.ifeval import instructions_util

    text = "Mr. Smith went to Washington. He arrived at 5 p.m. on Monday. Dr. Jones met him."
    assert instructions_util.count_sentences(text) == 3


def test_missing_punkt_tab_is_a_data_error_before_lm_eval_is_imported(tmp_path: Path) -> None:
    """No punkt_tab anywhere: a DataError with the fix, and lm-eval (which would try to download) untouched."""
    (tmp_path / "data" / "ifeval").mkdir(parents=True)
    (tmp_path / "data" / "ifeval" / "input_data.jsonl").write_text("")
    (tmp_path / "empty_nltk").mkdir()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from harness.data import DataSource\n"
        "from harness.errors import DataError\n"
        "from suites.ifeval import IFEval\n"
        "import nltk\n"
        "try:\n"
        "    nltk.data.find('tokenizers/punkt_tab')\n"
        "    print('PUNKT_ELSEWHERE')\n"
        "except LookupError:\n"
        "    pass\n"
        "try:\n"
        f"    IFEval().load(DataSource(Path({str(tmp_path / 'data')!r})), None)\n"
        "except DataError as error:\n"
        "    print('DATAERROR', error.message)\n"
        "print('LM_EVAL_IMPORTED', 'lm_eval.tasks.ifeval.instructions_util' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env.update(NLTK_DATA=str(tmp_path / "empty_nltk"), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    if "PUNKT_ELSEWHERE" in proc.stdout:
        pytest.skip("this machine has punkt_tab in one of NLTK's default folders")
    assert "DATAERROR" in proc.stdout and "punkt_tab" in proc.stdout, proc.stdout + proc.stderr
    assert "HARNESS_DATA_DIR" in proc.stdout and "nltk.downloader" in proc.stdout
    assert "LM_EVAL_IMPORTED False" in proc.stdout


def test_loading_with_the_data_dir_never_tries_a_download(data_dir: Path) -> None:
    """lm-eval's import calls nltk.download when punkt_tab is not found; the suite prevents that."""
    code = "from pathlib import Path\nfrom harness.data import DataSource\nfrom suites.ifeval import IFEval\n"
    code += f"print(len(IFEval().load(DataSource(Path({str(data_dir)!r})), None).samples))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "NLTK_"))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.stdout.strip() == "541", proc.stderr
    assert "nltk_data" not in proc.stderr and "punkt" not in proc.stdout + proc.stderr


# --- hand-checked verdicts (IFEval has no gold responses) -------------------------------------------


END = "Is there anything else I can help with?"
ORACLE: list[tuple[str, dict[str, Any], str, bool, bool]] = [
    # instruction id, kwargs, response, strict, loose
    ("punctuation:no_comma", {}, "No commas at all here.", True, True),
    ("punctuation:no_comma", {}, "One, two.", False, False),
    ("punctuation:no_comma", {}, "Sure, here you go:\nNo commas in the answer.", False, True),  # preamble
    ("punctuation:no_comma", {}, "", False, False),  # an empty response follows nothing
    ("change_case:english_lowercase", {}, "every word is lower case.", True, True),
    ("change_case:english_lowercase", {}, "Not every word.", False, False),
    ("change_case:english_capital", {}, "ALL OF IT IN CAPITALS.", True, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", True, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "only *one*", False, False),
    ("length_constraints:number_words", {"relation": "less than", "num_words": 5}, "one two three", True, True),
    (
        "length_constraints:number_words",
        {"relation": "at least", "num_words": 5},
        "one two three",
        False,
        False,
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True, True),
    ("detectable_format:json_format", {}, "not json at all", False, False),
    ("startend:quotation", {}, '"wrapped in quotes"', True, True),
    ("startend:quotation", {}, '**"wrapped in quotes"**', False, True),  # loose drops the asterisks
    ("startend:end_checker", {"end_phrase": END}, f"Done. {END}", True, True),
    ("startend:end_checker", {"end_phrase": END}, f"Done. {END}\nBye!", False, True),  # trailing line
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\nP.S. see you", True, True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.", False, False),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True, True),
    ("combination:two_responses", {}, "Only one answer.", False, False),
    ("detectable_format:title", {}, "<<My Title>>\nbody", True, True),
    ("detectable_format:title", {}, "My Title\nbody", False, False),
    ("language:response_language", {"language": "hi"}, EDGE_RESPONSES[7], True, True),
    ("language:response_language", {"language": "hi"}, "This answer is written in English.", False, False),
    ("keywords:letter_frequency", {"letter": "a", "let_relation": "at least", "let_frequency": 3}, "banana", True, True),
    ("keywords:letter_frequency", {"letter": "a", "let_relation": "less than", "let_frequency": 3}, "banana", False, False),
    ("keywords:existence", {"keywords": ["river", "stone"]}, "A stone fell in the river.", True, True),
    ("keywords:forbidden_words", {"forbidden_words": ["river"]}, "A stone fell in the river.", False, False),
]  # fmt: skip


@pytest.mark.parametrize(("instruction", "kwargs", "response", "strict", "loose"), ORACLE)
def test_hand_checked_verdicts(
    suite: IFEval, instruction: str, kwargs: dict[str, Any], response: str, strict: bool, loose: bool
) -> None:
    sample = make_sample([instruction], [kwargs])
    assert suite.verdicts(sample, response) == ([strict], [loose])
    score = suite.score(sample, [Completion((response,), ("stop",))])
    assert score.values[PROMPT_STRICT] == float(strict) and score.values[PROMPT_LOOSE] == float(loose)
    assert suite.reward(sample, response) == float(loose)


def test_multi_instruction_prompt_needs_all_and_reports_each(suite: IFEval) -> None:
    sample = make_sample(
        ["punctuation:no_comma", "change_case:english_lowercase", "detectable_format:title"], [{}, {}, {}]
    )
    response = "<<a title>>\nno commas, but lower case"  # loose: without its last line, there is no comma
    score = suite.score(sample, [Completion((response,), ("stop",))])
    assert score.extracted == {
        "instructions": "punctuation:no_comma,change_case:english_lowercase,detectable_format:title",
        "strict": "0,1,1",
        "loose": "1,1,1",
    }
    assert score.values == {PROMPT_STRICT: 0.0, PROMPT_LOOSE: 1.0, INST_STRICT: 2 / 3, INST_LOOSE: 1.0}
    score = suite.score(sample, [Completion(("<<a title>>\nsome, commas\nand, more",), ("stop",))])
    assert score.extracted["loose"] == "0,1,1" and score.values[PROMPT_LOOSE] == 0.0


def test_loose_variants_are_lm_evals_eight_in_order() -> None:
    assert loose_variants("*a*\nb\n*c*") == [
        "*a*\nb\n*c*",
        "a\nb\nc",
        "b\n*c*",
        "*a*\nb",
        "b",
        "b\nc",
        "a\nb",
        "b",
    ]


def test_instruction_level_metrics_are_pooled_not_averaged_per_prompt(suite: IFEval) -> None:
    """lm-eval micro-averages instructions: 3 followed of 4 is 0.75, not the mean of (1.0, 0.0)."""
    scores = [
        Score(
            values={PROMPT_STRICT: 1.0, PROMPT_LOOSE: 1.0, INST_STRICT: 1.0, INST_LOOSE: 1.0},
            extracted={"instructions": "a:x,a:y,b:z", "strict": "1,1,1", "loose": "1,1,1"},
        ),
        Score(
            values={PROMPT_STRICT: 0.0, PROMPT_LOOSE: 0.0, INST_STRICT: 0.0, INST_LOOSE: 0.0},
            extracted={"instructions": "a:x", "strict": "0", "loose": "0"},
        ),
    ]
    metrics = suite.metrics(scores)
    assert metrics[INST_STRICT].value == 0.75 and metrics[INST_STRICT].n == 4
    assert metrics[INST_LOOSE].ci_method == "wilson"
    assert metrics[PROMPT_LOOSE].value == 0.5 and metrics[PROMPT_LOOSE].n == 2
    assert metrics["inst_loose:a:x"].value == 0.5 and metrics["inst_loose:a:x"].n == 2
    assert metrics["inst_loose:b:z"].value == 1.0
    assert next(iter(metrics)) == PROMPT_LOOSE


# --- the check against lm-eval ------------------------------------------------------------------


def assert_same_as_lm_eval(
    doc: Mapping[str, Any], response: str, scores: Mapping[str, float], extracted: Mapping[str, str | None]
) -> dict[str, Any]:
    ref = reference(doc, response)
    where = f"key {doc['key']}, response {response[:60]!r}"
    assert scores[PROMPT_STRICT] == float(ref["prompt_level_strict_acc"]), where
    assert scores[PROMPT_LOOSE] == float(ref["prompt_level_loose_acc"]), where
    for name, bits in ((INST_STRICT, "strict"), (INST_LOOSE, "loose")):
        expected = [bool(v) for v in ref[name]]
        assert [b == "1" for b in (extracted[bits] or "").split(",")] == expected, (where, name)
        assert scores[name] == sum(expected) / len(expected), (where, name)
    assert extracted["instructions"] == ",".join(doc["instruction_id_list"]), where
    return ref


def test_fixture_responses_scored_through_the_harness_match_lm_eval(
    suite: IFEval, rows: list[dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    """The embedded model's responses, replayed through the runner: every per-sample verdict and every
    aggregate equals lm-eval's process_results + aggregation on the same responses."""
    from lm_eval.tasks.ifeval import utils

    lines = fixture_lines()
    if not lines:
        pytest.fail(f"{FIXTURE} is missing; run tests/fixtures/make_ifeval_fixture.py")
    order = [f"ifeval-{row['key']}" for row in rows]
    assert [line["sample_id"] for line in lines] == order[: len(lines)], "fixture must follow dataset order"
    spec = EvalSpec(
        checkpoint=parse_checkpoint(f"replay:{FIXTURE}"),
        suite=suite,
        settings=suite.default_settings(),
        limit=len(lines),
        data=DataSource(data_dir),
        runs_root=tmp_path,
    )
    from adapters import create_adapter

    outcome = asyncio.run(evaluate(spec, create_adapter(spec.checkpoint)))
    records = [json.loads(x) for x in (outcome.run_dir / "samples.jsonl").read_text().splitlines()]
    records.sort(key=lambda r: order.index(r["id"]))
    assert [r["id"] for r in records] == order[: len(lines)]
    refs = []
    for row, record, line in zip(rows, records, lines, strict=False):
        assert record["completions"][0]["texts"][0] == line["text"]
        refs.append(assert_same_as_lm_eval(row, line["text"], record["scores"], record["extracted"]))
    metrics = outcome.metrics
    for name in (PROMPT_STRICT, PROMPT_LOOSE):
        expected = sum(float(r[name]) for r in refs) / len(refs)  # lm-eval's "mean" aggregation
        assert metrics[name].value == pytest.approx(expected, abs=1e-12) and metrics[name].n == len(refs)
    for name in (INST_STRICT, INST_LOOSE):
        lists = [r[name] for r in refs]
        assert metrics[name].value == pytest.approx(utils.agg_inst_level_acc(lists), abs=1e-12)
        assert metrics[name].n == sum(len(x) for x in lists)
    by_type: dict[str, list[bool]] = {}
    for row, ref in zip(rows, refs, strict=False):
        for instruction_id, verdict in zip(row["instruction_id_list"], ref[INST_LOOSE], strict=True):
            by_type.setdefault(instruction_id, []).append(verdict)
    for instruction_id, verdicts in by_type.items():
        metric = metrics[f"inst_loose:{instruction_id}"]
        assert metric.value == pytest.approx(sum(verdicts) / len(verdicts), abs=1e-12)


def test_fixture_is_complete() -> None:
    """All 541 responses are in the fixture (regenerate with tests/fixtures/make_ifeval_fixture.py)."""
    assert len(fixture_lines()) == N_PROMPTS


def test_edge_responses_match_lm_eval_on_every_instruction_type(
    suite: IFEval, rows: list[dict[str, Any]], samples: tuple[Sample, ...]
) -> None:
    """Hand-written edge responses on the first two prompts of each instruction type."""
    chosen: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        for instruction_id in row["instruction_id_list"]:
            if len(chosen.setdefault(instruction_id, [])) < 2 and index not in chosen[instruction_id]:
                chosen[instruction_id].append(index)
    indices = sorted({i for found in chosen.values() for i in found})
    assert len(chosen) == 25
    for index in indices:
        for response in EDGE_RESPONSES:
            score = suite.score(samples[index], [Completion((response,), ("stop",))])
            assert_same_as_lm_eval(rows[index], response, score.values, score.extracted)
            assert suite.reward(samples[index], response) == score.values[PROMPT_LOOSE]


def test_random_letter_prompts_are_judged_reproducibly(suite: IFEval, samples: tuple[Sample, ...]) -> None:
    """Key 1122 asks for 4 '#': lm-eval's checker swaps in a random letter, so its verdict is random;
    the suite's verdict does not depend on (and does not disturb) the global random state."""
    sample = next(s for s in samples if s.id == "ifeval-1122")
    response = "abcdefghijklmnopqrstuvwxyz " * 3 + "#tag"
    from lm_eval.tasks.ifeval import utils

    doc = {"key": 1122, "prompt": sample.prompt_text, "instruction_id_list": ["keywords:letter_frequency"]}
    doc["kwargs"] = [sample.metadata["kwargs"][1]]
    lm_eval_verdicts = set()
    for seed in range(20):
        random.seed(seed)
        lm_eval_verdicts.add(utils.process_results(doc, ["zzzz " + response])["prompt_level_strict_acc"])
    assert lm_eval_verdicts == {True, False}  # a, g, t and z reach 4 occurrences, the other letters 3
    ours = set()
    for seed in range(5):
        random.seed(seed)
        ours.add(tuple(map(tuple, suite.verdicts(sample, response))))
        assert random.random() == random.Random(seed).random()  # the state was restored
    assert len(ours) == 1


def test_data_error_on_unknown_instruction(suite: IFEval, tmp_path: Path) -> None:
    (tmp_path / "ifeval").mkdir()
    row = {"key": 1, "prompt": "p", "instruction_id_list": ["made:up"], "kwargs": [{}]}
    (tmp_path / "ifeval" / "input_data.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="unknown instructions"):
        suite.load(DataSource(tmp_path), None)
