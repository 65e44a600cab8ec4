"""Several checkpoints in one `harness eval` and `harness sweep FILE` with the local executor: replayed
responses (no model), every checkpoint's suites at once, the sweep's backend options as AdapterOptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.api.sweep import adapter_options, run_sweep_local
from harness.cli import main
from harness.errors import UsageError
from harness.sweep.spec import load_sweep
from tests.support.cli_runs import write_gold_replay


@pytest.fixture(scope="module")
def gold(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GSM8K's reference solutions, and an (unscored here) answer to the first alice-synth puzzles."""
    path = write_gold_replay(data_dir, tmp_path_factory.mktemp("replay") / "gold.jsonl", None)
    puzzles = [{"sample_id": f"alice-synth-{i:04d}", "text": "\\boxed{0}"} for i in range(5)]
    with path.open("a") as out:
        out.writelines(json.dumps(row) + "\n" for row in puzzles)
    return path


def eval_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main(["eval", *args, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_one_checkpoint_prints_the_suite_records_as_before(
    gold: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = eval_json(
        capsys, "--checkpoint", f"replay:{gold}", "--suite", "gsm8k", "--limit", "3", "--runs", str(tmp_path)
    )
    assert isinstance(records, list) and [r["suite"] for r in records] == ["gsm8k"]
    assert records[0]["n_samples"] == 3 and records[0]["metrics"]["exact_match_flex"]["value"] == 1.0
    assert set(records[0]) == {
        "suite", "suite_version", "run_dir", "n_samples", "primary", "metrics", "invocation", "reasoning",
    }  # fmt: skip


def test_several_checkpoints_print_one_entry_each_in_order(
    gold: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text(gold.read_text().replace("####", "# # # #"))  # no "#### N": strict match fails
    refs = [f"replay:{gold}", f"replay:{other}"]
    every = eval_json(
        capsys, "--checkpoint", refs[0], "--checkpoint", refs[1], "--suite", "gsm8k", "--suite", "alice-synth",
        "--limit", "2", "--runs", str(tmp_path / "runs"),
    )  # fmt: skip
    assert isinstance(every, list) and [e["checkpoint"] for e in every] == refs
    assert [[r["suite"] for r in e["runs"]] for e in every] == [["gsm8k", "alice-synth"]] * 2
    strict = [e["runs"][0]["metrics"]["exact_match_strict"]["value"] for e in every]
    assert strict == [1.0, 0.0]
    assert len({r["run_dir"] for e in every for r in e["runs"]}) == 4  # a run folder per pair

    assert main(["eval", "--checkpoint", refs[0], "--checkpoint", refs[1], "--suite", "gsm8k", "--limit", "2",
                 "--runs", str(tmp_path / "runs"), "--quiet"]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert f"checkpoint: {refs[0]}" in table and f"checkpoint: {refs[1]}" in table
    assert table.index(f"checkpoint: {refs[0]}") < table.index(f"checkpoint: {refs[1]}")


def test_the_same_checkpoint_twice_is_refused(
    gold: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", "--checkpoint", f"replay:{gold}", "--checkpoint", f"replay:{gold}", "--suite", "gsm8k",
                 "--limit", "1", "--runs", str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 2 and "is named twice" in capsys.readouterr().err


def write_sweep(tmp_path: Path, gold: Path, data_dir: Path, extra: str = "") -> Path:
    other = tmp_path / "other.jsonl"
    other.write_text(gold.read_text())
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"suites: [gsm8k]\nlimit: 3\ngeneration: {{seed: 7}}\nruns: out\ndata_dir: {data_dir}\n"
        f"checkpoints:\n  - replay:{gold}\n  - ref: replay:{other}\n    suites: [gsm8k, alice-synth]\n"
        f"    backend: {{concurrency: 2, timeout: 30}}\n{extra}"
    )
    return path


def test_sweep_local_evaluates_each_checkpoint_on_its_suites(
    gold: Path, data_dir: Path, tmp_path: Path
) -> None:
    spec = load_sweep(write_sweep(tmp_path, gold, data_dir))
    every = run_sweep_local(spec, tmp_path / "runs", progress=False)
    assert [[r.suite for r in e.runs] for e in every] == [["gsm8k"], ["gsm8k", "alice-synth"]]
    assert all(r.n_samples == 3 for e in every for r in e.runs)
    manifest = json.loads((every[1]["alice-synth"].run_dir / "manifest.json").read_text())
    assert manifest["generation"]["seed"] == 7 and manifest["limit"] == 3
    assert every[0]["gsm8k"].run_dir.is_relative_to(tmp_path / "runs")


def test_sweep_backend_and_replicas_become_adapter_options(
    gold: Path, data_dir: Path, tmp_path: Path
) -> None:
    spec = load_sweep(write_sweep(tmp_path, gold, data_dir))
    assert adapter_options(spec, 0, spec.checkpoints[0]) is None
    options = adapter_options(spec, 1, spec.checkpoints[1])
    assert options is not None and (options.concurrency, options.timeout_s) == (2, 30.0)
    path = tmp_path / "replicas.yaml"
    path.write_text(
        "suites: [gsm8k]\ncheckpoints:\n  - ref: http://a:8000/v1#m\n    replicas: [http://b:8000/v1]\n"
        "    backend: {max_attempts: 3, api_key_env: KEY, batch_size: 4, device: cpu}\n"
    )
    spec = load_sweep(path)
    options = adapter_options(spec, 0, spec.checkpoints[0])
    assert options is not None and options.replicas == ("http://b:8000/v1",)
    assert (options.max_attempts, options.api_key_env, options.batch_size, options.device) == (
        3,
        "KEY",
        4,
        "cpu",
    )


@pytest.mark.parametrize(
    ("backend", "problem"),
    [("{concurrency: 0}", "'checkpoints[0].backend.concurrency' must be a whole number >= 1"),
     ("{timeout: fast}", "'checkpoints[0].backend.timeout' must be a positive number of seconds"),
     ("{device: 3}", "'checkpoints[0].backend.device' must be a non-empty string")],
)  # fmt: skip
def test_a_bad_backend_value_names_the_file_and_key(tmp_path: Path, backend: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"suites: [gsm8k]\ncheckpoints:\n  - ref: embedded\n    backend: {backend}\n")
    spec = load_sweep(path)
    with pytest.raises(UsageError) as caught:
        adapter_options(spec, 0, spec.checkpoints[0])
    assert str(path) in caught.value.message and problem in caught.value.message


def test_sweep_command_runs_locally_and_prints_json(
    gold: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_sweep(tmp_path, gold, data_dir)
    assert main(["sweep", str(path), "--json", "--quiet"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert [len(e["runs"]) for e in every] == [1, 2]
    assert all(
        Path(r["run_dir"]).is_relative_to(tmp_path / "out") for e in every for r in e["runs"]
    )  # file's runs
    assert main(["sweep", str(path), "--runs", str(tmp_path / "flag"), "--quiet"]) == 0  # --runs wins
    assert "checkpoint: replay:" in capsys.readouterr().out and (tmp_path / "flag").is_dir()


def test_sweep_command_with_too_many_words_says_the_two_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", "a", "b", "c"]) == 2
    assert "harness sweep status FILE" in capsys.readouterr().err


def test_sweep_status_and_a_slurm_dry_run_go_to_the_slurm_modules(
    gold: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_sweep(tmp_path, gold, data_dir)
    assert main(["sweep", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", "status", str(path)]) == 0
    status = capsys.readouterr().out
    assert "gsm8k" in status and "alice-synth" in status
    assert main(["sweep", str(path), "--executor", "slurm", "--dry-run", "--shards", "2"]) == 0
    assert "(6 array tasks); not submitted (--dry-run)" in capsys.readouterr().out  # 3 pairs x 2 shards


def test_a_bad_generation_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("suites: [gsm8k]\ngeneration: {max_tokens: lots}\ncheckpoints: [embedded]\n")
    with pytest.raises(UsageError) as caught:
        run_sweep_local(load_sweep(path), tmp_path / "runs", progress=False)
    assert caught.value.message.startswith(
        f"The sweep file {path}: 'generation.max_tokens' must be a number >= 1."
    )
