"""The runner's three parts on their own, with small fakes: the plan (what needs generating), the scoring
pool (bounded, written as scored, errors surface) and the generate loop (batches, records on disk as
responses arrive), then `_generate_and_score` putting them together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.checkpoints import parse_checkpoint
from harness.data import DataSource
from harness.eval_plan import Answers, plan_generation
from harness.generate_loop import generate_in_batches
from harness.reasoning import NO_REASONING
from harness.runner import Counters, EvalSpec, _generate_and_score, record_for
from harness.runs.cache import ResponseCache
from harness.runs.store import SamplesFile
from harness.scoring_pool import ScoringPool
from harness.types import ApiKind, Completion, GenerationSettings, Message, Request, Sample, Score

SETTINGS = GenerationSettings(max_tokens=8)


def sample(sample_id: str, *prompts: str) -> Sample:
    """A sample whose requests are its prompts (one request each); by default its id is the prompt."""
    return Sample(
        id=sample_id,
        messages=(Message("user", sample_id),),
        target="",
        metadata={"prompts": prompts or (sample_id,)},
    )


def request(prompt: str, sample_id: str = "any") -> Request:
    return Request(sample_id=sample_id, settings=SETTINGS, prompt=prompt)


def requests_for(s: Sample) -> list[Request]:
    return [request(p, s.id) for p in s.metadata["prompts"]]


def answer(text: str) -> Completion:
    return Completion(texts=(text,), finish_reasons=("stop",))


class FakeSuite:
    """Scores a sample 1.0 when every response is the upper-cased prompt; counts scorers running at once."""

    name = "fake"
    version = "1"
    primary_metric = "ok"
    reasoning = NO_REASONING
    thinking_budget = 0

    def __init__(self, slots: int = 1, delays: dict[str, float] | None = None, fail_on: str = "") -> None:
        self.slots = slots
        self.delays = delays or {}
        self.fail_on = fail_on
        self.running = 0
        self.most_at_once = 0

    def requests(self, s: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        return requests_for(s)

    def scoring_slots(self) -> int:
        return self.slots

    def score(self, s: Sample, completions: Sequence[Completion]) -> Score:
        ok = all(c.text == p.upper() for c, p in zip(completions, s.metadata["prompts"], strict=True))
        return Score(values={"ok": float(ok)})

    async def ascore(self, s: Sample, completions: Sequence[Completion]) -> Score:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delays.get(s.id, 0.0))
            if s.id == self.fail_on:
                raise RuntimeError(f"scorer broke on {s.id}")
            return self.score(s, completions)
        finally:
            self.running -= 1


# -- the plan -----------------------------------------------------------------------------------------


def test_plan_skips_finished_samples_without_asking_for_their_requests() -> None:
    asked: list[str] = []

    def tracking(s: Sample) -> list[Request]:
        asked.append(s.id)
        return requests_for(s)

    plan = plan_generation([sample("a"), sample("b"), sample("c")], {"b"}, tracking, None)
    assert asked == ["a", "c"]
    assert list(plan.samples) == ["a", "c"] and list(plan.requests) == ["a", "c"]
    assert [r.prompt for r in plan.to_generate] == ["a", "c"]
    assert plan.cached == {} and plan.answered_by_cache == ()


def test_plan_takes_cache_hits_and_generates_only_the_misses() -> None:
    cache = {request("a").key(): answer("A"), request("b2").key(): answer("B2")}
    looked_up: list[str] = []

    def lookup(key: str) -> Completion | None:
        looked_up.append(key)
        return cache.get(key)

    samples = [sample("a"), sample("b", "b1", "b2"), sample("c")]
    plan = plan_generation(samples, set(), requests_for, lookup)
    assert plan.cached == cache
    assert [r.prompt for r in plan.to_generate] == ["b1", "c"]
    assert plan.answered_by_cache == ("a",)  # b still waits on b1
    assert plan.waiting_on == {request("b1").key(): ("b",), request("c").key(): ("c",)}
    assert len(looked_up) == 4  # every request asked once (none repeats here)


def test_plan_merges_identical_requests_and_counts_a_shared_cache_hit_once() -> None:
    hits: list[str] = []

    def lookup(key: str) -> Completion | None:
        if key == request("shared-hit").key():
            hits.append(key)
            return answer("SHARED-HIT")
        return None

    samples = [sample("z", "same"), sample("y", "same", "shared-hit"), sample("x", "shared-hit")]
    plan = plan_generation(samples, set(), requests_for, lookup)
    assert [r.prompt for r in plan.to_generate] == ["same"]
    assert plan.to_generate[0].sample_id == "z"  # the first sample that asked keeps the request
    assert plan.waiting_on == {request("same").key(): ("y", "z")}  # sorted by id
    assert len(hits) == 1 and plan.answered_by_cache == ("x",)


def test_answers_complete_a_sample_only_when_its_last_response_arrives() -> None:
    samples = [sample("p", "one", "two"), sample("q", "two"), sample("r", "three")]
    plan = plan_generation(samples, set(), requests_for, None)
    answers = Answers(plan)
    assert answers.add(request("two").key(), answer("TWO")) == ["q"]
    assert answers.add(request("three").key(), answer("THREE")) == ["r"]
    assert answers.add(request("one").key(), answer("ONE")) == ["p"]
    assert [c.text for c in answers.completions_for("p")] == ["ONE", "TWO"]


# -- the scoring pool ---------------------------------------------------------------------------------


def scored_ids(suite: FakeSuite, ids: Sequence[str]) -> list[str]:
    written: list[str] = []

    async def main() -> None:
        async with ScoringPool(suite, lambda s, c, score: written.append(s.id)) as pool:
            for sample_id in ids:
                await pool.submit(sample(sample_id), [answer(sample_id.upper())])
            await pool.drain()

    asyncio.run(main())
    return written


def test_pool_scores_no_more_samples_at_once_than_the_suite_allows() -> None:
    suite = FakeSuite(slots=3, delays={f"s{i}": 0.02 for i in range(10)})
    written = scored_ids(suite, [f"s{i}" for i in range(10)])
    assert suite.most_at_once == 3 and sorted(written) == sorted(f"s{i}" for i in range(10))


def test_pool_with_one_slot_scores_inline_in_submission_order() -> None:
    suite = FakeSuite(slots=1, delays={"slow": 0.05})
    written: list[str] = []

    async def main() -> list[list[str]]:
        seen_after_submit: list[list[str]] = []
        async with ScoringPool(suite, lambda s, c, score: written.append(s.id)) as pool:
            for sample_id in ["slow", "fast", "next"]:
                await pool.submit(sample(sample_id), [answer("x")])
                seen_after_submit.append(list(written))
        return seen_after_submit

    assert asyncio.run(main()) == [["slow"], ["slow", "fast"], ["slow", "fast", "next"]]
    assert suite.most_at_once == 1


def test_pool_writes_each_sample_as_soon_as_it_is_scored() -> None:
    written = scored_ids(FakeSuite(slots=4, delays={"slow": 0.1, "fast": 0.001}), ["slow", "fast"])
    assert written == ["fast", "slow"]  # not held back behind the slower sample submitted first


def test_pool_hands_on_the_score_and_completions() -> None:
    got: list[tuple[str, float, str]] = []

    async def main() -> None:
        async with ScoringPool(
            FakeSuite(slots=2), lambda s, c, sc: got.append((s.id, sc.values["ok"], c[0].text))
        ) as pool:
            await pool.submit(sample("good"), [answer("GOOD")])
            await pool.submit(sample("bad"), [answer("wrong")])
            await pool.drain()

    asyncio.run(main())
    assert sorted(got) == [("bad", 0.0, "wrong"), ("good", 1.0, "GOOD")]


def test_pool_error_surfaces_from_drain_and_cancels_the_rest() -> None:
    suite = FakeSuite(slots=3, delays={"broken": 0.01, "slow": 1.0}, fail_on="broken")
    written: list[str] = []

    async def main() -> None:
        async with ScoringPool(suite, lambda s, c, score: written.append(s.id)) as pool:
            for sample_id in ["quick", "broken", "slow"]:
                await pool.submit(sample(sample_id), [answer("x")])
            await pool.drain()

    with pytest.raises(RuntimeError, match="scorer broke on broken"):
        asyncio.run(main())
    assert written == ["quick"] and suite.running == 0  # "slow" was cancelled, never written


def test_pool_error_surfaces_from_the_next_submit() -> None:
    suite = FakeSuite(slots=2, delays={"broken": 0.001}, fail_on="broken")
    submitted: list[str] = []

    async def main() -> None:
        async with ScoringPool(suite, lambda s, c, score: None) as pool:
            await pool.submit(sample("broken"), [answer("x")])
            await asyncio.sleep(0.05)
            submitted.append("after")
            await pool.submit(sample("after"), [answer("x")])
            submitted.append("accepted")

    with pytest.raises(RuntimeError, match="scorer broke on broken"):
        asyncio.run(main())
    assert submitted == ["after"]


# -- the generate loop --------------------------------------------------------------------------------


class FakeAdapter:
    """Answers each prompt with its upper case, after `delay_s`; records what it was sent."""

    api: ApiKind = "text"

    def __init__(
        self,
        batch_size: int = 1,
        concurrency: int = 1,
        fail_on: str = "",
        delay_s: float = 0.03,
        delays: dict[str, float] | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.fail_on = fail_on
        self.delay_s = delay_s
        self.delays = delays or {}  # by a batch's first prompt
        self.batches: list[list[str]] = []
        self.preflights = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0
        self.retry_counts = {"timeout": 2, "429": 1}
        self.on_generate: Any = None  # called with the batch's prompts before it answers
        self.on_preflight: Any = None

    def identity(self) -> str:
        return "fake-model"

    async def preflight(self) -> None:
        self.preflights += 1
        if self.on_preflight is not None:
            self.on_preflight()

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        prompts = [str(r.prompt) for r in requests]
        self.batches.append(prompts)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(prompts[0], self.delay_s))
            if self.on_generate is not None:
                self.on_generate(prompts)
            if self.fail_on in prompts:
                raise ConnectionError(f"endpoint dropped {self.fail_on}")
            return [answer(p.upper()) for p in prompts]
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


def test_generate_sends_batch_size_requests_per_call_and_hands_on_each_batch() -> None:
    adapter = FakeAdapter(batch_size=2)
    received: list[tuple[list[str | None], list[str]]] = []

    async def on_batch(batch: list[Request], completions: list[Completion]) -> None:
        received.append(([r.prompt for r in batch], [c.text for c in completions]))

    asyncio.run(generate_in_batches(adapter, [request(p) for p in "abcde"], on_batch))
    assert adapter.batches == [["a", "b"], ["c", "d"], ["e"]] and adapter.preflights == 1
    assert received == [(["a", "b"], ["A", "B"]), (["c", "d"], ["C", "D"]), (["e"], ["E"])]


def test_generate_keeps_at_most_concurrency_calls_in_flight() -> None:
    adapter = FakeAdapter(concurrency=3, delay_s=0.02)

    async def on_batch(batch: list[Request], completions: list[Completion]) -> None:
        pass

    asyncio.run(generate_in_batches(adapter, [request(str(i)) for i in range(10)], on_batch))
    assert adapter.most_in_flight == 3 and len(adapter.batches) == 10


def test_generate_with_nothing_to_do_does_not_even_preflight() -> None:
    adapter = FakeAdapter()

    async def on_batch(batch: list[Request], completions: list[Completion]) -> None:
        raise AssertionError("no batch expected")

    asyncio.run(generate_in_batches(adapter, [], on_batch))
    assert adapter.preflights == 0 and adapter.batches == []


def test_generate_error_cancels_the_calls_in_flight() -> None:
    adapter = FakeAdapter(concurrency=4, fail_on="b", delay_s=5.0, delays={"b": 0.01})

    async def on_batch(batch: list[Request], completions: list[Completion]) -> None:
        pass

    with pytest.raises(ConnectionError, match="endpoint dropped b"):
        asyncio.run(generate_in_batches(adapter, [request(p) for p in "bcdef"], on_batch))
    assert len(adapter.batches) == 5  # "f" took the slot "b" freed
    assert adapter.cancelled == 4 and adapter.in_flight == 0  # nothing left running once it raised


def test_generate_error_from_on_batch_cancels_the_calls_in_flight() -> None:
    adapter = FakeAdapter(concurrency=2, delay_s=5.0, delays={"a": 0.01})

    async def on_batch(batch: list[Request], completions: list[Completion]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(generate_in_batches(adapter, [request(p) for p in "abc"], on_batch))
    assert adapter.cancelled == 2 and adapter.in_flight == 0  # "b", then "c" in the slot "a" freed


# -- together: _generate_and_score --------------------------------------------------------------------


def run_parts(
    tmp_path: Path,
    suite: FakeSuite,
    adapter: FakeAdapter,
    samples: list[Sample],
    finished: Sequence[str] = (),
    cached: dict[str, str] | None = None,
    counters: Counters | None = None,
) -> tuple[Counters, list[str], ResponseCache]:
    spec = EvalSpec(
        checkpoint=parse_checkpoint("replay:unused.jsonl"),
        suite=suite,
        settings=SETTINGS,
        limit=None,
        data=DataSource(tmp_path),
        runs_root=tmp_path / "runs",
    )
    cache = ResponseCache(tmp_path / "cache.sqlite")
    for prompt, text in (cached or {}).items():
        cache.put(adapter.identity(), request(prompt).key(), answer(text))
    samples_file = SamplesFile(tmp_path / "samples.jsonl")
    records = [
        record_for(s, requests_for(s), [answer("old")], Score({"ok": 1.0}))
        for s in samples
        if s.id in finished
    ]
    for record in records:
        samples_file.append(record)
    counters = counters or Counters()
    try:
        asyncio.run(
            _generate_and_score(spec, adapter, samples, records, samples_file, cache, counters, False)
        )
    finally:
        samples_file.close()
    on_disk = [r.id for r in SamplesFile(tmp_path / "samples.jsonl").load(repair=False).records]
    assert on_disk == [r.id for r in records]  # the caller's list matches the file, in the same order
    return counters, on_disk, cache


def disk_ids(tmp_path: Path) -> list[str]:
    path = tmp_path / "samples.jsonl"
    return [r.id for r in SamplesFile(path).load(repair=False).records] if path.exists() else []


def test_records_reach_disk_as_their_responses_arrive(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    on_disk_when_asked: dict[str, list[str]] = {}
    adapter.on_generate = lambda prompts: on_disk_when_asked.__setitem__(prompts[0], disk_ids(tmp_path))
    counters, on_disk, _ = run_parts(tmp_path, FakeSuite(), adapter, [sample(p) for p in "abc"])
    assert on_disk_when_asked == {"a": [], "b": ["a"], "c": ["a", "b"]}
    assert on_disk == ["a", "b", "c"] and counters.generated == 3 and counters.cache_hits == 0


def test_cached_samples_are_written_before_generation_starts(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    at_preflight: list[str] = []
    adapter.on_preflight = lambda: at_preflight.extend(disk_ids(tmp_path))
    samples = [sample("a"), sample("b"), sample("c")]
    counters, on_disk, _ = run_parts(tmp_path, FakeSuite(), adapter, samples, cached={"c": "C"})
    assert at_preflight == ["c"] and on_disk == ["c", "a", "b"]
    assert adapter.batches == [["a"], ["b"]] and (counters.cache_hits, counters.generated) == (1, 2)


def test_resume_and_duplicates_generate_each_missing_response_once(tmp_path: Path) -> None:
    samples = [sample("done"), sample("p", "same"), sample("q", "same"), sample("r")]
    adapter = FakeAdapter(batch_size=8)
    counters, on_disk, cache = run_parts(tmp_path, FakeSuite(), adapter, samples, finished=["done"])
    assert adapter.batches == [["same", "r"]] and counters.generated == 2
    assert on_disk == ["done", "p", "q", "r"]  # q and p wait on one request: written in id order
    assert cache.get("fake-model", request("same").key()) == answer("SAME")
    assert counters.retries == 3


def test_fully_cached_run_sends_nothing(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    counters, on_disk, _ = run_parts(
        tmp_path, FakeSuite(slots=4), adapter, [sample("a"), sample("b")], cached={"a": "A", "b": "B"}
    )
    assert adapter.preflights == 0 and adapter.batches == []
    assert sorted(on_disk) == ["a", "b"] and (counters.cache_hits, counters.generated) == (2, 0)


def test_a_failed_request_writes_no_partial_sample_and_keeps_finished_ones(tmp_path: Path) -> None:
    samples = [sample("a"), sample("b", "b1", "b2"), sample("c")]
    adapter = FakeAdapter(fail_on="b2")
    with pytest.raises(ConnectionError, match="endpoint dropped b2"):
        run_parts(tmp_path, FakeSuite(), adapter, samples)
    assert disk_ids(tmp_path) == ["a"]  # b had one of its two responses: not written
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert cache.get("fake-model", request("b1").key()) == answer("B1")  # kept for the re-run
    assert cache.get("fake-model", request("b2").key()) is None


def test_a_scorer_error_stops_the_run_with_what_it_did_still_counted(tmp_path: Path) -> None:
    counters = Counters()
    with pytest.raises(RuntimeError, match="scorer broke on b"):
        run_parts(
            tmp_path, FakeSuite(fail_on="b"), FakeAdapter(), [sample(p) for p in "abcd"], cached={"a": "A"},
            counters=counters,
        )  # fmt: skip
    assert disk_ids(tmp_path) == ["a"]
    assert (counters.cache_hits, counters.generated, counters.retries) == (1, 1, 3)
