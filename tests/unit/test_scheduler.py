"""One scheduler per invocation (harness.scheduler): every suite of every checkpoint runs at once, the
requests to one endpoint share one bound, a failing suite cancels the others with their finished samples
on disk, and a re-run resumes without duplicates. Fake adapters stand in for a server (no model)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.api.evaluate import EvalResults, Generation, PreparedCheckpoint, evaluate_prepared
from harness.checkpoints import CheckpointRef, parse_checkpoint
from harness.data import DataSource
from harness.runs.store import MANIFEST, SAMPLES
from harness.scheduler import RequestQueue, endpoint_key, run_all
from harness.types import ApiKind, Completion, Request
from suites import get_suite


@dataclass
class FakeServer:
    """What every fake adapter pointed at it sent: (start, end, sample id) per request, and the most
    requests it had in flight at once, across adapters."""

    in_flight: int = 0
    peak: int = 0
    calls: list[tuple[float, float, str]] = field(default_factory=list)

    def spans(self, prefix: str) -> tuple[float, float]:
        """When the first request of the sample ids starting with `prefix` began, and the last ended."""
        mine = [(start, end) for start, end, sample_id in self.calls if sample_id.startswith(prefix)]
        return min(s for s, _ in mine), max(e for _, e in mine)


class FakeAdapter:
    api: ApiKind = "chat"
    batch_size = 1

    def __init__(
        self,
        ref: CheckpointRef,
        server: FakeServer,
        concurrency: int = 4,
        delay_s: float = 0.02,
        fail: dict[str, float] | None = None,
    ) -> None:
        self.ref = ref
        self.server = server
        self.concurrency = concurrency
        self.delay_s = delay_s
        self.fail = fail or {}  # sample id -> seconds until its request fails
        self.preflights = 0
        self.closed = False
        self.closed_at = 0.0
        self.starts: list[float] = []

    def identity(self) -> str:
        return f"fake:{self.ref.raw}"

    async def preflight(self) -> None:
        self.preflights += 1

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        (request,) = requests
        server = self.server
        server.in_flight += 1
        server.peak = max(server.peak, server.in_flight)
        started = time.monotonic()
        self.starts.append(started)
        try:
            if request.sample_id in self.fail:
                await asyncio.sleep(self.fail[request.sample_id])
                raise ConnectionError(f"endpoint dropped {request.sample_id}")
            await asyncio.sleep(self.delay_s)
            server.calls.append((started, time.monotonic(), request.sample_id))
            return [Completion(texts=("The answer is 1. \\boxed{1}",), finish_reasons=("stop",))]
        finally:
            server.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True
        self.closed_at = self.closed_at or time.monotonic()  # the first close


def prepared(reference: str, *suites: str) -> PreparedCheckpoint:
    plans = []
    for name in suites:
        suite = get_suite(name)
        plans.append((suite, Generation().for_suite(suite)))
    return PreparedCheckpoint(parse_checkpoint(reference), None, tuple(plans))


def run(
    monkeypatch: pytest.MonkeyPatch,
    checkpoints: list[PreparedCheckpoint],
    adapters: dict[str, FakeAdapter],
    data_dir: Path,
    runs: Path,
    limit: int,
) -> list[EvalResults]:
    monkeypatch.setattr("adapters.create_adapter", lambda ref, options=None: adapters[ref.raw])
    work = evaluate_prepared(checkpoints, limit=limit, root=runs, data=DataSource(data_dir), cache=False)
    return asyncio.run(work)


def samples_on_disk(run_dir: Path) -> list[str]:
    path = run_dir / SAMPLES
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["id"] for line in lines]


def run_dir(runs: Path, reference: str, suite: str) -> Path:
    slug = parse_checkpoint(reference).slug()
    (found,) = [p.parent for p in runs.glob(f"{slug}/{suite}@*/*/{MANIFEST}")]
    return found


def test_two_suites_overlap_and_never_exceed_the_endpoint_bound(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    server = FakeServer()
    ref = "http://h:8000/v1#m"
    # Requests slow enough (two waves of 0.5 s) that the second suite's data load, in a thread, ends
    # inside the first suite's requests even on a loaded machine: the overlap is then the scheduler's.
    adapter = FakeAdapter(parse_checkpoint(ref), server, concurrency=4, delay_s=0.5)
    (results,) = run(
        monkeypatch, [prepared(ref, "gsm8k", "alice-synth")], {ref: adapter}, data_dir, tmp_path, limit=6
    )
    assert [(r.suite, r.n_samples, r.invocation.generated) for r in results.runs] == [
        ("gsm8k", 6, 6),
        ("alice-synth", 6, 6),
    ]
    first_start, first_end = server.spans("gsm8k")
    second_start, second_end = server.spans("alice-synth")
    # Run one after the other, the second suite would start after the first one's last request ended.
    assert second_start < first_end and first_start < second_end
    assert server.peak == 4 and len(server.calls) == 12  # saturated, and never more than the bound
    assert adapter.preflights == 1 and adapter.closed  # one preflight for both suites


def test_two_checkpoints_on_one_server_share_its_bound(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    server = FakeServer()
    refs = ["http://h:8000/v1#lora1", "http://h:8000/v1#lora2"]
    adapters = {r: FakeAdapter(parse_checkpoint(r), server, concurrency=3) for r in refs}
    results = run(monkeypatch, [prepared(r, "gsm8k") for r in refs], adapters, data_dir, tmp_path, limit=8)
    assert [r.checkpoint for r in results] == refs
    assert [r["gsm8k"].n_samples for r in results] == [8, 8]
    assert server.peak == 3 and len(server.calls) == 16  # 3 in flight for both, not 3 each
    assert all(a.closed for a in adapters.values())


def test_checkpoints_on_different_servers_each_get_their_own_bound(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    server = FakeServer()  # one recorder standing for both servers: it sees their sum
    refs = ["http://a:8000/v1#m", "http://b:8000/v1#m"]
    adapters = {r: FakeAdapter(parse_checkpoint(r), server, concurrency=3, delay_s=0.05) for r in refs}
    run(monkeypatch, [prepared(r, "gsm8k") for r in refs], adapters, data_dir, tmp_path, limit=6)
    assert server.peak == 6


def test_a_failing_suite_cancels_the_others_keeps_their_samples_and_a_rerun_resumes(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    server = FakeServer()
    healthy_ref, failing_ref = "http://a:8000/v1#m", "http://b:8000/v1#m"  # two servers: both run at once
    # b answers its first request, then its second fails after 0.3 s; a's 40 take 0.05 s each, three at a time: ~0.7 s.
    adapters = {
        healthy_ref: FakeAdapter(parse_checkpoint(healthy_ref), server, concurrency=3, delay_s=0.05),
        failing_ref: FakeAdapter(
            parse_checkpoint(failing_ref), server, concurrency=1, fail={"gsm8k-test-0001": 0.3}
        ),
    }
    checkpoints = [prepared(healthy_ref, "gsm8k"), prepared(failing_ref, "gsm8k")]
    with pytest.raises(ConnectionError, match="endpoint dropped gsm8k-test-0001"):
        run(monkeypatch, checkpoints, adapters, data_dir, tmp_path, limit=40)
    healthy_dir, failing_dir = (run_dir(tmp_path, ref, "gsm8k") for ref in (healthy_ref, failing_ref))
    kept = samples_on_disk(healthy_dir)
    assert 0 < len(kept) < 40 and len(set(kept)) == len(kept)
    manifest = json.loads((healthy_dir / MANIFEST).read_text())
    assert manifest["invocations"][-1]["status"] == "interrupted"
    failed = json.loads((failing_dir / MANIFEST).read_text())["invocations"][-1]
    assert failed["status"] == "failed" and "endpoint dropped gsm8k-test-0001" in failed["error"]
    assert all(a.closed for a in adapters.values()) and server.in_flight == 0  # nothing left running

    rerun_adapters = {r: FakeAdapter(parse_checkpoint(r), FakeServer()) for r in (healthy_ref, failing_ref)}
    checkpoints = [prepared(healthy_ref, "gsm8k"), prepared(failing_ref, "gsm8k")]
    healthy, _ = run(monkeypatch, checkpoints, rerun_adapters, data_dir, tmp_path, limit=40)
    rerun = healthy["gsm8k"]
    assert (rerun.invocation.resumed, rerun.invocation.generated) == (len(kept), 40 - len(kept))
    on_disk = samples_on_disk(healthy_dir)
    assert len(on_disk) == 40 and len(set(on_disk)) == 40  # nothing duplicated


def test_models_loaded_in_process_take_turns_while_endpoints_run_beside_them(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    """Two hf: models at once would hold both in memory (two vLLM engines would not fit one GPU)."""
    local_server, remote_server = FakeServer(), FakeServer()
    first, second, remote = "hf:/models/sft", "hf:/models/dpo", "http://h:8000/v1#m"
    adapters = {
        first: FakeAdapter(parse_checkpoint(first), local_server, concurrency=1),
        second: FakeAdapter(parse_checkpoint(second), local_server, concurrency=1),
        remote: FakeAdapter(parse_checkpoint(remote), remote_server, concurrency=2),
    }
    checkpoints = [prepared(ref, "gsm8k", "alice-synth") for ref in (first, remote, second)]
    results = run(monkeypatch, checkpoints, adapters, data_dir, tmp_path, limit=3)
    assert [r.checkpoint for r in results] == [first, remote, second]
    assert local_server.peak == 1 and len(local_server.calls) == 12
    assert 0 < adapters[first].closed_at <= min(adapters[second].starts)  # freed before the second ran
    assert min(adapters[remote].starts) < adapters[first].closed_at  # the endpoint did not wait for them


def test_a_local_backend_keeps_its_own_concurrency() -> None:
    """llama.cpp (concurrency 1) stays one call at a time however many suites share it."""

    class Local:
        concurrency = 1

    queue = RequestQueue()
    local = Local()
    assert endpoint_key(parse_checkpoint("embedded")) is None
    queue.register(local, None)  # type: ignore[arg-type]
    running, most = 0, 0

    async def call() -> None:
        nonlocal running, most
        async with queue.slot(local):  # type: ignore[arg-type]
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.005)
            running -= 1

    async def main() -> None:
        await asyncio.gather(*(call() for _ in range(6)))

    asyncio.run(main())
    assert most == 1


def test_endpoint_key_is_the_base_url_with_its_replicas() -> None:
    one = endpoint_key(parse_checkpoint("http://h:8000/v1#a"))
    assert one == endpoint_key(parse_checkpoint("http://h:8000/v1#b"))
    assert one != endpoint_key(parse_checkpoint("http://g:8000/v1#a"))
    with_replica = endpoint_key(parse_checkpoint("http://h:8000/v1#a"), ["http://r:8000/v1"])
    assert with_replica != one
    assert with_replica == endpoint_key(parse_checkpoint("http://h:8000/v1#b"), ["http://r:8000/v1/"])


def test_shared_endpoint_takes_the_largest_bound_and_each_adapter_its_own() -> None:
    class Adapter:
        def __init__(self, concurrency: int) -> None:
            self.concurrency = concurrency

    queue = RequestQueue()
    small, large = Adapter(2), Adapter(5)
    queue.register(small, "server")  # type: ignore[arg-type]
    queue.register(large, "server")  # type: ignore[arg-type]
    assert queue.endpoint_lane(small) is queue.endpoint_lane(large)  # type: ignore[arg-type]
    assert queue.endpoint_lane(small).limit == 5  # type: ignore[arg-type]
    assert [lane.limit for lane in queue.lanes(small)] == [2, 5]  # type: ignore[arg-type]


def test_run_all_raises_the_first_error_after_cancelling_the_rest() -> None:
    cancelled: list[str] = []

    async def slow(name: str) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name

    async def broken() -> str:
        await asyncio.sleep(0.01)
        raise ValueError("broken suite")

    async def main() -> list[str]:
        return await run_all([slow("a"), broken(), slow("c")])

    with pytest.raises(ValueError, match="broken suite"):
        asyncio.run(main())
    assert sorted(cancelled) == ["a", "c"]

    async def fine(name: str, delay: float) -> str:
        await asyncio.sleep(delay)
        return name

    async def ordered() -> list[str]:
        return await run_all([fine("first", 0.02), fine("second", 0.0)])

    assert asyncio.run(ordered()) == ["first", "second"]  # in the order given, not the order finished
