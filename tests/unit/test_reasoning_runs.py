"""Reasoning runs end to end: a Qwen3-style `replay:` file (tests/fixtures/reasoning/) through
`harness.evaluate`, the run folder it writes (metrics.json, samples.jsonl, manifest), thinking budgets,
rescore, the gate's refusal to mix reasoning modes, and `harness eval --reasoning` on the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.api.evaluate import Generation
from harness.errors import DataError, UsageError
from harness.reasoning import PARSER_VERSION, ReasoningSpec
from harness.reasoning_stats import ReasoningSummary
from harness.runner import settings_hash
from harness.suite import SuiteOptions
from suites.gsm8k import GSM8K
from tests.conftest import DATA_DIR
from tests.conftest import harness as harness_cli

REPLAY = Path(__file__).resolve().parents[1] / "fixtures" / "reasoning" / "qwen3_gsm8k.jsonl"
SERVER_SPLIT = REPLAY.parent / "server_split_gsm8k.jsonl"  # content and reasoning_content apart
TAGS = SuiteOptions(reasoning=ReasoningSpec("think-tags"))
IDS = [f"gsm8k-test-{i:04d}" for i in range(6)]
# The settings hash of GSM8K's pinned settings with --limit 6, computed with the harness before reasoning
# existed (commit 87c4b51): a run without reasoning must keep it.
PRE_REASONING_HASH = "b98277321098"


def texts_of(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {str(r["sample_id"]): str(r["text"]) for r in rows}


def texts() -> dict[str, str]:
    return texts_of(REPLAY)


def between(text: str, start: str, end: str | None) -> str:
    """The text after the first `start` and before the next `end` (to the end when None)."""
    tail = text[text.index(start) + len(start) :]
    return tail if end is None else tail[: tail.index(end)]


def expected_parts() -> dict[str, tuple[str, str | None]]:
    """Each sample's (thinking, answer), cut by hand at the tags (see the fixture's README)."""
    t = texts()
    blocks = t[IDS[2]].split("<think>\n")[1:]  # "thinking\n</think>answer" twice
    return {
        IDS[0]: (between(t[IDS[0]], "<think>\n", "\n</think>"), between(t[IDS[0]], "</think>\n\n", None)),
        IDS[1]: (t[IDS[1]].removeprefix("<think>\n"), None),  # never closed
        IDS[2]: (  # two blocks: their thinking joined by a blank line; the text outside them, as it is
            "\n\n".join(block.split("\n</think>")[0] for block in blocks),
            "".join(block.split("</think>")[1] for block in blocks).strip(),
        ),
        # The answer's code fence mentions <think>: code, not a second block.
        IDS[3]: (between(t[IDS[3]], "<think>\n", "\n</think>"), between(t[IDS[3]], "</think>\n\n", None)),
        # The chat template opened the block: the text starts inside it and holds only </think>.
        IDS[4]: (t[IDS[4]].split("\n</think>")[0], between(t[IDS[4]], "</think>\n\n", None)),
        IDS[5]: (between(t[IDS[5]], "<think>\n", "\n</think>"), between(t[IDS[5]], "</think>\n\n", None)),
    }


# Thinking and answer characters per sample, from expected_parts() (asserted below), and their stats:
# thinking 297 517 393 126 340 312: sum 1985, mean 330.83 -> 330.8; sorted 126 297 312 340 393 517:
# p50 (rank 2.5) 312 + 0.5 * 28 = 326.0; p95 (rank 4.75) 393 + 0.75 * 124 = 486.0.
# answer 108 0 196 257 123 111: sum 795, mean 132.5; sorted 0 108 111 123 196 257:
# p50 (rank 2.5) 111 + 0.5 * 12 = 117.0; p95 (rank 4.75) 196 + 0.75 * 61 = 241.75 -> 241.8.
THINKING_CHARS = [297, 517, 393, 126, 340, 312]
ANSWER_CHARS = [108, 0, 196, 257, 123, 111]


def evaluate(runs: Path, scoring: SuiteOptions | None = TAGS, **generation: Any) -> harness.SuiteRun:
    results = harness.evaluate(
        f"replay:{REPLAY}", ["gsm8k"], limit=6, runs=runs, data_dir=DATA_DIR, scoring=scoring,
        generation=Generation(**generation), progress=False,
    )  # fmt: skip
    return results["gsm8k"]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def samples_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reasoning-runs")


@pytest.fixture(scope="module")
def tags_run(runs: Path) -> harness.SuiteRun:
    return evaluate(runs)


@pytest.fixture(scope="module")
def plain_run(runs: Path) -> harness.SuiteRun:
    return evaluate(runs, scoring=None)


def test_the_hand_cut_parts_match_the_fixture_lengths() -> None:
    parts = expected_parts()
    assert [len(parts[i][0]) for i in IDS] == THINKING_CHARS
    assert [len(parts[i][1] or "") for i in IDS] == ANSWER_CHARS


def test_replay_run_scores_the_answers(tags_run: harness.SuiteRun) -> None:
    # Stripped: 0 "The answer is 18" right; 1 never closed (0); 2 "70000" right; 3 "540" right (the fence's
    # <think> is code); 4 "20" right; 5 "56" wrong (64). Flex and strict 4 of 6.
    assert tags_run.n_samples == 6
    assert tags_run.metrics["exact_match_flex"].value == pytest.approx(4 / 6)
    assert tags_run.metrics["exact_match_strict"].value == pytest.approx(4 / 6)
    extracted = {r["id"]: r["extracted"]["flex"] for r in samples_of(tags_run.run_dir)}
    assert extracted == dict(zip(IDS, ["18", None, "70000", "540", "20", "56"], strict=True))


def test_the_same_replay_without_reasoning_scores_the_thinking(plain_run: harness.SuiteRun) -> None:
    # The unclosed sample 1 ends on "the total is 3" (its target): flex counts it, 5 of 6. Strict needs
    # "The answer is", which it lacks: 4 of 6.
    assert plain_run.metrics["exact_match_flex"].value == pytest.approx(5 / 6)
    assert plain_run.metrics["exact_match_strict"].value == pytest.approx(4 / 6)
    assert plain_run.reasoning is None


def test_metrics_json_reports_what_thinking_cost(tags_run: harness.SuiteRun) -> None:
    record = read_json(tags_run.run_dir / "metrics.json")
    reasoning = record["reasoning"]
    assert set(record["metrics"]) == {"exact_match_flex", "exact_match_strict"}  # beside, not among, metrics
    assert reasoning["mode"] == "think-tags <think>...</think>"
    ended = reasoning["ended_inside_reasoning"]
    assert (ended["value"], ended["n"]) == (round(1 / 6, 6), 6)
    assert reasoning["unterminated"] == [IDS[1]]
    assert reasoning["reasoning_chars"] == {"mean": 330.8, "p50": 326.0, "p95": 486.0}
    assert reasoning["answer_chars"] == {"mean": 132.5, "p50": 117.0, "p95": 241.8}
    # A replay file reports no tokens: the character split of 0 tokens is 0, and says it is an estimate.
    assert reasoning["token_count"] == "characters"
    assert reasoning["reasoning_tokens"] == {"mean": 0.0, "p50": 0.0, "p95": 0.0}
    summary = tags_run.reasoning
    assert summary is not None and summary.unterminated == (IDS[1],)
    read_back = ReasoningSummary.from_record(reasoning)  # what `harness show` and the reports read
    assert read_back is not None and read_back.describe() == summary.describe()
    assert replace(read_back, ended_inside=summary.ended_inside) == summary  # the rate is stored to 6 places
    assert summary.describe() == (
        "reasoning think-tags <think>...</think>: ended inside reasoning 16.7% (1 of 6); "
        "thinking characters mean 330.8 / p50 326 / p95 486; answer characters mean 132.5 / p50 117 / p95 241.8"
    )


def test_samples_keep_both_parts(tags_run: harness.SuiteRun) -> None:
    parts, raw = expected_parts(), texts()
    for record in samples_of(tags_run.run_dir):
        thinking, answer = parts[record["id"]]
        assert record["reasoning"] == [{"reasoning": thinking, "answer": answer, "source": "tags"}]
        assert record["completions"][0]["texts"] == [raw[record["id"]]]  # the raw text is kept as generated


def test_manifest_and_run_folder_record_the_mode(
    tags_run: harness.SuiteRun, plain_run: harness.SuiteRun
) -> None:
    manifest = read_json(tags_run.run_dir / "manifest.json")
    assert manifest["suite_settings"]["reasoning"] == {
        "mode": "think-tags", "parser": PARSER_VERSION, "open_tag": "<think>", "close_tag": "</think>",
    }  # fmt: skip
    assert manifest["generation"]["thinking_budget"] == GSM8K.thinking_budget == 2048
    assert manifest["generation"]["max_tokens"] == 512 + 2048
    assert tags_run.run_dir.parent == plain_run.run_dir.parent  # same checkpoint and suite version
    assert tags_run.run_dir.name != plain_run.run_dir.name


def test_a_run_without_reasoning_keeps_its_old_hash_and_records_nothing(plain_run: harness.SuiteRun) -> None:
    suite = GSM8K()
    settings = replace(suite.default_settings(), seed=0, n=1)
    assert plain_run.run_dir.name == settings_hash(suite, settings, 6) == PRE_REASONING_HASH
    manifest = read_json(plain_run.run_dir / "manifest.json")
    assert "reasoning" not in manifest["suite_settings"]
    assert "thinking_budget" not in manifest["generation"]
    assert "reasoning" not in read_json(plain_run.run_dir / "metrics.json")
    for record in samples_of(plain_run.run_dir):
        assert "reasoning" not in record
        assert set(record["completions"][0]) == {
            "texts", "finish_reasons", "prompt_tokens", "completion_tokens", "latency_s", "cost_usd",
        }  # fmt: skip


def test_thinking_budget_adds_to_max_tokens(tmp_path: Path) -> None:
    run = evaluate(tmp_path, thinking_budget=256)
    generation = read_json(run.run_dir / "manifest.json")["generation"]
    assert (generation["max_tokens"], generation["thinking_budget"]) == (512 + 256, 256)
    answer_budget = evaluate(tmp_path, max_tokens=300, thinking_budget=0)
    generation = read_json(answer_budget.run_dir / "manifest.json")["generation"]
    assert (generation["max_tokens"], generation["thinking_budget"]) == (300, 0)
    assert len({run.run_dir, answer_budget.run_dir}) == 2
    # The same replay scores the same: the budget changes what is asked, not how it is scored.
    assert run.metrics["exact_match_flex"].value == pytest.approx(4 / 6)


def test_a_thinking_budget_without_reasoning_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"thinking budget was given, but reasoning is off"):
        evaluate(tmp_path, scoring=None, thinking_budget=512)
    assert not any(tmp_path.iterdir())  # refused before any run folder


def test_rescore_keeps_the_metrics_and_the_parts(tmp_path: Path) -> None:
    run = evaluate(tmp_path)
    before_samples, before_metrics = samples_of(run.run_dir), read_json(run.run_dir / "metrics.json")
    result = harness.rescore(run.run_dir, data_dir=DATA_DIR)
    assert result.changed == 0
    assert result.metrics["exact_match_flex"].value == pytest.approx(4 / 6)
    assert read_json(run.run_dir / "metrics.json") == before_metrics  # the reasoning block included
    assert samples_of(run.run_dir) == before_samples


def test_rescore_refuses_a_run_from_another_parser_version(tmp_path: Path) -> None:
    run = evaluate(tmp_path)
    path = run.run_dir / "manifest.json"
    manifest = read_json(path)
    manifest["suite_settings"]["reasoning"]["parser"] = "99"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(DataError, match="records a reasoning parser this harness does not have") as raised:
        harness.rescore(run.run_dir, data_dir=DATA_DIR)
    assert str(path) in str(raised.value)


def test_gate_refuses_to_pair_a_reasoning_run_with_a_plain_one(
    tags_run: harness.SuiteRun, plain_run: harness.SuiteRun, runs: Path
) -> None:
    with pytest.raises(
        UsageError, match="Refusing to gate gsm8k: the runs were not made under the same pinned"
    ) as raised:
        harness.gate(str(tags_run.run_dir), str(plain_run.run_dir), runs=runs, progress=False)
    assert "'reasoning': {'mode': 'think-tags'" in str(raised.value)


def test_gate_evaluates_a_missing_side_with_the_same_reasoning(tmp_path: Path) -> None:
    baseline = evaluate(tmp_path, thinking_budget=128)
    other = tmp_path / "candidate.jsonl"  # another checkpoint: the same responses from another file path
    other.write_text(REPLAY.read_text(encoding="utf-8"), encoding="utf-8")
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_samples: 5\n", encoding="utf-8")
    result = harness.gate(
        str(baseline.run_dir), f"replay:{other}", runs=tmp_path, policy=policy, eval_missing=True,
        data_dir=DATA_DIR, progress=False,
    )  # fmt: skip
    (made,) = [p for p in tmp_path.glob("*/gsm8k@*/*") if p.parent.parent != baseline.run_dir.parent.parent]
    manifest = read_json(made / "manifest.json")
    assert manifest["suite_settings"]["reasoning"]["mode"] == "think-tags"
    assert manifest["generation"]["thinking_budget"] == 128 and manifest["generation"]["max_tokens"] == 640
    assert made.name == baseline.run_dir.name  # the same settings hash: a pair
    assert set(result.suites) == {"gsm8k"}
    assert result.results[0].settings_differences == {}


def test_cli_prints_the_ended_inside_line_and_the_unterminated_ids(tmp_path: Path) -> None:
    proc = harness_cli(
        "eval", "--checkpoint", f"replay:{REPLAY}", "--suite", "gsm8k", "--limit", "6",
        "--runs", str(tmp_path), "--reasoning", "think-tags", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "gsm8k: reasoning think-tags <think>...</think>: ended inside reasoning 16.7% (1 of 6)" in proc.stdout
    )
    assert "gsm8k: ended inside reasoning (no answer, scored 0): gsm8k-test-0001\n" in proc.stdout
    proc = harness_cli(
        "eval", "--checkpoint", f"replay:{REPLAY}", "--suite", "gsm8k", "--limit", "1",
        "--runs", str(tmp_path), "--thinking-budget", "64",
    )  # fmt: skip
    assert proc.returncode == 2 and "reasoning is off" in proc.stderr


def test_cli_eval_under_a_class_config_takes_its_reasoning(tmp_path: Path) -> None:
    config = tmp_path / "leaderboard.yaml"
    config.write_text(
        "name: x\nsuites: [gsm8k]\nlimit: 6\nreasoning: {mode: think-tags, thinking_budget: 64}\n"
    )
    proc = harness_cli(
        "eval", "--checkpoint", f"replay:{REPLAY}", "--class", str(config), "--runs", str(tmp_path / "r"), "--quiet"
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (manifest,) = (tmp_path / "r").glob("*/gsm8k@*/*/manifest.json")
    record = read_json(manifest)
    assert record["suite_settings"]["reasoning"]["mode"] == "think-tags"
    assert record["generation"]["thinking_budget"] == 64
    assert record["generation"]["max_tokens"] == GSM8K().default_settings().max_tokens + 64
    # Another mode than the class's is refused before anything runs.
    proc = harness_cli(
        "eval", "--checkpoint", f"replay:{REPLAY}", "--class", str(config), "--reasoning", "field",
        "--runs", str(tmp_path / "r2"),
    )  # fmt: skip
    assert proc.returncode == 2 and "differs from the class config" in proc.stderr
    assert not (tmp_path / "r2").exists()


def test_gate_lists_an_eval_command_that_reproduces_the_reasoning_run(tmp_path: Path) -> None:
    baseline = evaluate(tmp_path, thinking_budget=128)
    with pytest.raises(DataError, match="The gate needs a run of each suite") as raised:
        harness.gate(
            str(baseline.run_dir), f"replay:{tmp_path / 'other.jsonl'}", runs=tmp_path, progress=False
        )
    command = str(raised.value)
    # The answer's budget (512) and the thinking budget (128) apart, so the command makes the same max_tokens.
    assert "--max-tokens 512 " in command
    assert "--reasoning think-tags --thinking-budget 128" in command


@pytest.mark.parametrize("mode", ["field", "auto"])
def test_server_split_replay_uses_the_reported_token_counts(tmp_path: Path, mode: str) -> None:
    # vLLM --reasoning-parser style: content in "text", reasoning_content in "reasoning", token counts as the
    # server reported them. 0: answered 18 (right); 1: thinking only, empty content (never closed: 0);
    # 2: no thinking, answered 70000 (right). Flex 2 of 3.
    # Tokens by hand: thinking 100, 512, 0 -> mean 204, p50 100, p95 (rank 1.9) 100 + 0.9 * 412 = 470.8;
    # answer 120 - 100 = 20, 512 - 512 = 0, 10 - 0 = 10 -> mean 10, p50 10, p95 10 + 0.9 * 10 = 19.
    results = harness.evaluate(
        f"replay:{SERVER_SPLIT}", ["gsm8k"], limit=3, runs=tmp_path, data_dir=DATA_DIR,
        scoring=SuiteOptions(reasoning=ReasoningSpec(mode)), progress=False,  # type: ignore[arg-type]
    )  # fmt: skip
    run = results["gsm8k"]
    assert run.metrics["exact_match_flex"].value == pytest.approx(2 / 3)
    reasoning = read_json(run.run_dir / "metrics.json")["reasoning"]
    assert reasoning["token_count"] == "reported"
    assert reasoning["reasoning_tokens"] == {"mean": 204.0, "p50": 100.0, "p95": 470.8}
    assert reasoning["answer_tokens"] == {"mean": 10.0, "p50": 10.0, "p95": 19.0}
    assert reasoning["unterminated"] == ["gsm8k-test-0001"]
    assert run.reasoning is not None and run.reasoning.describe().endswith(
        "thinking tokens mean 204 / p50 100 / p95 470.8; answer tokens mean 10 / p50 10 / p95 19"
    )
    parts = {r["id"]: r["reasoning"][0] for r in samples_of(run.run_dir)}
    assert parts["gsm8k-test-0001"]["answer"] is None and parts["gsm8k-test-0001"]["source"] == "field"
    assert parts["gsm8k-test-0002"] == {
        "reasoning": "", "answer": texts_of(SERVER_SPLIT)["gsm8k-test-0002"], "source": "none",
    }  # fmt: skip


def test_harness_runs_names_the_reasoning_mode(tmp_path: Path) -> None:
    evaluate(tmp_path)
    evaluate(tmp_path, scoring=None)
    custom = SuiteOptions(reasoning=ReasoningSpec("think-tags", "<reason>", "</reason>"))
    evaluate(tmp_path, scoring=custom)
    modes = sorted(row.reasoning for row in harness.list_runs(tmp_path))
    assert modes == ["-", "think-tags", "think-tags:<reason>...</reason>"]
