"""The OpenAI-compatible client against loopback servers: concurrency, retries, Retry-After, auth."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from adapters.http_retry import (
    BYTES_PER_TOKEN,
    MIN_REPLY_BYTES,
    REPLY_OVERHEAD_BYTES,
    RetryPolicy,
    parse_retry_after,
    reply_byte_cap,
)
from adapters.openai_compat import OpenAICompatAdapter
from harness.checkpoints import EndpointRef, parse_checkpoint
from harness.errors import EndpointError, UsageError
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
            "--runs",
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
            "--runs",
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
            "--runs",
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
            "--runs",
            str(tmp_path),
            "--timeout",
            "5",
            "--max-attempts",
            "3",
        )
    assert proc.returncode == 3, proc.stderr
    assert "kept failing" in proc.stderr and "Traceback" not in proc.stderr
    # A first run that ends before its first sample leaves no run behind (the runner removes it); a run
    # that is kept must say it failed, and why.
    for path in tmp_path.rglob("manifest.json"):
        manifest = json.loads(path.read_text())
        assert manifest["status"] == "failed" and "kept failing" in manifest["invocations"][-1]["error"]
    assert not list(tmp_path.rglob("samples.jsonl")) or all(
        not p.read_text() for p in tmp_path.rglob("samples.jsonl")
    )


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
            "--runs",
            str(tmp_path),
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert server.authorization == [f"Bearer {secret}"] * 3
        shown = harness("show", "gsm8k", "--runs", str(tmp_path), env=env)
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


# --- hostile replies: never a sample, never cached; bounded; the auth hint names what was sent ---------

FAST = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)


def generate_once(adapter: OpenAICompatAdapter, req: Request | None = None) -> Completion:
    async def go() -> Completion:
        try:
            (completion,) = await adapter.generate([req or request()])
            return completion
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def reply(choices: object, **extra: object) -> bytes:
    return json.dumps({"id": "x", "choices": choices, **extra}).encode()


def chat_choice(**fields: object) -> dict[str, object]:
    return {"index": 0, "finish_reason": "stop", **fields}


MALFORMED = {
    "no choices": (json.dumps({"id": "x"}).encode(), "'choices' is null, not a list"),
    "choices empty": (reply([]), "'choices' is empty"),
    "no message": (reply([chat_choice()]), "choice 0 has no 'message' object"),
    "content null": (
        reply([chat_choice(message={"role": "assistant", "content": None})]),
        "'content' of type null, not a string",
    ),
    "content not a string": (
        reply([chat_choice(message={"role": "assistant", "content": 42})]),
        "'content' of type int",
    ),
    "not json": (b"<html>502 Bad Gateway</html>", "the body is not JSON"),
    "a list": (b"[1, 2]", "the body is a JSON list, not an object"),
    "choice not an object": (reply(["hi"]), "choice 0 is a str, not an object"),
    "finish reason wrong type": (
        reply([chat_choice(message={"content": "hi"}, finish_reason=7)]),
        "finish_reason of type int",
    ),
    "usage wrong type": (
        reply([chat_choice(message={"content": "hi"})], usage={"prompt_tokens": "ten"}),
        "usage.prompt_tokens is 'ten'",
    ),
    "lone surrogate": (
        b'{"choices": [{"index": 0, "message": {"content": "caf\\ud800"}, "finish_reason": "stop"}]}',
        "lone UTF-16 surrogate",
    ),
    "error object with 200": (
        json.dumps({"error": {"message": "model overloaded"}}).encode(),
        "error object, not a completion",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_reply_is_retried_then_an_endpoint_error_saying_what_was_wrong(case: str) -> None:
    body, problem = MALFORMED[case]
    with StubOpenAIServer(reply_plan=lambda i, b: body) as server:
        adapter = OpenAICompatAdapter(endpoint(server.base_url), retry=FAST)
        with pytest.raises(EndpointError) as caught:
            generate_once(adapter)
    assert len(server.requests) == 2  # retried: a broken reply may be a transient server fault
    assert adapter.retry_counts == {"malformed reply": 2}
    message = caught.value.message
    assert "not a valid completion" in message and problem in message, message
    assert caught.value.exit_code == 3 and "never stored or cached" in (caught.value.fix or "")


def test_fewer_choices_than_n_is_malformed_unless_it_is_the_single_choice_of_a_server_ignoring_n() -> None:
    two = reply([chat_choice(index=i, message={"content": "x"}) for i in range(2)])
    settings = GenerationSettings(max_tokens=8, temperature=0.8, n=3, seed=1)
    with StubOpenAIServer(reply_plan=lambda i, b: two) as server:
        adapter = OpenAICompatAdapter(endpoint(server.base_url), retry=FAST)
        with pytest.raises(EndpointError) as caught:
            generate_once(adapter, Request("s1", settings, messages=(Message("user", "1?"),)))
    assert "2 choice(s)" in caught.value.message and "n=3" in caught.value.message
    assert [r.get("n") for r in server.requests] == [3, 3]  # no fallback to single requests


def test_a_recovered_reply_after_a_malformed_one_is_used() -> None:
    bad = reply([chat_choice(message={"content": None})])
    with StubOpenAIServer(reply_plan=lambda i, b: bad if i == 0 else None) as server:
        completion = generate_once(OpenAICompatAdapter(endpoint(server.base_url), retry=FAST))
    assert completion.texts == ("The answer is 2.",) and len(server.requests) == 2


@pytest.mark.parametrize(
    ("message", "finish"),
    [
        ({"role": "assistant", "content": ""}, "stop"),
        ({"content": None, "reasoning_content": "hmm"}, "length"),
    ],
)
def test_an_empty_answer_is_a_completion(message: dict[str, object], finish: str) -> None:
    """A model may emit EOS at once; a reasoning model may spend every token thinking (content null)."""
    body = reply([chat_choice(message=message, finish_reason=finish)])
    with StubOpenAIServer(reply_plan=lambda i, b: body) as server:
        completion = generate_once(OpenAICompatAdapter(endpoint(server.base_url), retry=FAST))
    assert completion.texts == ("",) and completion.finish_reasons == (finish,) and len(server.requests) == 1


def test_text_api_replies_are_validated_too() -> None:
    bad = reply([{"index": 0, "text": None, "finish_reason": "stop"}])
    text_request = Request("s1", GenerationSettings(max_tokens=8), prompt="2 + 3 =")
    with StubOpenAIServer(reply_plan=lambda i, b: bad if i == 0 else None) as server:
        completion = generate_once(
            OpenAICompatAdapter(endpoint(server.base_url, query="?api=text"), retry=FAST), text_request
        )
    assert completion.texts == ("The answer is 3.",) and len(server.requests) == 2


def test_reply_cap_scales_with_max_tokens_and_samples_and_can_be_set() -> None:
    assert reply_byte_cap(GenerationSettings(max_tokens=16)) == MIN_REPLY_BYTES
    big = GenerationSettings(max_tokens=32768, n=4)
    assert reply_byte_cap(big) == BYTES_PER_TOKEN * 32768 * 4 + REPLY_OVERHEAD_BYTES
    assert reply_byte_cap(big, override=5000) == 5000


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversize_reply_is_never_read_whole_nor_returned(chunked: bool) -> None:
    text = "x" * (3 << 20)  # a 3 MB answer to max_tokens=8 (the cap is the 1 MiB floor)
    huge = reply([chat_choice(message={"content": text})])
    with StubOpenAIServer(reply_plan=lambda i, b: huge, chunked=chunked) as server:
        adapter = OpenAICompatAdapter(endpoint(server.base_url), retry=FAST)
        with pytest.raises(EndpointError) as caught:
            generate_once(adapter)
    assert adapter.retry_counts == {"oversize reply": 2} and len(server.requests) == 2
    assert f"over the cap of {MIN_REPLY_BYTES} bytes" in caught.value.message
    assert "--max-reply-bytes" in (caught.value.fix or "")


def test_max_reply_bytes_option_sets_the_cap() -> None:
    with StubOpenAIServer() as server:  # a normal reply is about 250 bytes
        tight = OpenAICompatAdapter(endpoint(server.base_url), retry=FAST, max_reply_bytes=100)
        with pytest.raises(EndpointError, match="over the cap of 100 bytes"):
            generate_once(tight)
        roomy = OpenAICompatAdapter(endpoint(server.base_url), retry=FAST, max_reply_bytes=1000)
        assert generate_once(roomy).texts == ("The answer is 2.",)


def malformed_then_fixed_eval(tmp_path: Path, bad: bytes, *extra: str) -> tuple[int, str, str]:
    """One eval against a server sending `bad`, then (same URL, so the same cache key) a fixed one."""
    with StubOpenAIServer(reply_plan=lambda i, b: bad) as server:
        args = ("eval", "--checkpoint", f"{server.base_url}#stub", "--suite", "gsm8k", "--limit", "2")
        args += ("--runs", str(tmp_path), "--max-attempts", "2", "--quiet", *extra)
        broken = harness(*args)
        server.reply_plan = None
        fixed = harness(*args, "--fresh", "--json")
    assert fixed.returncode == 0, fixed.stderr
    (run,) = json.loads(fixed.stdout)
    texts = [r["completions"][0]["texts"][0] for r in json_lines(Path(run["run_dir"]) / "samples.jsonl")]
    assert len(texts) == 2 and all(t.startswith("The answer is ") for t in texts), texts  # not a cached ""
    assert run["invocation"]["cache_hits"] == 0
    return broken.returncode, broken.stdout, broken.stderr


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (reply([chat_choice(message={"role": "assistant", "content": None})]), "'content' of type null"),
        (reply([]), "'choices' is empty"),
        (reply([chat_choice(message={"content": "y" * (3 << 20)})]), "over the cap of 1048576 bytes"),
    ],
    ids=["content-null", "choices-empty", "oversize"],
)
def test_eval_against_a_malformed_server_exits_3_and_stores_nothing(
    tmp_path: Path, bad: bytes, problem: str
) -> None:
    code, _out, err = malformed_then_fixed_eval(tmp_path / "runs", bad)
    assert code == 3, err
    assert problem in err and "Traceback" not in err
    # Nothing of the bad replies reached samples or cache (the fixed run generated both anew).


def test_eval_flag_max_reply_bytes(tmp_path: Path) -> None:
    with StubOpenAIServer() as server:
        args = ("eval", "--checkpoint", f"{server.base_url}#stub", "--suite", "gsm8k", "--limit", "1")
        proc = harness(*args, "--runs", str(tmp_path), "--max-attempts", "1", "--max-reply-bytes", "1024",
                       "--max-tokens", "16")  # fmt: skip
        assert proc.returncode == 0, proc.stderr  # a 250-byte reply fits
        bad = harness(*args, "--runs", str(tmp_path), "--max-reply-bytes", "12")
    assert bad.returncode == 2 and "must be at least 1024" in bad.stderr


def test_rejected_key_hint_names_the_variable_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_TEST_WRONG_KEY", "sk-wrong-4d3c2b1a")
    with StubOpenAIServer(require_authorization="Bearer right") as server:
        keyed = OpenAICompatAdapter(endpoint(server.base_url, query="?api_key_env=HARNESS_TEST_WRONG_KEY"))
        with pytest.raises(EndpointError) as caught:
            asyncio.run(keyed.preflight())
        asyncio.run(keyed.aclose())
        keyed = OpenAICompatAdapter(endpoint(server.base_url), api_key_env="HARNESS_TEST_WRONG_KEY")
        with pytest.raises(EndpointError) as on_completion:  # not only in the preflight
            generate_once(keyed)
        bare = OpenAICompatAdapter(endpoint(server.base_url))
        with pytest.raises(EndpointError) as without:
            asyncio.run(bare.preflight())
        asyncio.run(bare.aclose())
    for error in (caught.value, on_completion.value):
        text = error.message + (error.fix or "")
        assert (
            "HTTP 401" in text and "$HARNESS_TEST_WRONG_KEY" in text and "sent" in text and "refused" in text
        )
        assert "api_key_env" not in text and "sk-wrong" not in text
    assert "no key was sent" in without.value.message and "api_key_env" in (without.value.fix or "")


@pytest.mark.parametrize(
    ("userinfo", "expected"),
    [
        ("alice:s3cr%40t", "Basic " + base64.b64encode(b"alice:s3cr@t").decode()),
        ("tok-123", "Bearer tok-123"),
        (":tok-456", "Bearer tok-456"),
    ],
)
def test_url_credentials_are_sent_as_basic_or_bearer(userinfo: str, expected: str) -> None:
    with StubOpenAIServer(require_authorization=expected) as server:
        ref = endpoint(server.base_url.replace("http://", f"http://{userinfo}@"))
        adapter = OpenAICompatAdapter(ref)

        async def go() -> list[Completion]:
            try:
                await adapter.preflight()
                return await adapter.generate([request()])
            finally:
                await adapter.aclose()

        assert asyncio.run(go())[0].texts == ("The answer is 2.",)
        assert server.authorization == [expected] and server.rejected == 0
        assert adapter.identity() == OpenAICompatAdapter(endpoint(server.base_url)).identity()
        wrong = OpenAICompatAdapter(endpoint(server.base_url.replace("http://", "http://x:y@")))
        with pytest.raises(EndpointError) as caught:
            asyncio.run(wrong.preflight())
        asyncio.run(wrong.aclose())
    assert "credentials from the URL" in caught.value.message and "Basic" in caught.value.message
    assert "x:y" not in caught.value.message


def test_credentials_in_the_url_and_a_key_variable_are_refused_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-other")
    ref = endpoint("http://tok@127.0.0.1:9/v1", query="?api_key_env=HARNESS_TEST_KEY")
    with pytest.raises(UsageError, match="credentials twice") as caught:
        OpenAICompatAdapter(ref)
    assert "tok" not in caught.value.message.replace("token", "")
