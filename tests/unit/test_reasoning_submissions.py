"""Submissions of reasoning runs: the "ended inside reasoning" share and the stored thinking/answer split
a bundle shows must be what its responses give under the run's parser; a forged one is rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.runs.store import SampleRecord
from tests.conftest import cli_env, harness
from tests.unit.test_submissions import _add, _entries, _gsm8k, _rejected, _tamper

REPLAY = Path(__file__).resolve().parents[1] / "fixtures" / "reasoning" / "qwen3_gsm8k.jsonl"


def _bundle(tmp: Path, *reasoning: str) -> Path:
    root = tmp / "runs"
    proc = harness(
        "eval", "--checkpoint", f"replay:{REPLAY}", "--suite", "gsm8k", "--limit", "6", "--runs", str(root),
        "--quiet", *reasoning,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    bundle = tmp / "team.zip"
    proc = harness(
        "leaderboard", "submit", str(root), "--team", "owls", "--out", str(bundle), "--allow-replay",
        env=cli_env(HARNESS_RUNS_DIR=str(root)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return bundle


@pytest.fixture(scope="module")
def reasoning_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(tmp_path_factory.mktemp("reasoning"), "--reasoning", "think-tags")


def test_an_honest_reasoning_bundle_is_accepted(reasoning_bundle: Path, tmp_path: Path) -> None:
    code, out, err = _add(reasoning_bundle, tmp_path / "site")
    assert code == 0, (out, err)


def test_rejects_a_forged_ended_inside_share(reasoning_bundle: Path, tmp_path: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        path = _gsm8k(entries, "metrics.json")
        payload = json.loads(entries[path])
        payload["reasoning"]["ended_inside_reasoning"]["value"] = 0.0  # "my model never runs out of tokens"
        payload["reasoning"]["unterminated"] = []
        entries[path] = json.dumps(payload).encode()

    _rejected(
        _tamper(reasoning_bundle, tmp_path / "b.zip", edit), tmp_path / "site",
        "its reasoning block (ended inside reasoning, thinking lengths) is not what the stored responses give",
    )  # fmt: skip


def test_rejects_a_stored_split_that_the_parser_does_not_make(reasoning_bundle: Path, tmp_path: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        path = _gsm8k(entries, "samples.jsonl")
        records = [SampleRecord.from_line(line) for line in entries[path].decode().splitlines()]
        first = records[0]
        part = first.reasoning[0]
        records[0] = SampleRecord(
            first.id, first.prompt, first.target, first.request_keys, first.completions, first.scores,
            first.extracted, (type(part)(part.reasoning, "The answer is 18.", part.source),),
        )  # fmt: skip
        entries[path] = "".join(r.to_line() for r in records).encode()

    _rejected(
        _tamper(reasoning_bundle, tmp_path / "b.zip", edit), tmp_path / "site",
        "its stored thinking/answer split is not what the run's reasoning parser makes",
    )  # fmt: skip


def test_rejects_a_reasoning_block_on_a_run_without_reasoning(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "plain")

    def edit(entries: dict[str, bytes]) -> None:
        path = _gsm8k(entries, "metrics.json")
        payload = json.loads(entries[path])
        payload["reasoning"] = {"mode": "think-tags", "ended_inside_reasoning": {"value": 0.0, "n": 6}}
        entries[path] = json.dumps(payload).encode()

    assert "reasoning" not in json.loads(_entries(bundle)[_gsm8k(_entries(bundle), "metrics.json")])
    _rejected(
        _tamper(bundle, tmp_path / "b.zip", edit), tmp_path / "site",
        "has a reasoning block, but the run was made without --reasoning",
    )  # fmt: skip
