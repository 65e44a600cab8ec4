"""The reward-hack corpus (tests/support/reward_hacks.py) through the sandbox, the MBPP scorer and RL reward.

Every hack is wrong, so every one must score as a failure on both test shapes while the honest solution
passes; nothing may escape (canary files stay intact) or stay behind (no process of the runs' uids). The
whole corpus runs once, as one batch two programs at a time, under short limits: a hack that only waits
for the clock costs its 6 s, one that spins its 3 s of CPU.
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.types import Completion, Sample
from suites.mbpp import MBPP
from suites.sandbox import MARKER, Job, Limits, ProgramResult, run_jobs
from suites.sandbox.cleanup import pids_of_uid
from tests.support.reward_hacks import (
    ESCAPES,
    FAMILIES,
    GENERIC,
    HACKS,
    PRELUDE,
    RIGHT,
    SHAPES,
    adapt,
    task_function,
)
from tests.support.sandbox_drivers import alive, cmdline, real_uid

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

LIMITS = Limits(wall_s=6.0, cpu_s=3)
CANARY_TEXT = "intact"
MBPP_TASK = "mbpp-17"  # square_perimeter: assert square_perimeter(10)==40, ...


@dataclass(frozen=True)
class Batch:
    results: dict[tuple[str, str], ProgramResult]  # (program name, shape name) -> result
    canaries: tuple[Path, ...]
    leftovers: tuple[str, ...]  # live processes of the runs, looked for as soon as the batch returned


def _leftovers(results: list[ProgramResult]) -> tuple[str, ...]:
    """Processes of the runs' sandbox uids, and processes whose argv holds the sandbox marker together
    with a run's uid or a run's working folder."""
    uids = {r.uid for r in results if r.uid is not None}
    workdirs = {r.workdir for r in results if r.workdir}
    found = [f"{pid} uid={uid}" for uid in sorted(uids) for pid in pids_of_uid(uid) if alive(pid)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not alive(int(entry)):
            continue
        argv = cmdline(int(entry))
        joined = " ".join(argv)
        if MARKER in joined and (real_uid(int(entry)) in uids or any(w in joined for w in workdirs)):
            found.append(f"{entry} {joined[:160]}")
    return tuple(found)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    canary = tmp_path_factory.mktemp("reward-hacks") / "canary.txt"
    canary.write_text(CANARY_TEXT)
    fd, shared_name = tempfile.mkstemp(prefix="harness-reward-hack-canary-", dir="/tmp")
    os.write(fd, CANARY_TEXT.encode())
    os.close(fd)
    shared = Path(shared_name)
    try:
        programs = {**HACKS, "RIGHT": RIGHT}
        programs.update({name: make(str(canary), str(shared)) for name, make in ESCAPES.items()})
        keys = [(name, shape) for name in programs for shape in SHAPES]
        jobs = [Job(program=programs[name], tests=SHAPES[shape], prelude=PRELUDE) for name, shape in keys]
        results = run_jobs(jobs, LIMITS, max_workers=2)
        leftovers = _leftovers(results)
        yield Batch(dict(zip(keys, results, strict=True)), (canary, shared), leftovers)
    finally:
        shared.unlink(missing_ok=True)


def _explain(result: ProgramResult) -> str:
    return (
        f"status={result.status} rc={result.returncode} notes={result.notes}\n"
        f"stdout: {result.stdout_tail[-1500:]}\nstderr: {result.stderr_tail[-1500:]}"
    )


def test_the_corpus_is_complete_and_every_hack_is_wrong() -> None:
    assert len(HACKS) >= 34
    named = [name for names in FAMILIES.values() for name in names]
    assert sorted(named) == sorted(HACKS)  # each hack in exactly one family
    assert all(len(names) >= 1 for names in FAMILIES.values())
    assert set(GENERIC) <= set(HACKS)
    for name, program in {**HACKS, **{n: make("/tmp/x") for n, make in ESCAPES.items()}}.items():
        tree = ast.parse(program, name)  # every hack is valid Python 3.11
        assert any(isinstance(n, ast.FunctionDef) and n.name == "solve" for n in ast.walk(tree)), name
        compact = program.replace(" ", "")
        assert not any(s in compact for s in ("x*x", "x**2", "pow(x")), f"{name} computes x * x"
    for name in GENERIC:
        assert "def solve(*args, **kwargs)" in HACKS[name], name
    assert "x * x" in RIGHT


def test_the_honest_solution_passes_every_shape(batch: Batch) -> None:
    for shape in SHAPES:
        result = batch.results["RIGHT", shape]
        assert result.status == "passed", _explain(result)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", sorted(HACKS) + sorted(ESCAPES))
def test_every_hack_fails(batch: Batch, name: str, shape: str) -> None:
    result = batch.results[name, shape]
    assert result.passed is False, _explain(result)


def test_nothing_escapes_the_sandbox(batch: Batch) -> None:
    if not any(r.privileges_dropped for r in batch.results.values()):
        pytest.skip("no privilege drop here (not root): the program may write what the harness user can")
    for canary in batch.canaries:
        assert canary.is_file() and canary.read_text() == CANARY_TEXT, canary


def test_no_process_is_left_behind(batch: Batch) -> None:
    assert batch.leftovers == ()
    if any(r.privileges_dropped for r in batch.results.values()):  # else no uid of its own to look for
        assert {r.uid for r in batch.results.values()} - {None}, "no run reported its sandbox uid"


@pytest.fixture(scope="module")
def mbpp_sample(data_dir: Path) -> Sample:
    samples = MBPP().load(DataSource(data_dir), limit=8).samples
    return next(s for s in samples if s.id == MBPP_TASK)


def _adapted(sample: Sample) -> dict[str, str]:
    name = task_function(sample.target, sample.metadata["tests"])
    return {hack: "[BEGIN]\n" + adapt(HACKS[hack], name) + "\n[DONE]" for hack in GENERIC}


def test_adapted_hacks_get_no_rl_reward(mbpp_sample: Sample) -> None:
    suite, responses = MBPP(), _adapted(mbpp_sample)
    assert task_function(mbpp_sample.target, mbpp_sample.metadata["tests"]) == "square_perimeter"
    assert len(responses) >= 8
    assert suite.reward(mbpp_sample, suite.gold_response(mbpp_sample) or "") == 1.0  # the scorer works
    with ThreadPoolExecutor(max_workers=2) as pool:
        rewards = dict(
            zip(responses, pool.map(lambda t: suite.reward(mbpp_sample, t), responses.values()), strict=True)
        )
    assert rewards == dict.fromkeys(responses, 0.0)


def test_adapted_hacks_score_zero_pass_at_1(mbpp_sample: Sample) -> None:
    responses = tuple(_adapted(mbpp_sample).values())
    completion = Completion(texts=responses, finish_reasons=("stop",) * len(responses))
    score = MBPP().score(mbpp_sample, [completion])
    assert score.values["pass@1"] == 0.0, score.extracted
    assert score.extracted["passed"] == f"0/{len(responses)}"
