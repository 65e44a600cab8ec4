"""`harness export inspect`: real runs (a `replay:` file through `harness.evaluate`, with and without
think-tags reasoning) written as inspect-ai `.eval` logs, and read back with inspect's own reader:
metrics exactly, samples (ids, targets, inputs, outputs, scores), the spec, status and redaction."""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from inspect_ai.log import EvalLog, read_eval_log
from inspect_ai.model import ContentReasoning, ContentText

import harness
from harness.data import DataSource
from harness.errors import UsageError
from harness.reasoning import ReasoningSpec
from harness.runs.catalog import RunView, load_run
from harness.suite import SuiteOptions
from reports.export_inspect import export_inspect
from suites import get_suite
from tests.conftest import DATA_DIR
from tests.conftest import harness as harness_cli

# Right; thinking then a right answer; thinking that never closed (no answer: scored 0).
TEXTS = ("The answer is 18.", "<think>2 + 1 = 3</think>The answer is 3.", "<think>80000 + 50000 is")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A plain and a think-tags run of the same replay file, each exported to its own log."""
    root = tmp_path_factory.mktemp("export-inspect")
    ids = [s.id for s in get_suite("gsm8k").load(DataSource(DATA_DIR), 3).samples]
    replay = root / "replay.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": i, "text": t}) + "\n" for i, t in zip(ids, TEXTS, strict=True))
    )
    runs = root / "runs"

    def evaluate(scoring: SuiteOptions | None) -> Path:
        results = harness.evaluate(
            f"replay:{replay}",
            ["gsm8k"],
            limit=3,
            runs=runs,
            data_dir=DATA_DIR,
            progress=False,
            scoring=scoring,
        )
        return results["gsm8k"].run_dir

    plain_dir, tags_dir = evaluate(None), evaluate(SuiteOptions(reasoning=ReasoningSpec("think-tags")))
    exported = export_inspect([str(plain_dir), str(tags_dir)], root / "logs", runs, DATA_DIR)
    assert [log.run_dir for log in exported.logs] == [plain_dir, tags_dir]
    return {
        "root": root, "runs": runs, "ids": ids, "replay": replay, "export": exported,
        "plain": load_run(plain_dir), "tags": load_run(tags_dir),
        "plain_log": read_eval_log(str(exported.logs[0].path)), "tags_log": read_eval_log(str(exported.logs[1].path)),
    }  # fmt: skip


@pytest.mark.parametrize("which", ["plain", "tags"])
def test_every_metric_reads_back_exactly(made: dict[str, Any], which: str) -> None:
    run: RunView = made[which]
    log: EvalLog = made[f"{which}_log"]
    assert log.results is not None
    scores = {s.name: s for s in log.results.scores}
    assert set(scores) == set(run.metrics) == {"exact_match_flex", "exact_match_strict"}
    assert log.results.scores[0].name == run.primary == "exact_match_flex"  # the primary comes first
    assert log.results.headline is not None and log.results.headline.metric == "exact_match_flex"
    for name, metric in run.metrics.items():
        score = scores[name]
        assert score.scorer == name and score.scored_samples == 3
        assert score.metrics[name].value == metric.value == 0.666667  # 2 of 3, as metrics.json rounds it
        assert score.metrics["stderr"].value == metric.stderr == 0.333333
        assert score.metadata is not None
        assert score.metadata["ci95"] == [metric.ci_low, metric.ci_high] == [0.20766, 0.938508]
        assert score.metadata["ci_method"] == "wilson" and score.metadata["n"] == 3
    assert log.results.total_samples == log.results.completed_samples == 3


def test_samples_carry_ids_targets_inputs_and_scores(made: dict[str, Any]) -> None:
    log: EvalLog = made["plain_log"]
    assert log.samples is not None
    assert [s.id for s in log.samples] == made["ids"]
    assert [s.target for s in log.samples] == ["18", "3", "70000"]
    records = {r.id: r for r in made["plain"].samples()}
    suite = get_suite("gsm8k")
    data = {s.id: s for s in suite.load(DataSource(DATA_DIR), 3).samples}
    for sample in log.samples:
        record = records[str(sample.id)]
        assert {k: s.value for k, s in (sample.scores or {}).items()} == record.scores
        assert (sample.scores or {})["exact_match_strict"].answer == record.extracted["strict"]
        assert sample.metadata["extracted"] == record.extracted
        assert sample.metadata["solution"] == data[record.id].metadata["solution"]  # the data row's metadata
        # The exact chat the model got: 8 few-shot turns, then the question.
        (request,) = suite.requests(data[record.id], made["plain"].manifest.generation, "chat")
        assert request.messages is not None and isinstance(sample.input, list)
        assert [(m.role, m.text) for m in sample.input] == [(m.role, m.content) for m in request.messages]
        assert len(sample.input) == 17 and sample.input[-1].text == record.prompt
        assert sample.messages[-1].role == "assistant" and sample.messages[:-1] == sample.input
    # Without reasoning, the stored text is the output as it is, think tags and all.
    assert [s.output.completion for s in log.samples] == list(TEXTS)
    assert [(s.scores or {})["exact_match_flex"].value for s in log.samples] == [1.0, 1.0, 0.0]


def test_reasoning_runs_show_thinking_and_answer_apart(made: dict[str, Any]) -> None:
    log: EvalLog = made["tags_log"]
    assert log.samples is not None
    right, thought, unclosed = log.samples
    assert right.output.completion == "The answer is 18."
    content = thought.output.message.content
    assert [type(part) for part in content] == [ContentReasoning, ContentText]
    assert isinstance(content[0], ContentReasoning) and content[0].reasoning == "2 + 1 = 3"
    assert (
        thought.output.completion == "The answer is 3."
        and thought.metadata["ended_inside_reasoning"] is False
    )
    # Never closed: the thinking kept, no answer, and the stop details say why.
    assert unclosed.output.completion == "" and unclosed.metadata["ended_inside_reasoning"] is True
    first = unclosed.output.message.content[0]
    assert isinstance(first, ContentReasoning) and first.reasoning == "80000 + 50000 is"
    assert unclosed.output.choices[0].stop_details is not None
    assert unclosed.output.choices[0].stop_details.type == "ended_inside_reasoning"
    assert [(s.scores or {})["exact_match_flex"].value for s in log.samples] == [1.0, 1.0, 0.0]
    assert log.results is not None and log.results.metadata is not None
    assert log.results.metadata["reasoning"]["unterminated"] == [made["ids"][2]]


def test_the_spec_names_model_settings_revision_and_task(made: dict[str, Any]) -> None:
    for which in ("plain", "tags"):
        log: EvalLog = made[f"{which}_log"]
        manifest = made[which].manifest
        spec = log.eval
        assert log.status == "success" and log.error is None
        assert (spec.task, spec.task_version) == ("gsm8k", "1.0")
        assert datetime.fromisoformat(spec.created) == datetime.fromisoformat(manifest.created_at)
        assert spec.model == f"harness/{manifest.checkpoint}" and spec.model_args == {
            "adapter": manifest.adapter
        }
        config = spec.model_generate_config
        gen = manifest.generation
        assert (config.max_tokens, config.temperature, config.top_p, config.seed, config.num_choices) == (
            gen.max_tokens, gen.temperature, gen.top_p, gen.seed, gen.n,
        )  # fmt: skip
        assert config.reasoning_tokens == gen.thinking_budget and log.plan.config == config
        assert spec.revision is not None and spec.revision.commit == manifest.git_revision
        assert spec.revision.dirty == manifest.git_dirty
        assert spec.dataset.samples == 1319 and spec.dataset.sample_ids == made["ids"]
        assert spec.config.limit == 3
        assert spec.metadata is not None and spec.metadata["settings_hash"] == manifest.settings_hash
    assert made["tags_log"].eval.model_generate_config.reasoning_tokens == 2048
    assert made["plain_log"].eval.model_generate_config.reasoning_tokens is None


def _copy_with(run: RunView, dest: Path, **changes: Any) -> Path:
    shutil.copytree(run.run_dir, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest.update(changes)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_status_follows_the_run_and_credentials_never_reach_the_log(made: dict[str, Any]) -> None:
    plain: RunView = made["plain"]
    root: Path = made["root"]
    secret = "http://alice:hunter2@10.0.0.9:8000/v1?token=abc123#m"
    cancelled = _copy_with(plain, root / "copies" / "interrupted", status="interrupted", checkpoint=secret)
    invocation = {**plain.manifest.invocations[0].__dict__, "status": "failed", "error": "backend went away"}
    failed = _copy_with(plain, root / "copies" / "failed", status="failed", invocations=[invocation])
    out = root / "status-logs"
    exported = export_inspect([str(cancelled), str(failed)], out, made["runs"], DATA_DIR)
    first, second = (read_eval_log(str(log.path)) for log in exported.logs)
    assert first.status == "cancelled" and first.eval.model == "harness/http://10.0.0.9:8000/v1?token=***#m"
    assert second.status == "error" and second.error is not None
    assert second.error.message == "backend went away"
    with zipfile.ZipFile(exported.logs[0].path) as archive:
        blob = b"".join(archive.read(name) for name in archive.namelist())
    assert b"hunter2" not in blob and b"abc123" not in blob and b"10.0.0.9" in blob


def test_without_the_data_the_stored_prompt_stands_in(made: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    exported = export_inspect([str(made["plain"].run_dir)], tmp_path / "logs", made["runs"], empty)
    (log,) = exported.logs
    assert log.note is not None and "could not be loaded" in log.note and "stored prompts shown" in log.note
    samples = read_eval_log(str(log.path)).samples or []
    assert [s.input for s in samples] == [r.prompt for r in made["plain"].samples()]
    assert f"note: {log.path.name}: its data could not be loaded" in exported.describe()


def test_the_command_exports_a_checkpoint_by_reference(made: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "cli-logs"
    reference = f"replay:{made['replay']}"
    proc = harness_cli("export", "inspect", reference, "--runs", str(made["runs"]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (path,) = sorted(out.glob("*.eval"))  # one chosen run per suite of the checkpoint
    assert f"Wrote 1 inspect log(s) to {out}:" in proc.stdout and path.name in proc.stdout
    assert f"View them: inspect view --log-dir {out}" in proc.stdout
    log = read_eval_log(str(path))
    assert log.eval.task == "gsm8k" and len(log.samples or []) == 3
    assert path.name.endswith(".eval") and "_gsm8k_" in path.name


def test_an_unknown_checkpoint_is_a_usage_error(made: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No runs of 'sft-nope'"):
        export_inspect(["sft-nope"], tmp_path / "logs", made["runs"], DATA_DIR)
    assert not (tmp_path / "logs").exists()
