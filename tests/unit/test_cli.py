"""The CLI as a user meets it: exit codes, one-paragraph errors without tracebacks, resume, cache, rescore."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env, eval_json, free_port, harness, read_samples
from tests.support.cli_runs import assert_clean_error, replay_args, write_gold_replay


@pytest.fixture(scope="module")
def gold_replay(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gold_replay(data_dir, tmp_path_factory.mktemp("replay") / "gold.jsonl", None)


def test_unknown_checkpoint_lists_valid_forms() -> None:
    proc = harness("eval", "--checkpoint", "gpt4", "--suite", "gsm8k")
    assert_clean_error(
        proc, 2, "Invalid --checkpoint 'gpt4'", "embedded", "gguf:PATH", "http(s)://HOST:PORT/v1#MODEL"
    )


def test_malformed_endpoint_reference() -> None:
    proc = harness("eval", "--checkpoint", "http://127.0.0.1:8080/v1", "--suite", "gsm8k")
    assert_clean_error(proc, 2, "model name is missing")


def test_missing_gguf_file() -> None:
    proc = harness("eval", "--checkpoint", "gguf:/nonexistent/model.gguf", "--suite", "gsm8k")
    assert_clean_error(proc, 2, "/nonexistent/model.gguf does not exist")


def test_unknown_suite_lists_known_ones() -> None:
    proc = harness("eval", "--checkpoint", "embedded", "--suite", "mmlu")
    assert_clean_error(proc, 2, "Unknown suite 'mmlu'", "gsm8k")


def test_missing_data_dir(tmp_path: Path) -> None:
    proc = harness("eval", "--checkpoint", "embedded", "--data-dir", str(tmp_path / "nope"))
    assert_clean_error(proc, 4, str(tmp_path / "nope"), "does not exist", "hub")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = harness("eval", "--checkpoint", "embedded", "--suite", "gsm8k", "--data-dir", str(empty))
    assert_clean_error(proc, 4, "gsm8k/test.jsonl", "does not exist")


def _installed(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is not None, reason=f"{module} is installed")


@pytest.mark.parametrize(
    ("ref", "extra"),
    [
        pytest.param("vllm:meta-llama/Llama-3.2-1B", "vllm", marks=_installed("vllm")),
        pytest.param("tinker-base:meta-llama/Llama-3.2-1B", "tinker", marks=_installed("tinker")),
    ],
)
def test_missing_extra_gives_the_install_command(ref: str, extra: str) -> None:
    proc = harness("eval", "--checkpoint", ref, "--suite", "gsm8k", "--limit", "1")
    assert_clean_error(proc, 5, f"the '{extra}' extra", f"pip install -e '.[{extra}]'")


def test_unregistered_stage_tag(tmp_path: Path) -> None:
    proc = harness("eval", "--checkpoint", "sft:latest", "--suite", "gsm8k", "--runs", str(tmp_path))
    assert_clean_error(proc, 2, "No checkpoint 'sft:latest'", "has no entries yet", "harness checkpoints add")


def test_unreachable_endpoint_fails_fast_with_exit_3(tmp_path: Path) -> None:
    ref = f"http://127.0.0.1:{free_port()}/v1#m"
    proc = harness(
        "eval", "--checkpoint", ref, "--suite", "gsm8k", "--limit", "2", "--runs", str(tmp_path), timeout=60
    )
    assert_clean_error(proc, 3, "Cannot reach the endpoint", "harness serve")


def test_unset_api_key_variable(tmp_path: Path) -> None:
    ref = f"http://127.0.0.1:{free_port()}/v1#m?api_key_env=HARNESS_TEST_UNSET_KEY"
    proc = harness("eval", "--checkpoint", ref, "--suite", "gsm8k", "--limit", "1", "--runs", str(tmp_path))
    assert_clean_error(proc, 2, "HARNESS_TEST_UNSET_KEY", "is not set")


def test_corrupt_samples_line_is_reported_with_path_and_line(gold_replay: Path, tmp_path: Path) -> None:
    run = eval_json(*replay_args(gold_replay, 5, tmp_path))
    samples = run.run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    lines[2] = '{"id": "gsm8k-test-0002", "scores": oops}\n'
    samples.write_text("".join(lines))
    proc = harness("eval", *replay_args(gold_replay, 5, tmp_path))
    assert_clean_error(proc, 4, f"{samples} line 3 is corrupt", "Delete that line")
    assert (
        samples.read_text().splitlines(keepends=True)[2] == lines[2]
    )  # nothing was rewritten behind the user's back


def test_duplicate_sample_is_an_error_not_a_double_count(gold_replay: Path, tmp_path: Path) -> None:
    run = eval_json(*replay_args(gold_replay, 3, tmp_path))
    samples = run.run_dir / "samples.jsonl"
    first = samples.read_text().splitlines(keepends=True)[0]
    with samples.open("a") as handle:
        handle.write(first)
    proc = harness("eval", *replay_args(gold_replay, 3, tmp_path))
    assert_clean_error(proc, 4, "line 4 repeats sample gsm8k-test-0000 (first at line 1)")


def test_torn_last_line_is_repaired_and_the_sample_redone(gold_replay: Path, tmp_path: Path) -> None:
    args = (*replay_args(gold_replay, 6, tmp_path), "--no-cache")
    first = eval_json(*args)
    samples = first.run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:4]) + lines[4][:37])  # a write cut off mid-line, as after SIGKILL
    second = eval_json(*args)
    invocation = second.payload["invocation"]
    assert invocation == {
        "generated": 2,
        "cache_hits": 0,
        "resumed": 4,
        "retries": 0,
        "repaired_bytes": 37,
        "extended_from": None,
    }
    records = read_samples(second.run_dir)
    assert sorted(str(r["id"]) for r in records) == [f"gsm8k-test-{i:04d}" for i in range(6)]
    assert second.metrics == first.metrics


def test_rerun_and_cache_make_zero_generations(gold_replay: Path, tmp_path: Path) -> None:
    args = replay_args(gold_replay, 8, tmp_path)
    first = eval_json(*args)
    assert first.payload["invocation"]["generated"] == 8
    again = eval_json(*args)
    assert again.payload["invocation"] == {
        "generated": 0,
        "cache_hits": 0,
        "resumed": 8,
        "retries": 0,
        "repaired_bytes": 0,
        "extended_from": None,
    }
    (first.run_dir / "samples.jsonl").unlink()
    from_cache = eval_json(*args)
    assert from_cache.payload["invocation"]["generated"] == 0
    assert from_cache.payload["invocation"]["cache_hits"] == 8
    assert from_cache.metrics == first.metrics
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert [i["status"] for i in manifest["invocations"]] == ["complete"] * 3
    assert manifest["data"]["source"].endswith("gsm8k/test.jsonl") and len(manifest["data"]["sha256"]) == 64


def test_runs_show_and_rescore(gold_replay: Path, tmp_path: Path) -> None:
    run = eval_json(*replay_args(gold_replay, 4, tmp_path))
    listing = harness("runs", "--runs", str(tmp_path))
    assert listing.returncode == 0 and "complete" in listing.stdout and "4/4" in listing.stdout
    shown = harness("show", run.run_dir.name, "--runs", str(tmp_path), "--samples", "1")
    assert shown.returncode == 0
    assert (
        "exact_match_flex*" in shown.stdout and "100.0" in shown.stdout and "gsm8k-test-0000" in shown.stdout
    )
    # Tamper with a stored verdict; rescoring from the stored response restores it.
    samples = run.run_dir / "samples.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    records[1]["scores"]["exact_match_flex"] = 0.0
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    rescored = harness("rescore", str(run.run_dir))
    assert rescored.returncode == 0, rescored.stderr
    assert "1 changed" in rescored.stdout
    metrics = json.loads((run.run_dir / "metrics.json").read_text())["metrics"]
    assert metrics == run.metrics
    missing = harness("show", "no-such-run", "--runs", str(tmp_path))
    assert_clean_error(missing, 2, "No run matches 'no-such-run'", run.run_dir.name)


def test_changed_model_behind_the_same_reference_is_refused(gold_replay: Path, tmp_path: Path) -> None:
    replay = tmp_path / "answers.jsonl"
    replay.write_text(gold_replay.read_text())
    args = replay_args(replay, 2, tmp_path / "runs")
    eval_json(*args)
    replay.write_text(gold_replay.read_text().replace("####", "# # # #"))
    proc = harness("eval", *args)
    assert_clean_error(proc, 2, "holds responses from", "--fresh")
    fresh = eval_json(*args, "--fresh")
    assert fresh.metrics["exact_match_strict"]["value"] == 0.0


def test_cli_start_imports_no_backend() -> None:
    code = (
        "import sys; from harness.cli import build_parser; build_parser().parse_args(['eval', '--checkpoint', 'x']);"
        "heavy = {'torch', 'llama_cpp', 'vllm', 'tinker', 'transformers', 'datasets', 'aiohttp', 'numpy', 'pyarrow'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == "[]"


def test_version_reports_where_packages_load_from() -> None:
    proc = harness("--version")
    assert proc.returncode == 0
    for package in ("harness", "suites", "adapters", "training", "reports", "leaderboard"):
        assert f"{package} " in proc.stdout and str(ROOT / package) in proc.stdout


def test_suites_show_counts_rows(data_dir: Path) -> None:
    proc = harness("suites", "show", "gsm8k", "--data-dir", str(data_dir))
    assert proc.returncode == 0
    assert "1319 samples" in proc.stdout and "8-shot" in proc.stdout


def test_without_data_dir_and_offline_the_hub_error_says_what_to_set(tmp_path: Path) -> None:
    env = cli_env(HF_HOME=str(tmp_path / "hf-home"))  # an empty hub cache
    del env["HARNESS_DATA_DIR"]
    proc = harness(
        "eval",
        "--checkpoint",
        "embedded",
        "--suite",
        "gsm8k",
        "--limit",
        "1",
        "--runs",
        str(tmp_path),
        env=env,
    )
    assert_clean_error(proc, 4, "Could not load openai/gsm8k", "HARNESS_DATA_DIR")


def test_sampling_flags_reach_the_run_settings(data_dir: Path, tmp_path: Path) -> None:
    """--samples/--temperature/--top-p were once parsed and then dropped; the manifest must carry them."""
    from harness.data import DataSource
    from suites import get_suite

    suite = get_suite("mbpp")
    samples = suite.load(DataSource(data_dir), limit=2).samples
    replay = tmp_path / "gold.jsonl"
    rows = [{"sample_id": s.id, "texts": [suite.gold_response(s), "def nothing(): pass"]} for s in samples]
    replay.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = eval_json(
        "--checkpoint", f"replay:{replay}", "--suite", "mbpp", "--limit", "2", "--samples", "2",
        "--top-p", "0.9", "--runs", str(tmp_path / "runs"),
    )  # fmt: skip
    generation = json.loads((run.run_dir / "manifest.json").read_text())["generation"]
    assert (generation["n"], generation["temperature"], generation["top_p"]) == (2, 0.8, 0.9)
    assert len(json.loads((run.run_dir / "samples.jsonl").read_text().splitlines()[0])["completions"]) == 1
    assert run.metrics["pass@1"]["value"] == 0.5  # one of the two responses passes for each problem


def test_eval_table_shows_headline_metrics_and_all_metrics_shows_breakdowns(
    data_dir: Path, tmp_path: Path
) -> None:
    from harness.data import resolve_data_source
    from suites import get_suite
    from suites.alice import CATEGORIES

    suite = get_suite("alice")
    samples = suite.load(resolve_data_source(str(data_dir)), 12).samples
    replay = tmp_path / "gold.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": suite.gold_response(s)}) + "\n" for s in samples)
    )
    args = (
        "eval",
        "--checkpoint",
        f"replay:{replay}",
        "--suite",
        "alice",
        "--limit",
        "12",
        "--runs",
        str(tmp_path),
    )
    short = harness(*args, "--quiet")
    assert short.returncode == 0, short.stderr
    rows = [line.split()[1] for line in short.stdout.splitlines() if line.startswith("alice ")]
    assert rows == ["accuracy*"]
    assert "(6 per-category metrics not shown: add --all-metrics, or `harness show RUN`)" in short.stdout
    full = harness(*args, "--quiet", "--all-metrics")
    rows = [line.split()[1] for line in full.stdout.splitlines() if line.startswith("alice ")]
    assert rows == ["accuracy*", *(f"accuracy_{category}" for category in CATEGORIES)]
    assert "not shown" not in full.stdout


def test_out_still_names_the_runs_folder_with_a_one_line_warning(tmp_path: Path) -> None:
    import contextlib
    import io

    from harness.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["runs", "--out", str(tmp_path)])
    assert code == 0 and f"No runs under {tmp_path}" in out.getvalue()
    assert err.getvalue().splitlines() == [
        "harness: warning: --out is deprecated here; use --runs DIR (the runs folder)."
    ]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["runs", "--runs", str(tmp_path)]) == 0
    assert err.getvalue() == ""
