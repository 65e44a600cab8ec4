"""Replicas of an endpoint (adapters/replicas.py) against loopback stub servers: least-loaded routing,
drain and retry elsewhere, recovery, the same-model check, and credentials that are never shown."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

import adapters.replicas as replicas_module
from adapters import AdapterOptions, create_adapter
from adapters.http_retry import RetryPolicy
from adapters.openai_compat import OpenAICompatAdapter
from adapters.replicas import Replica, ReplicaPool, cooldown_s, parse_replica
from harness.checkpoints import EndpointRef, parse_checkpoint
from harness.errors import EndpointError, UsageError
from harness.types import Completion, GenerationSettings, Message, Request
from tests.conftest import free_port, harness
from tests.support.stub_openai import StubOpenAIServer

FAST = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)
T = TypeVar("T")


class NamedStub(StubOpenAIServer):
    """The stub server, listing the model ids given (the stub itself lists only 'stub')."""

    def __init__(self, models: tuple[str, ...] = ("stub",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = models

    async def _models(self, request: web.Request) -> web.Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})


def endpoint(base_url: str, model: str = "stub") -> EndpointRef:
    ref = parse_checkpoint(f"{base_url}#{model}")
    assert isinstance(ref, EndpointRef)
    return ref


def ask(number: int) -> Request:
    text = f"What is {number}?"
    return Request(f"s{number}", GenerationSettings(max_tokens=8), messages=(Message("user", text),))


def answers(completions: list[Completion]) -> list[str]:
    return [c.text for c in completions]


def run_with(adapter: OpenAICompatAdapter, work: Callable[[], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await work()
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def test_replica_urls_are_checked_like_endpoint_references() -> None:
    primary = endpoint("http://a:8000/v1", "m")
    replica = parse_replica("http://b:8000/v1/", primary)
    assert replica.base_url == "http://b:8000/v1" and replica.authorization is None
    assert parse_replica("http://b:8000/v1#m", primary).base_url == "http://b:8000/v1"
    with pytest.raises(UsageError, match="not an http:// or https:// URL"):
        parse_replica("ftp://b/v1", primary)
    with pytest.raises(UsageError, match=r"names the model 'other'.*checkpoint's model is 'm'"):
        parse_replica("http://b:8000/v1#other", primary)
    with pytest.raises(UsageError, match=r"Invalid --replica 'http://b:x/v1': the port is not a number"):
        parse_replica("http://b:x/v1", primary)
    with pytest.raises(UsageError, match="query before"):
        parse_replica("http://b:8000/v1?token=abc", primary)


def test_replica_credentials_become_its_header_and_are_never_shown() -> None:
    primary = endpoint("http://a:8000/v1", "m")
    replica = parse_replica("http://alice:s3cret-pw@b:8000/v1", primary)
    assert replica.authorization == "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    assert replica.base_url == "http://b:8000/v1" and "s3cret" not in repr(replica)
    for bad in ("http://alice:s3cret-pw@b:x/v1", "http://alice:s3cret-pw@b:8000/v1#other"):
        with pytest.raises(UsageError) as caught:
            parse_replica(bad, primary)
        assert "s3cret" not in str(caught.value) and "alice" not in str(caught.value)


def test_pool_picks_the_least_loaded_healthy_replica_and_round_robins_ties() -> None:
    async def never(replica: Replica) -> bool:
        return False

    async def go() -> None:
        a, b, c = Replica("http://a/v1"), Replica("http://b/v1"), Replica("http://c/v1")
        pool = ReplicaPool([a, b, c], never)
        assert [pool.pick().base_url for _ in range(6)] == ["http://a/v1", "http://b/v1", "http://c/v1"] * 2
        a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
        assert pool.pick() is b
        b.healthy = False  # drained: never picked while another is up, however idle
        assert pool.pick() is c
        await pool.aclose()

    asyncio.run(go())


def test_pool_probes_a_down_replica_with_growing_cooldown_until_it_answers() -> None:
    now = [100.0]
    answers_probe = [False]
    probed: list[float] = []

    async def probe(replica: Replica) -> bool:
        probed.append(now[0])
        return answers_probe[0]

    async def go() -> None:
        a, b = Replica("http://a/v1"), Replica("http://b/v1")
        pool = ReplicaPool([a, b], probe, clock=lambda: now[0])
        assert pool.mark_down(b, "HTTP 500") is True  # a is healthy: retry there at once
        assert not b.healthy and b.probe_at == 101.0
        pool.pick()
        await asyncio.sleep(0)
        assert probed == []  # still cooling down
        for step, wait in enumerate((1.0, 2.0, 4.0)):
            now[0] = b.probe_at
            pool.pick()
            await asyncio.sleep(0.01)
            assert len(probed) == step + 1 and b.probe_at == now[0] + wait * 2
        answers_probe[0] = True
        now[0] = b.probe_at
        pool.pick()
        await asyncio.sleep(0.01)
        assert b.healthy and b.failures == 0
        assert pool.mark_down(a, "x") is True and pool.mark_down(b, "x") is False  # none left healthy
        await pool.aclose()

    asyncio.run(go())
    assert [cooldown_s(n) for n in (1, 2, 3, 5, 6, 9)] == [1.0, 2.0, 4.0, 16.0, 30.0, 30.0]


def test_a_pool_of_one_never_drains() -> None:
    async def probe(replica: Replica) -> bool:
        return True

    only = Replica("http://a/v1")
    assert ReplicaPool([only], probe).mark_down(only, "HTTP 503") is False and only.healthy


def test_requests_spread_over_replicas_by_load() -> None:
    with NamedStub(latency_s=0.2) as a, NamedStub(latency_s=0.2) as b:
        adapter = OpenAICompatAdapter(endpoint(a.base_url), concurrency=None, replicas=[b.base_url])
        assert adapter.concurrency == 128  # 64 per replica when not given
        adapter = OpenAICompatAdapter(endpoint(a.base_url), replicas=[b.base_url], retry=FAST)
        result = run_with(adapter, lambda: adapter.generate([ask(i) for i in range(16)]))
    assert answers(result) == [f"The answer is {i}." for i in range(16)]
    assert len(a.requests) == 8 and len(b.requests) == 8
    assert a.max_in_flight == 8 and b.max_in_flight == 8
    assert adapter.identity() == OpenAICompatAdapter(endpoint(a.base_url)).identity()


def test_a_slow_replica_gets_fewer_requests() -> None:
    with NamedStub(latency_s=0.01) as fast, NamedStub(latency_s=1.0) as slow:
        adapter = OpenAICompatAdapter(endpoint(fast.base_url), concurrency=2, replicas=[slow.base_url])
        gate = asyncio.Semaphore(2)  # as the runner's generate loop does with adapter.concurrency

        async def one(i: int) -> Completion:
            async with gate:
                return (await adapter.generate([ask(i)]))[0]

        async def work() -> list[Completion]:
            return list(await asyncio.gather(*(one(i) for i in range(20))))

        result = run_with(adapter, work)
    assert answers(result) == [f"The answer is {i}." for i in range(20)]
    assert len(slow.requests) <= 2 and len(fast.requests) >= 18


def test_a_failing_replica_is_drained_and_its_requests_retried_elsewhere_at_once() -> None:
    one_try = RetryPolicy(max_attempts=1)  # the failover is not an attempt: one try is enough
    with NamedStub() as good, NamedStub(status=503) as bad:
        adapter = OpenAICompatAdapter(endpoint(good.base_url), replicas=[bad.base_url], retry=one_try)

        async def work() -> tuple[list[Completion], list[Completion]]:
            first = await adapter.generate([ask(i) for i in range(4)])
            then = [(await adapter.generate([ask(i)]))[0] for i in range(4, 10)]
            return first, then

        first, then = run_with(adapter, work)
    assert answers(first + then) == [f"The answer is {i}." for i in range(10)]
    assert len(bad.requests) == 2  # round-robin sent it two of the first four; then it was drained
    assert len(good.requests) == 10
    assert adapter.retry_counts["HTTP 503"] == 2


def test_a_replica_that_dies_mid_run_is_drained() -> None:
    with NamedStub() as good:
        dead = NamedStub()
        with dead:
            adapter = OpenAICompatAdapter(endpoint(good.base_url), replicas=[dead.base_url], retry=FAST)
        # `dead` is closed: connections are refused from now on.

        async def work() -> list[Completion]:
            return [(await adapter.generate([ask(i)]))[0] for i in range(6)]

        result = run_with(adapter, work)
    assert answers(result) == [f"The answer is {i}." for i in range(6)]
    assert len(good.requests) == 6 and not adapter.pool.replicas[1].healthy
    assert sum(adapter.retry_counts.values()) == 1


def test_a_drained_replica_takes_work_again_once_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicas_module, "COOLDOWN_MIN_S", 0.05)
    with NamedStub() as good, NamedStub(status=500) as flaky:
        adapter = OpenAICompatAdapter(endpoint(good.base_url), replicas=[flaky.base_url], retry=FAST)

        async def work() -> list[Completion]:
            done = list(await adapter.generate([ask(0), ask(1)]))
            assert not adapter.pool.replicas[1].healthy
            flaky.status = 200  # the server is back
            await asyncio.sleep(0.1)
            done += await adapter.generate([ask(2)])  # this pick starts the probe
            await asyncio.sleep(0.2)
            assert adapter.pool.replicas[1].healthy
            done += await adapter.generate([ask(i) for i in range(3, 9)])
            return done

        result = run_with(adapter, work)
    assert answers(result) == [f"The answer is {i}." for i in range(9)]
    assert len(flaky.requests) == 1 + 3  # the one that failed, then half of the last six


def test_every_replica_failing_ends_with_the_usual_error() -> None:
    with NamedStub(status=500) as a, NamedStub(status=502) as b:
        adapter = OpenAICompatAdapter(endpoint(a.base_url), replicas=[b.base_url], retry=FAST)
        with pytest.raises(
            EndpointError, match=r"and its 1 replica\(s\) kept failing for sample s1 \(2 attempts"
        ):
            run_with(adapter, lambda: adapter.generate([ask(1)]))


def preflight_error(primary: NamedStub, *others: str, model: str = "stub") -> BaseException | None:
    adapter = OpenAICompatAdapter(endpoint(primary.base_url, model), replicas=list(others), retry=FAST)
    try:
        run_with(adapter, adapter.preflight)
    except (UsageError, EndpointError) as error:
        return error
    return None


def test_preflight_refuses_a_replica_serving_another_model() -> None:
    with (
        NamedStub(models=("m", "n")) as a,
        NamedStub(models=("m",)) as same,
        NamedStub(models=("x",)) as other,
    ):
        assert preflight_error(a, same.base_url, model="m") is None
        error = preflight_error(a, same.base_url, other.base_url, model="m")
        assert isinstance(error, UsageError)
        assert f"The replica {other.base_url} does not serve the model 'm': it lists x." in str(error)
        # The checkpoint's server does not list the name it is called by: replicas must list the same ids.
        assert preflight_error(same, same.base_url, model="alias") is None
        error = preflight_error(same, other.base_url, model="alias")
        assert isinstance(error, UsageError) and f"the same models as {same.base_url}: it lists x" in str(
            error
        )


def test_preflight_refuses_an_unreachable_replica_naming_it() -> None:
    port = free_port()
    with NamedStub() as a:
        error = preflight_error(a, f"http://127.0.0.1:{port}/v1")
    assert isinstance(error, EndpointError) and error.exit_code == 3
    assert f"Cannot reach the endpoint http://127.0.0.1:{port}/v1" in str(error)
    assert "Every --replica must be up" in str(error)


def test_replica_flag_reaches_the_adapter_and_only_endpoints_take_it() -> None:
    options = AdapterOptions(replicas=("http://b:8000/v1", "http://c:8000/v1"))
    adapter = create_adapter(endpoint("http://a:8000/v1", "m"), options)
    assert isinstance(adapter, OpenAICompatAdapter)
    assert [r.base_url for r in adapter.pool.replicas] == [
        "http://a:8000/v1",
        "http://b:8000/v1",
        "http://c:8000/v1",
    ]
    assert adapter.concurrency == 192
    assert create_adapter(endpoint("http://a:8000/v1", "m"), AdapterOptions(concurrency=5, replicas=options.replicas)).concurrency == 5  # fmt: skip
    with pytest.raises(UsageError, match="--replica applies to endpoint checkpoints"):
        create_adapter(parse_checkpoint("embedded"), options)


def test_eval_with_a_replica_spreads_the_run_and_never_prints_its_password(tmp_path: Path) -> None:
    secret = "s3cret-pw-9f8e"
    basic = "Basic " + base64.b64encode(f"alice:{secret}".encode()).decode()
    with NamedStub(latency_s=0.05) as a, NamedStub(latency_s=0.05, require_authorization=basic) as b:
        replica = f"http://alice:{secret}@127.0.0.1:{b.port}/v1"
        args = ("eval", "--checkpoint", f"{a.base_url}#stub", "--suite", "gsm8k", "--limit", "8")
        ok = harness(*args, "--replica", replica, "--concurrency", "4", "--runs", str(tmp_path / "ok"))
        assert ok.returncode == 0, ok.stderr
        assert len(a.requests) + len(b.requests) == 8 and len(b.requests) >= 2 and b.rejected == 0
        assert set(b.authorization) == {basic}
        b.status = 500  # drained: the run still completes on a, and the warning names b without the password
        again = harness(*args, "--limit", "12", "--replica", replica, "--runs", str(tmp_path / "ok"))
        assert again.returncode == 0, again.stderr
        refused = harness(
            *args, "--replica", replica.replace(str(b.port), "x"), "--runs", str(tmp_path / "bad")
        )
        assert refused.returncode == 2 and "Invalid --replica 'http://127.0.0.1:x/v1'" in refused.stderr
    assert f"replica http://127.0.0.1:{b.port}/v1 failed (HTTP 500): drained" in again.stderr
    for proc in (ok, again, refused):
        assert secret not in proc.stdout + proc.stderr and "alice" not in proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    manifest = json.loads(next((tmp_path / "ok").rglob("manifest.json")).read_text())
    assert secret not in json.dumps(manifest)
