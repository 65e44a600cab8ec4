"""The Slurm executor's files without a cluster: the array job's #SBATCH lines, the task table as bash
reads it (the exact `harness eval` argv per task), served checkpoints, secrets, and a missing sbatch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.sweep.slurm import serve_port, submit_sweep
from harness.sweep.spec import load_sweep

SWEEP = """suites: [gsm8k, ifeval]
limit: 8
generation: {max_tokens: 64, seed: 3, logprobs: true}
judge: refusal-heuristic
checkpoints:
  - embedded
  - ref: http://team1.example:8000/v1#team1-dpo
    suites: [gsm8k]
    backend: {api_key_env: TEAM1_KEY, concurrency: 16}
    replicas: [http://b:8000/v1]
    serve: vllm serve /models/team 1 --port {port}
slurm:
  partition: gpu
  account: course
  gpus_per_task: 1
  mem: 16G
  time: "01:00:00"
  shards: 2
  sbatch_lines: ["--qos=short", "#SBATCH --constraint=a100"]
"""


def task_argv(table: Path, task: int) -> list[str]:
    """What the script's `eval "$LINE"` sets for array task `task`: checkpoint, serve command, ARGS."""
    script = f'LINE=$(sed -n "$(({task} + 1))p" "$1"); eval "$LINE"; printf "%s\\n" "$SERVE" "$CHECKPOINT" "${{ARGS[@]}}"'
    done = subprocess.run(
        ["bash", "-c", script, "bash", str(table)], capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_dry_run_writes_the_array_job_and_its_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM1_KEY", "sk-secret-value")
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    spec = load_sweep(tmp_path / "sweep.yaml")
    runs = tmp_path / "runs"
    submission = submit_sweep(spec, runs, spec.slurm, dry_run=True)
    assert submission.job_id is None and submission.tasks == 6  # (2 suites + 1 suite) x 2 shards
    script = submission.script.read_text()
    for line in (
        "#SBATCH --array=0-5", "#SBATCH --requeue", "#SBATCH --partition=gpu", "#SBATCH --account=course",
        "#SBATCH --gres=gpu:1", "#SBATCH --mem=16G", "#SBATCH --time=01:00:00", "#SBATCH --cpus-per-task=2",
        f"#SBATCH --output={submission.logs}/%A_%a.out", "#SBATCH --qos=short", "#SBATCH --constraint=a100",
        f"PYTHON={sys.executable}",
    ):  # fmt: skip
        assert line in script.splitlines(), line
    assert submission.logs.is_dir() and submission.logs.parent.parent == runs / ".slurm"
    assert "sk-secret-value" not in script + submission.table.read_text()
    subprocess.run(["bash", "-n", str(submission.script)], check=True)  # it parses

    common = ["--limit", "8", "--seed", "3", "--max-tokens", "64", "--logprobs"]
    tail = ["--judge", "refusal-heuristic", "--runs", str(runs), "--no-cache", "--quiet"]
    assert task_argv(submission.table, 1) == [
        "", "embedded", "--suite", "gsm8k", "--shard", "1/2", *common, *tail,
    ]  # fmt: skip
    assert task_argv(submission.table, 3) == [
        "",
        "embedded",
        "--suite",
        "ifeval",
        "--shard",
        "1/2",
        *common,
        *tail,
    ]
    port = serve_port("http://team1.example:8000/v1#team1-dpo")
    assert task_argv(submission.table, 4) == [
        f"vllm serve /models/team 1 --port {port}",
        f"http://127.0.0.1:{port}/v1#team1-dpo",
        "--suite", "gsm8k", "--shard", "0/2", *common,
        "--concurrency", "16", "--api-key-env", "TEAM1_KEY", "--replica", "http://b:8000/v1", *tail,
    ]  # fmt: skip


def test_serve_needs_an_endpoint_reference(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(
        "suites: [gsm8k]\ncheckpoints: [{ref: embedded, serve: 'x --port {port}'}]\n"
    )
    spec = load_sweep(tmp_path / "sweep.yaml")
    with pytest.raises(UsageError, match="has 'serve' but is not an endpoint reference"):
        submit_sweep(spec, tmp_path / "runs", spec.slurm, dry_run=True)
    assert not (tmp_path / "runs").exists()


def test_without_sbatch_the_submission_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "sweep.yaml").write_text("suites: [gsm8k]\ncheckpoints: [embedded]\n")
    spec = load_sweep(tmp_path / "sweep.yaml")
    with pytest.raises(UsageError, match="sbatch is not on PATH") as caught:
        submit_sweep(spec, tmp_path / "runs", spec.slurm)
    assert "--dry-run" in str(caught.value.fix)


@pytest.mark.parametrize(
    "entry",
    [
        "{ref: 'http://alice:hunter22@team1.example:8000/v1#m'}",
        "{ref: 'http://team1.example:8000/v1#m', replicas: ['http://alice:hunter22@b:8000/v1']}",
    ],
)
def test_credentials_in_a_url_never_reach_the_task_table(tmp_path: Path, entry: str) -> None:
    (tmp_path / "sweep.yaml").write_text(f"suites: [gsm8k]\ncheckpoints: [{entry}]\n")
    spec = load_sweep(tmp_path / "sweep.yaml")
    with pytest.raises(UsageError) as caught:
        submit_sweep(spec, tmp_path / "runs", spec.slurm, dry_run=True)
    assert "carries credentials" in caught.value.message and "hunter22" not in caught.value.message
    assert not (tmp_path / "runs").exists()
