"""The sweep file: what it reads, the tasks it makes, and the errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.sweep.spec import SlurmOptions, load_sweep

FULL = """
suites: [gsm8k, ifeval]
limit: 5
generation: {max_tokens: 64, seed: 3}
runs: out/runs
checkpoints:
  - embedded
  - ref: http://a:8000/v1#m
    replicas: [http://b:8000/v1]
    backend: {concurrency: 8, timeout: 30}
    suites: [gsm8k]
    serve: vllm serve /models/m --port {port}
slurm: {partition: gpu, gpus_per_task: 1, time: "01:00:00", shards: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_file_reads_back(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, FULL))
    first, second = spec.checkpoints
    assert first.reference == "embedded" and first.suites == ("gsm8k", "ifeval")
    assert second.suites == ("gsm8k",) and second.replicas == ("http://b:8000/v1",)
    assert second.backend == {"concurrency": 8, "timeout": 30} and second.serve is not None
    assert spec.limit == 5 and spec.generation == {"max_tokens": 64, "seed": 3}
    assert spec.runs == tmp_path / "out" / "runs"  # relative to the file
    assert spec.slurm == SlurmOptions(partition="gpu", gpus_per_task=1, time="01:00:00", shards=2)
    tasks = spec.tasks()
    assert [(t.checkpoint.reference, t.suite, t.shard_index) for t in tasks] == [
        ("embedded", "gsm8k", 0), ("embedded", "gsm8k", 1), ("embedded", "ifeval", 0),
        ("embedded", "ifeval", 1), ("http://a:8000/v1#m", "gsm8k", 0), ("http://a:8000/v1#m", "gsm8k", 1),
    ]  # fmt: skip
    assert len(spec.tasks(shards=1)) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "is not a mapping"),
        ("checkpoints: []\n", "'checkpoints' must be a non-empty list"),
        ("suites: [gsm8k]\ncheckpoints: [embedded]\nshards: 2\n", "'shards' is not a key"),
        ("checkpoints: [embedded]\n", "'checkpoints[0].suites' is missing"),
        ("suites: [gsm8k, gsm8k]\ncheckpoints: [embedded]\n", "'suites' names an entry twice"),
        ("suites: [gsm8k]\nlimit: 0\ncheckpoints: [embedded]\n", "'limit' must be a positive integer"),
        ("suites: [gsm8k]\ncheckpoints: [{suites: [gsm8k]}]\n", "'checkpoints[0].ref' is missing"),
        ("suites: [gsm8k]\ncheckpoints: [{ref: e, api_key: x}]\n", "'checkpoints[0].api_key' is not a key"),
        ("suites: [gsm8k]\ncheckpoints: [e]\ngeneration: {top_k: 5}\n", "'generation.top_k' is not a key"),
        ("suites: [gsm8k]\ncheckpoints: [e]\nslurm: {shards: 0}\n", "'slurm.shards' must be a whole number"),
        ('suites: [gsm8k]\ncheckpoints: [e]\nslurm: {sbatch_lines: ["a\\nb"]}\n', "single-line strings"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_sweep(path)
    assert message in caught.value.message and str(path) in caught.value.message
