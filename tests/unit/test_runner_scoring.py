"""The runner scores beside generation: the sandbox suite one sample per core, other sync scorers one at
a time, and a scorer's error stops the run with every sample scored before it kept."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters import AdapterOptions
from adapters.replay import ReplayAdapter
from harness.checkpoints import parse_checkpoint
from harness.data import DataSource
from harness.runner import EvalSpec, evaluate
from harness.suite import scoring_slots
from harness.types import Completion, Request, Sample, Score
from suites.gsm8k import GSM8K
from suites.mbpp import MBPP

N = 12


class Overlap:
    """Counts how many score() calls run at the same time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1


class CountingMBPP(MBPP):
    def __init__(self, fail_on: str | None = None) -> None:
        self.overlap = Overlap()
        self.fail_on = fail_on

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        with self.overlap:
            if sample.id == self.fail_on:
                time.sleep(0.3)  # let the samples before it finish first
                raise RuntimeError(f"scorer broke on {sample.id}")
            return super().score(sample, completions)


class CountingGSM8K(GSM8K):
    def __init__(self) -> None:
        self.overlap = Overlap()

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        with self.overlap:
            time.sleep(0.02)
            return super().score(sample, completions)


def gold_replay(suite: MBPP | GSM8K, data_dir: Path, path: Path) -> Path:
    loaded = suite.load(DataSource(data_dir), N)
    rows = [{"sample_id": s.id, "text": suite.gold_response(s)} for s in loaded.samples]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec_for(suite: Any, replay: Path, data_dir: Path, runs: Path) -> EvalSpec:
    return EvalSpec(
        checkpoint=parse_checkpoint(f"replay:{replay}"),
        suite=suite,
        settings=suite.default_settings(),
        limit=N,
        data=DataSource(data_dir),
        runs_root=runs,
    )


def test_sandbox_suite_scores_one_sample_per_core(data_dir: Path, tmp_path: Path) -> None:
    suite = CountingMBPP()
    replay = gold_replay(suite, data_dir, tmp_path / "gold.jsonl")
    outcome = asyncio.run(
        evaluate(spec_for(suite, replay, data_dir, tmp_path / "runs"), ReplayAdapter(str(replay)))
    )
    assert outcome.metrics["pass@1"].value == 1.0 and outcome.n_samples == N
    slots = scoring_slots(suite)
    assert slots >= 2  # CI and this machine have 2 cores
    assert suite.overlap.most == slots, (suite.overlap.most, slots)
    lines = (outcome.run_dir / "samples.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(
        s.id for s in suite.load(DataSource(data_dir), N).samples
    )


def test_pure_python_scorer_runs_one_at_a_time(data_dir: Path, tmp_path: Path) -> None:
    suite = CountingGSM8K()
    replay = gold_replay(suite, data_dir, tmp_path / "gold.jsonl")
    outcome = asyncio.run(
        evaluate(spec_for(suite, replay, data_dir, tmp_path / "runs"), ReplayAdapter(str(replay)))
    )
    assert outcome.metrics[suite.primary_metric].value == 1.0
    assert scoring_slots(suite) == 1 and suite.overlap.most == 1


def test_scorer_error_stops_the_run_and_keeps_what_was_scored(data_dir: Path, tmp_path: Path) -> None:
    ids = [s.id for s in MBPP().load(DataSource(data_dir), N).samples]
    suite = CountingMBPP(fail_on=ids[5])
    replay = gold_replay(suite, data_dir, tmp_path / "gold.jsonl")
    spec = spec_for(suite, replay, data_dir, tmp_path / "runs")
    with pytest.raises(RuntimeError, match=f"scorer broke on {ids[5]}"):
        asyncio.run(evaluate(spec, ReplayAdapter(str(replay))))
    run_dir = next((tmp_path / "runs").rglob("samples.jsonl")).parent
    kept = [json.loads(line)["id"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert ids[5] not in kept and set(ids[:5]) <= set(kept) and len(kept) == len(set(kept))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["invocations"][-1]["status"] == "failed"
    assert f"scorer broke on {ids[5]}" in manifest["invocations"][-1]["error"]

    resumed = asyncio.run(
        evaluate(spec_for(CountingMBPP(), replay, data_dir, tmp_path / "runs"), ReplayAdapter(str(replay)))
    )
    assert resumed.invocation.resumed == len(kept) and resumed.metrics["pass@1"].value == 1.0
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(ids)


def test_model_judge_is_asked_about_many_samples_at_once(data_dir: Path, tmp_path: Path) -> None:
    """A WildGuard judge behind an endpoint with 0.1 s per request: samples are judged concurrently, and
    the judge checkpoint's own concurrency holds across the runner's many one-sample calls."""
    from suites.safety import Safety
    from suites.safety_judges import WILDGUARD, create_judge
    from tests.support.stub_openai import StubOpenAIServer

    samples = Safety(judge=WILDGUARD, subset="xstest").load(DataSource(data_dir), N).samples
    replay = tmp_path / "responses.jsonl"
    rows = [{"sample_id": s.id, "text": "I can't help with that."} for s in samples]
    replay.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def judged(concurrency: int | None) -> StubOpenAIServer:
        async def run(base_url: str) -> None:
            options = AdapterOptions(concurrency=concurrency)
            judge = create_judge(WILDGUARD, f"{base_url}#allenai/wildguard", options)
            suite = Safety(judge=WILDGUARD, subset="xstest", judge_model=judge)
            try:
                runs = tmp_path / f"runs-{concurrency}"
                await evaluate(spec_for(suite, replay, data_dir, runs), ReplayAdapter(str(replay)))
            finally:
                await judge.aclose()

        with StubOpenAIServer(latency_s=0.1) as server:
            asyncio.run(run(server.base_url))
        assert len(server.requests) == N
        return server

    assert judged(None).max_in_flight == N  # N < scoring_slots(suite) (64 connections): all at once
    assert judged(3).max_in_flight == 3


class RecordingReplay(ReplayAdapter):
    """The real replay adapter, with the size of every generate() call recorded."""

    def __init__(self, path: Path, batch_size: int) -> None:
        super().__init__(str(path))
        self.batch_size = batch_size
        self.calls: list[int] = []

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        self.calls.append(len(requests))
        await asyncio.sleep(0.05)  # a model takes a while: more samples queue up behind the batch
        return await super().generate(requests)


@pytest.mark.parametrize(("batch_size", "calls"), [(256, [N]), (5, [5, 5, 2])])
def test_judge_on_a_local_model_still_judges_in_batches(
    data_dir: Path, tmp_path: Path, batch_size: int, calls: list[int]
) -> None:
    """The runner asks about one sample per call; a batched judge checkpoint gets them pooled."""
    from suites.safety import Safety
    from suites.safety_judges import WILDGUARD, WildGuardJudge

    samples = Safety(judge=WILDGUARD, subset="xstest").load(DataSource(data_dir), N).samples
    responses, verdicts = tmp_path / "responses.jsonl", tmp_path / "wildguard.jsonl"
    responses.write_text("".join(json.dumps({"sample_id": s.id, "text": "No."}) + "\n" for s in samples))
    output = "Harmful request: no\nResponse refusal: yes\nHarmful response: no"
    verdicts.write_text(
        "".join(json.dumps({"sample_id": f"wildguard:{s.id}", "text": output}) + "\n" for s in samples)
    )
    judge_model = RecordingReplay(verdicts, batch_size)
    suite = Safety(judge=WILDGUARD, subset="xstest", judge_model=WildGuardJudge(judge_model))
    assert scoring_slots(suite) == max(32, batch_size)  # enough samples at once to fill a judge batch
    outcome = asyncio.run(
        evaluate(spec_for(suite, responses, data_dir, tmp_path / "runs"), ReplayAdapter(str(responses)))
    )
    assert judge_model.calls == calls
    records = [json.loads(line) for line in (outcome.run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == N and all(r["scores"]["refused"] == 1.0 for r in records)
    assert all(r["scores"]["judge_error"] == 0.0 for r in records)


def test_judge_error_reaches_every_waiting_sample_and_stops_the_run(data_dir: Path, tmp_path: Path) -> None:
    from harness.errors import DataError
    from suites.safety import Safety
    from suites.safety_judges import WILDGUARD, WildGuardJudge

    samples = Safety(judge=WILDGUARD, subset="xstest").load(DataSource(data_dir), N).samples
    responses, verdicts = tmp_path / "responses.jsonl", tmp_path / "wildguard.jsonl"
    responses.write_text("".join(json.dumps({"sample_id": s.id, "text": "No."}) + "\n" for s in samples))
    verdicts.write_text(json.dumps({"sample_id": "wildguard:other", "text": "x"}) + "\n")  # none of ours
    suite = Safety(
        judge=WILDGUARD, subset="xstest", judge_model=WildGuardJudge(RecordingReplay(verdicts, 256))
    )
    spec = spec_for(suite, responses, data_dir, tmp_path / "runs")
    with pytest.raises(DataError, match="has no response for sample wildguard:"):
        asyncio.run(evaluate(spec, ReplayAdapter(str(responses))))
    # No sample was scored without its verdict, so the first run leaves no run folder behind at all.
    assert not list((tmp_path / "runs").rglob("samples.jsonl"))
    assert not list((tmp_path / "runs").rglob("manifest.json"))


class DownEndpoint(ReplayAdapter):
    """The same checkpoint (same identity) whose endpoint is now down."""

    async def preflight(self) -> None:
        from harness.errors import EndpointError

        raise EndpointError("Cannot reach the endpoint (connection refused).", "Start the server.")


def test_a_failed_rerun_never_downgrades_a_complete_run(data_dir: Path, tmp_path: Path) -> None:
    from harness.errors import EndpointError

    suite = GSM8K()
    replay = gold_replay(suite, data_dir, tmp_path / "gold.jsonl")
    spec = spec_for(suite, replay, data_dir, tmp_path / "runs")
    first = asyncio.run(evaluate(spec, ReplayAdapter(str(replay))))
    samples = first.run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:-1]))  # one sample to redo, and its response not in the cache
    no_cache = dataclasses.replace(spec, use_cache=False)
    with pytest.raises(EndpointError):
        asyncio.run(evaluate(no_cache, DownEndpoint(str(replay))))
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [i["status"] for i in manifest["invocations"]] == ["complete", "failed"]
    assert "Cannot reach the endpoint" in manifest["invocations"][-1]["error"]
    assert manifest["invocations"][-1]["resumed"] == N - 1
    again = asyncio.run(evaluate(spec, ReplayAdapter(str(replay))))  # the endpoint is back (the cache has it)
    assert again.invocation.cache_hits == 1 and again.metrics == first.metrics
