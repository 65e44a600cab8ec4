"""Any OpenAI-compatible server: NeMo deployments, `vllm serve`, llama.cpp's server, hosted APIs.

Chat completions by default, text completions with `?api=text`. Many requests in flight (the runner
keeps `concurrency` calls open over one pooled aiohttp session). Each request has a total timeout and is
retried with exponential backoff and jitter on 408/409/425/429/5xx, timeouts, dropped connections and
truncated or malformed bodies; `Retry-After` (seconds or an HTTP date) is honoured. Other 4xx answers
are not retried: they will not get better and are reported with the server's own words.

The API key is read from the environment variable named by `?api_key_env=VAR` (or --api-key-env) and
only ever placed in the Authorization header; identity(), manifests and errors carry the variable's name.
Credentials in the URL (see harness.checkpoints: Basic for USER:PASSWORD, Bearer for a lone token) are
sent the same way and never stored; giving both is refused.

A reply is hostile input: one that is not a valid completion (no or empty `choices`, a choice without
`message`/`text`, `content` null or not a string, wrong types, not JSON) or that is larger than the reply
cap is retried like a 5xx and, if it never gets better, ends the run with exit 3: it is never returned as
a sample, so it is never cached. The cap (bytes read per reply) is `max_reply_bytes`, by default
BYTES_PER_TOKEN x max_tokens x n + REPLY_OVERHEAD_BYTES, at least MIN_REPLY_BYTES (LOGPROB_BYTES_PER_TOKEN
per token when log-probabilities are asked for).

Replicas (`replicas=`, `--replica URL`): other base URLs serving the same model; adapters/replicas.py routes
each request to the least-loaded healthy one and drains one that fails. The concurrency bound is the total
over all of them: DEFAULT_CONCURRENCY per replica when not given. identity() is the checkpoint's URL and
model whatever the replicas, so runs and cache entries are shared with single-server runs.

Log-probabilities (GenerationSettings.logprobs; nothing is sent without it): chat requests send
`"logprobs": true, "top_logprobs": 0` (the OpenAI API takes 0 alternatives; llama-cpp-python's server
returns no log-probabilities at all without a `top_logprobs` number), text requests `"logprobs": 0` (the
legacy API's count of alternatives: the sampled token's own log-probability is always returned).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from adapters.http_retry import (
    RetryableReply,
    RetryPolicy,
    parse_retry_after,
    read_capped,
    reply_byte_cap,
)
from adapters.logprobs import token_cap
from adapters.openai_replies import FewerChoices, MalformedReply, parse_completion
from adapters.replicas import Replica, ReplicaPool, check_same_model, model_ids, parse_replica
from harness.checkpoints import EndpointRef
from harness.errors import EndpointError, UsageError
from harness.types import ApiKind, Completion, GenerationSettings, Request

log = logging.getLogger("harness.openai")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MODELS_LIST_BYTES = 8 << 20  # GET /models on a hosted API lists hundreds of models
ERROR_BODY_BYTES = 64 * 1024  # a 4xx body is only quoted (300 characters)
DEFAULT_CONCURRENCY = 64  # requests in flight per replica when --concurrency is not given
# 5xx: the server (not the request) is in trouble, so a replica answering it is drained.
DRAINING_STATUS = frozenset({500, 502, 503, 504})


_RESUME = "Finished samples are saved; re-run the same command to resume"
_FAILURE_HINTS = {
    "": f"{_RESUME} once the server is healthy.",
    "malformed reply": "Such replies are never stored or cached. Check the server (its logs, the model's chat "
    f"template, the API path: ?api=text for /v1/completions); {_RESUME.lower()} once it answers properly.",
    "oversize reply": "Nothing of it was stored. If the server's replies are legitimately that large, raise "
    f"the cap with --max-reply-bytes N; {_RESUME.lower()}.",
}


class OpenAICompatAdapter:
    batch_size = 1

    def __init__(
        self,
        ref: EndpointRef,
        concurrency: int | None = None,
        timeout_s: float = 600.0,
        api_key_env: str | None = None,
        retry: RetryPolicy | None = None,
        max_reply_bytes: int | None = None,
        replicas: Sequence[str] = (),
    ) -> None:
        self.ref = ref
        self.api: ApiKind = "text" if ref.api == "text" else "chat"
        others = [parse_replica(raw, ref) for raw in replicas]
        self.pool = ReplicaPool([Replica(ref.base_url, ref.authorization), *others], self._probe)
        self.concurrency = max(1, concurrency or DEFAULT_CONCURRENCY * len(self.pool))
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.retry_counts: Counter[str] = Counter()
        self.max_reply_bytes = max_reply_bytes
        self._key_env = api_key_env or ref.api_key_env
        if self._key_env is not None and ref.authorization is not None:
            raise UsageError(
                f"The endpoint {ref.base_url} was given credentials twice: in the URL and through the "
                f"variable {self._key_env}.",
                "Give them one way: drop the user:password@ part of the URL, or drop api_key_env / --api-key-env.",
            )
        if self._key_env is not None and any(r.authorization for r in others):
            raise UsageError(
                f"A replica was given credentials in its URL and the key from {self._key_env} as well.",
                "Give them one way: drop the user:password@ part of the --replica URL, or drop --api-key-env.",
            )
        self._api_key = self._read_key()
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self._split_n = False

    def _read_key(self) -> str | None:
        if self._key_env is None:
            return None
        value = os.environ.get(self._key_env)
        if not value:
            raise UsageError(
                f"The API key variable {self._key_env} (named by the checkpoint reference or "
                "--api-key-env) is not set.",
                f"export {self._key_env}=... before running, or drop api_key_env for a server without auth.",
            )
        return value

    def identity(self) -> str:
        return f"openai-compat:{self.ref.base_url}#{self.ref.model}:{self.api}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        elif self.ref.authorization:
            headers["Authorization"] = self.ref.authorization
        return headers

    def _auth_error(self, status: int, replica: Replica | None = None) -> EndpointError:
        """401/403: say which credentials were sent (by the variable's name, never the value)."""
        what = f"HTTP {status} (authentication)"
        base = self.ref.base_url if replica is None else replica.base_url
        if self._key_env is not None:
            return EndpointError(
                f"The endpoint {base} rejected the API key with {what}: the key from "
                f"${self._key_env} was sent (Authorization: Bearer) and refused.",
                f"Check that ${self._key_env} holds a valid, current key for this server and model.",
            )
        scheme = self.ref.auth_scheme
        if replica is not None and replica.authorization is not None:
            scheme = replica.authorization.partition(" ")[0]
        if scheme is not None:
            return EndpointError(
                f"The endpoint {base} rejected the credentials from the URL with {what}: "
                f"they were sent (Authorization: {scheme}) and refused.",
                "Check the user and password (or token) in the URL, or pass the key with ?api_key_env=VAR.",
            )
        return EndpointError(
            f"The endpoint {base} rejected the request with {what}; no key was sent.",
            "Name the variable holding the key with ?api_key_env=VAR in the reference or --api-key-env VAR.",
        )

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers=self._headers(),
            )
        return self._session

    def _replica_headers(self, replica: Replica) -> dict[str, str]:
        """Per-request headers: a replica with credentials in its URL sends those instead of the checkpoint's."""
        return {} if replica.authorization is None else {"Authorization": replica.authorization}

    async def _list_models(self, replica: Replica) -> tuple[int, bytes | None]:
        """GET /models: (status, body or None when oversize); three tries, so one dropped connection on a
        flaky network is not mistaken for a dead server."""
        url = f"{replica.base_url}/models"
        for attempt in range(3):
            try:
                async with self._session_or_new().get(
                    url, timeout=aiohttp.ClientTimeout(total=15), headers=self._replica_headers(replica)
                ) as response:
                    return response.status, await read_capped(response, MODELS_LIST_BYTES)
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                if attempt < 2:
                    await asyncio.sleep(self.retry.backoff(attempt, self._rng))
                    continue
                raise EndpointError(
                    f"Cannot reach the endpoint {replica.base_url} ({type(error).__name__}: {error or 'timeout'}).",
                    "Check that the server is running and the URL ends with its API root (usually /v1); "
                    "to serve a local model: harness serve --checkpoint embedded --port 8080, then use "
                    "--checkpoint http://127.0.0.1:8080/v1#embedded."
                    + (" Every --replica must be up when the run starts." if len(self.pool) > 1 else ""),
                ) from None
        raise AssertionError("unreachable")

    async def preflight(self) -> None:
        """GET /models on every replica: unreachable hosts and rejected keys fail here, before any sample is
        queued. With replicas, each must list the checkpoint's model (see check_same_model)."""
        listings = await asyncio.gather(*(self._list_models(r) for r in self.pool.replicas))
        for replica, (status, _) in zip(self.pool.replicas, listings, strict=True):
            if status in (401, 403):
                raise self._auth_error(status, replica)
        status, body = listings[0]
        listed = model_ids(body) if status == 200 else None
        if listed and self.ref.model not in listed:  # an oversize or odd list only skips the model check
            shown = sorted(listed)[:20]  # a hosted API lists hundreds
            log.warning(
                "model '%s' is not among %s listed by %s/models", self.ref.model, shown, self.ref.base_url
            )
        if len(self.pool) > 1:
            served = [
                (r.base_url, s, model_ids(b) if s == 200 else None)
                for r, (s, b) in zip(self.pool.replicas, listings, strict=True)
            ]
            check_same_model(self.ref.model, served)

    async def _probe(self, replica: Replica) -> bool:
        """Whether a drained replica answers again: GET /models within 5 s, HTTP 200."""
        try:
            async with self._session_or_new().get(
                f"{replica.base_url}/models",
                timeout=aiohttp.ClientTimeout(total=5),
                headers=self._replica_headers(replica),
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    def _payload(self, request: Request) -> dict[str, Any]:
        """The request body. Thinking budgets (reasoning runs): `max_tokens` already holds the thinking
        budget plus the answer budget, so a budget > 0 adds nothing; vendor budget fields (Anthropic's
        `thinking.budget_tokens`, llama.cpp's `--reasoning-budget`, which is a server flag) are not sent
        because a plain OpenAI-compatible server may answer them with HTTP 400. A budget of 0 on a chat
        request sends `chat_template_kwargs: {"enable_thinking": false}`, which vLLM, SGLang and llama.cpp's
        server pass to the chat template (Qwen3-style templates then write an empty think block); a server
        that does not know the field ignores it or refuses it with a 4xx that names it. Runs without a
        budget (None) send exactly what they sent before."""
        s = request.settings
        payload: dict[str, Any] = {
            "model": self.ref.model,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        if s.n > 1:
            payload["n"] = s.n
        if s.seed is not None:
            payload["seed"] = s.seed
        if s.stop:
            payload["stop"] = list(s.stop)
        if request.messages is not None:
            payload["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if s.thinking_budget == 0:
                payload["chat_template_kwargs"] = {"enable_thinking": False}
            if s.logprobs:
                payload.update(logprobs=True, top_logprobs=0)
        else:
            payload["prompt"] = request.prompt
            if s.logprobs:
                payload["logprobs"] = 0
        return payload

    async def _attempt(
        self, replica: Replica, path: str, payload: dict[str, Any], settings: GenerationSettings
    ) -> Completion:
        start, cap = time.perf_counter(), reply_byte_cap(settings, self.max_reply_bytes)
        url, headers = f"{replica.base_url}/{path}", self._replica_headers(replica)
        try:
            async with self._session_or_new().post(url, json=payload, headers=headers) as response:
                if response.status in RETRYABLE_STATUS:
                    wait = parse_retry_after(response.headers.get("Retry-After"))
                    raise RetryableReply(
                        f"HTTP {response.status}", wait, drains=response.status in DRAINING_STATUS
                    )
                if response.status in (401, 403):
                    raise self._auth_error(response.status, replica)
                if response.status != 200:
                    quoted = await read_capped(response, ERROR_BODY_BYTES)
                    detail = (quoted or b"").decode("utf-8", "replace")[:300].strip()
                    raise EndpointError(
                        f"The endpoint answered HTTP {response.status} for {url}: {detail}",
                        "This is not retried; fix the request (model name, max_tokens vs context) or the server.",
                    )
                raw = await read_capped(response, cap)
        except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as error:
            raise RetryableReply(type(error).__name__, drains=True) from None
        if raw is None:
            raise RetryableReply("oversize reply", detail=f"the reply was over the cap of {cap} bytes")
        try:
            most = token_cap(settings.max_tokens) if settings.logprobs else None
            return parse_completion(raw, self.api, settings.n, time.perf_counter() - start, most)
        except MalformedReply as error:
            raise RetryableReply(
                "malformed reply", detail=f"the reply is not a valid completion: {error}"
            ) from None

    async def _send(self, request: Request) -> Completion:
        if request.settings.n > 1 and self._split_n:
            return await self._send_split(request)
        try:
            return await self._send_once(request)
        except FewerChoices:
            self._split_n = True
            return await self._send_split(request)

    async def _send_split(self, request: Request) -> Completion:
        """n single-sample requests with seeds seed, seed+1, ...; merged into one Completion."""
        s = request.settings
        parts = await asyncio.gather(*(
            self._send_once(replace(request, settings=replace(s, n=1, seed=None if s.seed is None else s.seed + i)))
            for i in range(s.n)
        ))  # fmt: skip
        reasonings = tuple(p.reasonings[0] if p.reasonings else None for p in parts)
        counted = [p.reasoning_tokens for p in parts]
        logprobs = tuple(p.logprobs[0] if p.logprobs else None for p in parts)
        return Completion(
            texts=tuple(p.text for p in parts),
            finish_reasons=tuple(p.finish_reasons[0] for p in parts),
            prompt_tokens=sum(p.prompt_tokens for p in parts),
            completion_tokens=sum(p.completion_tokens for p in parts),
            latency_s=max(p.latency_s for p in parts),
            reasonings=reasonings if any(r is not None for r in reasonings) else (),
            # A total only when every part reported one: a partial sum would pass for the whole.
            reasoning_tokens=None if None in counted else sum(c for c in counted if c is not None),
            logprobs=logprobs if any(lp is not None for lp in logprobs) else (),
        )

    async def _send_once(self, request: Request) -> Completion:
        path = "chat/completions" if self.api == "chat" else "completions"
        if request.api != self.api:
            raise UsageError(
                f"The suite sent a {request.api} request to a {self.api} endpoint.",
                "Use ?api=chat or ?api=text to match what the suite supports.",
            )
        payload = self._payload(request)
        last = RetryableReply("")
        attempt, failovers = 0, 0
        while attempt < self.retry.max_attempts:
            replica = self.pool.pick()
            try:
                with self.pool.sending(replica):
                    completion = await self._attempt(replica, path, payload, request.settings)
                replica.served += 1
                self.pool.mark_up(replica)  # it answered, even if it was drained (every replica down)
                return completion
            except RetryableReply as retry:
                self.retry_counts[retry.reason] += 1
                last = retry
                # Another replica is healthy: retry there at once, without spending an attempt (bounded,
                # so replicas that keep flapping still end in the usual error).
                if (
                    retry.drains
                    and self.pool.mark_down(replica, retry.reason)
                    and failovers < 2 * len(self.pool)
                ):
                    failovers += 1
                    log.debug("sending %s to another replica after %s", request.sample_id, retry.reason)
                    continue
                attempt += 1
                if attempt == self.retry.max_attempts:
                    break
                delay = self.retry.backoff(attempt - 1, self._rng)
                if retry.wait_s is not None:
                    delay = min(self.retry.max_retry_after_s, retry.wait_s) + self._rng.uniform(0, 0.1)
                log.debug("retrying %s after %s in %.2fs", request.sample_id, retry.reason, delay)
                await asyncio.sleep(delay)
        also = f" and its {len(self.pool) - 1} replica(s)" if len(self.pool) > 1 else ""
        raise EndpointError(
            f"The endpoint {self.ref.base_url}{also} kept failing for sample {request.sample_id} "
            f"({self.retry.max_attempts} attempts, last: {last.detail}).",
            _FAILURE_HINTS.get(last.reason, _FAILURE_HINTS[""]),
        )

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return list(await asyncio.gather(*(self._send(r) for r in requests)))

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._session is not None and not self._session.closed:
            await self._session.close()
