"""The `tulu` regime of GSM8K and IFEval (OLMES gsm8k::tulu / ifeval::tulu): prompts, stops, token limits,
pinned settings and hashes; the default regime keeps every settings hash it had before regimes existed."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.errors import UsageError
from harness.runner import settings_hash
from harness.suite import SuiteOptions
from harness.types import Completion, GenerationSettings, Message, Sample
from suites import get_suite
from suites.gsm8k import EXEMPLARS, GSM8K, TULU_EXEMPLARS
from suites.ifeval import IFEval, checkers

ROOT = Path(__file__).resolve().parents[2]
TULU = SuiteOptions(regime="tulu")
# settings_hash(GSM8K, default settings, limit None / 50) before regimes existed (suites/gsm8k.py at c75830b).
GSM8K_HARNESS_HASH, GSM8K_HARNESS_HASH_50 = "179eaf850001", "fa997930fa2a"


@pytest.fixture(scope="module")
def sample(data_dir: Path) -> Sample:
    return GSM8K().load(DataSource(data_dir), limit=1).samples[0]


def test_gsm8k_harness_regime_keeps_its_settings_hash() -> None:
    for suite in (GSM8K(), get_suite("gsm8k")):
        assert suite.regime == "harness" and "regime" not in suite.pinned_settings()
        assert settings_hash(suite, suite.default_settings(), None) == GSM8K_HARNESS_HASH
        assert settings_hash(suite, suite.default_settings(), 50) == GSM8K_HARNESS_HASH_50


def test_ifeval_harness_regime_keeps_its_settings_apart_from_the_version(data_dir: Path) -> None:
    """Only the version (1.0 -> 1.1, the one-draw fix) moves IFEval's harness hash; settings are as before."""
    checkers(data_dir)
    suite = get_suite("ifeval")
    assert suite.version == "1.1"
    assert dict(suite.pinned_settings()) == {
        "split": "train", "num_fewshot": 0, "format": "single-turn",
        "checkers": f"lm-eval=={importlib.metadata.version('lm-eval')}",
    }  # fmt: skip
    assert suite.default_settings() == GenerationSettings(max_tokens=1280, temperature=0.0)


def test_regime_changes_the_hash_and_is_pinned() -> None:
    for name in ("gsm8k", "ifeval"):
        harness, tulu = get_suite(name), get_suite(name, TULU)
        assert tulu.regimes == ("harness", "tulu") and tulu.regime == "tulu"
        assert tulu.pinned_settings()["regime"] == "tulu"
        assert SuiteOptions.of_run(tulu.pinned_settings()).regime == "tulu"
        assert settings_hash(tulu, tulu.default_settings(), None) != settings_hash(
            harness, harness.default_settings(), None
        )


def test_unknown_regime_is_a_usage_error_listing_both() -> None:
    with pytest.raises(UsageError) as error:
        get_suite("gsm8k", SuiteOptions(regime="olmes"))
    assert "has no 'olmes' regime" in str(error.value) and "Its regimes: harness, tulu." in str(error.value)


def test_gsm8k_tulu_chat_request(sample: Sample) -> None:
    suite = get_suite("gsm8k", TULU)
    settings = suite.default_settings()
    assert settings == GenerationSettings(
        max_tokens=512, temperature=0.0, stop=("Question:", "</s>", "<|im_end|>")
    )
    (chat,) = suite.requests(sample, settings, "chat")
    assert chat.messages is not None and len(chat.messages) == 17 and chat.settings == settings
    assert chat.messages[0] == Message("user", f"Question: {EXEMPLARS[0][0]}\nAnswer:")
    assert chat.messages[1] == Message(
        "assistant",
        "Answer: There are 15 trees originally. Then there were 21 trees after some more were planted. So there "
        "must have been 21 - 15 = 6. So the answer is 6.",
    )
    assert [m.role for m in chat.messages] == ["user", "assistant"] * 8 + ["user"]
    assert all(
        m.content.startswith("Question: ") and m.content.endswith("\nAnswer:") for m in chat.messages[::2]
    )
    assert all(m.content.startswith("Answer: ") for m in chat.messages[1::2])
    assert chat.messages[-1].content == f"Question: {sample.prompt_text}\nAnswer:"


def test_gsm8k_tulu_exemplars_end_so_the_answer_is() -> None:
    """The same 8 exemplars (OLMES STD:GSM8k), only the last sentence changed."""
    assert len(TULU_EXEMPLARS) == len(EXEMPLARS) == 8
    for (q, wei), (tq, tulu) in zip(EXEMPLARS, TULU_EXEMPLARS, strict=True):
        answer = wei.rsplit("The answer is ", 1)[1]
        assert tq == q and tulu == wei.removesuffix(f"The answer is {answer}") + f"So the answer is {answer}"
    assert TULU_EXEMPLARS[-1][1].endswith("dollars left. 23 - 15 is 8. So the answer is 8.")


def test_gsm8k_tulu_text_request(sample: Sample) -> None:
    suite = get_suite("gsm8k", TULU)
    (text,) = suite.requests(sample, suite.default_settings(), "text")
    assert text.prompt is not None and text.settings.stop == ("Question:", "</s>", "<|im_end|>")
    blocks = text.prompt.split("\n\n")
    assert len(blocks) == 9 and blocks[-1] == f"Question: {sample.prompt_text}\nAnswer:"
    assert blocks[0] == f"Question: {EXEMPLARS[0][0]}\nAnswer: {TULU_EXEMPLARS[0][1]}"


def test_gsm8k_tulu_scores_like_olmes_last_number(sample: Sample) -> None:
    """A response in the exemplars' style scores on both metrics; the regime does not change scoring."""
    suite = get_suite("gsm8k", TULU)
    response = f"Answer: She works it out. So the answer is {sample.target}."
    score = suite.score(sample, [Completion((response,), ("stop",))])
    assert score.values == {"exact_match_flex": 1.0, "exact_match_strict": 1.0}
    assert score.values == GSM8K().score(sample, [Completion((response,), ("stop",))]).values


def test_ifeval_tulu_generates_2048_tokens_and_nothing_else_changes(data_dir: Path) -> None:
    checkers(data_dir)
    harness, tulu = IFEval(), get_suite("ifeval", TULU)
    assert tulu.default_settings() == GenerationSettings(max_tokens=2048, temperature=0.0)
    assert {k: v for k, v in tulu.pinned_settings().items() if k != "regime"} == dict(
        harness.pinned_settings()
    )
    sample = harness.load(DataSource(data_dir), limit=1).samples[0]
    for api in ("chat", "text"):
        (ours,) = harness.requests(sample, harness.default_settings(), api)
        (theirs,) = tulu.requests(sample, harness.default_settings(), api)
        assert ours == theirs


@pytest.mark.parametrize("name", ["gsm8k", "ifeval"])
def test_suites_show_lists_the_regimes(name: str, data_dir: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "harness", "suites", "show", name],
        capture_output=True, text=True, cwd=ROOT, check=True,
        env={"HARNESS_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert "Regimes: harness (default: the settings above) and tulu (`--regime tulu`" in shown.stdout


def test_runs_under_another_regime_never_share_a_column(tmp_path: Path, data_dir: Path) -> None:
    """A tulu run of GSM8K is not ranked under a class of default-regime runs, and the reason names the
    regime; `harness eval --regime tulu` makes its own run folder beside the default one."""
    import json

    import harness
    from harness.runs.catalog import build_catalog
    from leaderboard.class_config import expected_columns, load_class_config, row_reasons

    loaded = GSM8K().load(DataSource(data_dir), 2)
    replay = tmp_path / "r.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": "So the answer is 3."}) + "\n" for s in loaded.samples)
    )
    for regime in ("harness", "tulu"):
        harness.evaluate(
            f"replay:{replay}", "gsm8k", limit=2, runs=tmp_path / "runs", data_dir=data_dir,
            scoring=SuiteOptions(regime=regime), progress=False,
        )  # fmt: skip
    runs = harness.load_runs(tmp_path / "runs")
    assert len({r.run_dir for r in runs}) == 2
    config_path = tmp_path / "c.yaml"
    config_path.write_text("name: x\nsuites: [gsm8k]\nlimit: 2\n")
    columns = expected_columns(load_class_config(config_path))
    tulu_only = [r for r in runs if r.manifest.suite_settings.get("regime") == "tulu"]
    (checkpoint,) = build_catalog(tulu_only, {s: c.key for s, c in columns.items()}).checkpoints
    (reason,) = row_reasons(checkpoint, columns)
    assert "regime tulu (class: harness)" in reason
