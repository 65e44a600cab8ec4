"""The OpenAI-compatible client against loopback servers: concurrency, retries, Retry-After, auth."""

from __future__ import annotations

import asyncio
import json
import random
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from adapters.openai_compat import OpenAICompatAdapter, RetryPolicy, parse_retry_after
from harness.checkpoints import EndpointRef, parse_checkpoint
from harness.errors import EndpointError
from harness.types import Completion, GenerationSettings, Message, Request
from tests.conftest import cli_env, eval_json, harness
from tests.support.fault_proxy import FaultProxy
from tests.support.stub_openai import StubOpenAIServer


def endpoint(base_url: str, model: str = "stub", query: str = "") -> EndpointRef:
    ref = parse_checkpoint(f"{base_url}#{model}{query}")
    assert isinstance(ref, EndpointRef)
    return ref


def request(text: str = "What is 2 + 2?") -> Request:
    return Request("s1", GenerationSettings(max_tokens=8), messages=(Message("user", text),))


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(formatdate(1_000_010, usegmt=True), now=1_000_000) == pytest.approx(10, abs=1)


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy, rng = RetryPolicy(base_delay_s=0.5, max_delay_s=30), random.Random(0)
    for attempt in range(10):
        ceiling = min(30, 0.5 * 2**attempt)
        delays = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_eval_keeps_exactly_concurrency_requests_in_flight(tmp_path: Path) -> None:
    with StubOpenAIServer(latency_s=0.15) as server:
        run = eval_json(
            "--checkpoint",
            f"{server.base_url}#stub",
            "--suite",
            "gsm8k",
            "--limit",
            "40",
            "--concurrency",
            "8",
            "--out",
            str(tmp_path),
        )
    assert server.max_in_flight == 8
    assert len(server.requests) == 40
    assert run.payload["n_samples"] == 40
    first = server.requests[0]
    assert first["model"] == "stub" and first["max_tokens"] == 512 and first["temperature"] == 0.0
    assert len(first["messages"]) == 17 and first["seed"] == 0


def test_retry_after_is_honoured() -> None:
    with (
        StubOpenAIServer() as server,
        FaultProxy(
            f"http://127.0.0.1:{server.port}", lambda n: "429" if n == 0 else None, retry_after_s=2
        ) as proxy,
    ):
        adapter = OpenAICompatAdapter(endpoint(proxy.base_url + "/v1"))

        async def go() -> float:
            start = time.perf_counter()
            await adapter.generate([request()])
            await adapter.aclose()
            return time.perf_counter() - start

        elapsed = asyncio.run(go())
    assert proxy.injected["429"] == 1 and proxy.forwarded == 1
    assert elapsed >= 2.0
    assert adapter.retry_counts == {"HTTP 429": 1}


def test_every_fault_kind_is_retried_and_each_sample_scored_once(tmp_path: Path) -> None:
    faults = {1: "429", 3: "500", 5: "reset", 7: "truncate", 9: "hang", 11: "slow"}
    with (
        StubOpenAIServer() as server,
        FaultProxy(f"http://127.0.0.1:{server.port}", faults.get, hang_s=5) as proxy,
    ):
        run = eval_json(
            "--checkpoint",
            f"{proxy.base_url}/v1#stub",
            "--suite",
            "gsm8k",
            "--limit",
            "12",
            "--timeout",
            "2",
            "--out",
            str(tmp_path / "faulty"),
        )
    assert dict(proxy.injected) == {"429": 1, "500": 1, "reset": 1, "truncate": 1, "hang": 1, "slow": 1}
    assert run.payload["invocation"]["retries"] == 5  # "slow" is within the timeout: no retry
    ids = [str(r["id"]) for r in json_lines(run.run_dir / "samples.jsonl")]
    assert sorted(ids) == [f"gsm8k-test-{i:04d}" for i in range(12)]
    with StubOpenAIServer() as clean_server:
        clean = eval_json(
            "--checkpoint",
            f"{clean_server.base_url}#stub",
            "--suite",
            "gsm8k",
            "--limit",
            "12",
            "--out",
            str(tmp_path / "clean"),
        )
    assert run.metrics == clean.metrics


def test_client_errors_are_not_retried() -> None:
    with StubOpenAIServer(status=400) as server:
        adapter = OpenAICompatAdapter(endpoint(server.base_url))
        with pytest.raises(EndpointError) as caught:
            asyncio.run(adapter.generate([request()]))
    assert len(server.requests) == 1
    assert "HTTP 400" in caught.value.message and "stub says 400" in caught.value.message


def test_persistent_server_errors_end_the_run_with_exit_3_and_keep_nothing_half_done(tmp_path: Path) -> None:
    with StubOpenAIServer(status=503) as server:
        proc = harness(
            "eval",
            "--checkpoint",
            f"{server.base_url}#stub",
            "--suite",
            "gsm8k",
            "--limit",
            "2",
            "--out",
            str(tmp_path),
            "--timeout",
            "5",
            "--max-attempts",
            "3",
        )
    assert proc.returncode == 3, proc.stderr
    assert "kept failing" in proc.stderr and "Traceback" not in proc.stderr
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["status"] == "failed" and "kept failing" in manifest["invocations"][-1]["error"]


def test_api_key_is_sent_but_never_written(tmp_path: Path) -> None:
    secret = "sk-test-9f8e7d6c5b4a-never-log-me"
    with StubOpenAIServer() as server:
        env = cli_env(HARNESS_TEST_API_KEY=secret)
        proc = harness(
            "eval",
            "--checkpoint",
            f"{server.base_url}#stub?api_key_env=HARNESS_TEST_API_KEY",
            "--suite",
            "gsm8k",
            "--limit",
            "3",
            "--out",
            str(tmp_path),
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert server.authorization == [f"Bearer {secret}"] * 3
        shown = harness("show", "gsm8k", "--out", str(tmp_path), env=env)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in proc.stdout + proc.stderr + shown.stdout + shown.stderr
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["checkpoint"].endswith("?api_key_env=HARNESS_TEST_API_KEY")


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("ignore_n", [False, True])
def test_n_samples_come_back_whether_or_not_the_server_honours_n(ignore_n: bool) -> None:
    settings = GenerationSettings(max_tokens=8, temperature=0.8, n=3, seed=10)
    with StubOpenAIServer(ignore_n=ignore_n) as server:
        adapter = OpenAICompatAdapter(endpoint(server.base_url))

        async def go() -> list[Completion]:
            try:
                return await adapter.generate(
                    [Request("s1", settings, messages=(Message("user", "2 + 2?"),))]
                )
            finally:
                await adapter.aclose()

        (completion,) = asyncio.run(go())
    assert len(completion.texts) == 3
    if ignore_n:  # one request asking n=3, then three single requests with seeds 10, 11, 12
        assert [r.get("n", 1) for r in server.requests] == [3, 1, 1, 1]
        assert sorted(r["seed"] for r in server.requests[1:]) == [10, 11, 12]
    else:
        assert len(server.requests) == 1 and server.requests[0]["n"] == 3
