"""Replicas of an endpoint: other servers with the same model behind other base URLs (`--replica URL`).

Each request goes to the least-loaded healthy replica (fewest requests in flight; ties go round-robin).
A replica that drops a connection, times out or answers 5xx is marked down and drained: no new requests
go to it, and the request that failed is sent to another replica at once. A down replica is probed with
`GET /models` after a cooldown that doubles from COOLDOWN_MIN_S to COOLDOWN_MAX_S; once it answers 200 it
takes work again. With every replica down, requests still go out (to the one down the longest) and the
adapter's usual backoff and max_attempts apply, so a run against dead servers fails exactly as before.

The checkpoint's own URL is replica 0. A pool of one never drains (there is nowhere else to send to), so
an endpoint without replicas behaves as it always did. Probes are started by the requests that pick a
replica (no background timers), so nothing outlives the event loop that made it except tasks that
`aclose()` cancels.

A replica URL may carry user:password; that travels only as its Authorization header. Everything shown
(logs, errors) uses the base URL without the userinfo, or `redact_reference` of what was typed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

from harness.checkpoints import EndpointRef, parse_checkpoint, redact_reference
from harness.errors import UsageError

log = logging.getLogger("harness.openai")
COOLDOWN_MIN_S = 1.0
COOLDOWN_MAX_S = 30.0

_REPLICA_FORM = (
    "A replica is the base URL of another server serving the same model, with the same API root as the "
    "checkpoint, e.g. --replica http://10.0.0.2:8000/v1 (credentials, if any, as http://USER:PASSWORD@HOST/v1)."
)


class Replica:
    """One server of the pool and its live state (mutable: the pool updates it as requests come and go)."""

    __slots__ = ("authorization", "base_url", "down_since", "failures", "healthy", "in_flight", "probe_at",
                 "probing", "served")  # fmt: skip

    def __init__(self, base_url: str, authorization: str | None = None) -> None:
        self.base_url = base_url  # without userinfo: safe to show
        self.authorization = authorization  # from the URL's userinfo; None: the checkpoint's credentials
        self.in_flight = 0
        self.served = 0  # replies returned (tests and the drain log read it)
        self.healthy = True
        self.failures = 0  # consecutive failed probes + 1 while down: sets the cooldown
        self.down_since = 0.0
        self.probe_at = 0.0
        self.probing = False

    def __repr__(self) -> str:  # never the authorization
        state = "up" if self.healthy else "down"
        return f"Replica({self.base_url}, {state}, in_flight={self.in_flight})"


def parse_replica(raw: str, primary: EndpointRef) -> Replica:
    """A `--replica` value checked like an endpoint reference; the model and options are the checkpoint's.

    `URL#MODEL` is accepted when MODEL is the checkpoint's model (a sweep file may list whole references)."""
    text = raw.strip()
    shown = redact_reference(text)
    if not text.startswith(("http://", "https://")):
        raise UsageError(f"Invalid --replica '{shown}': it is not an http:// or https:// URL.", _REPLICA_FORM)
    head, sep, fragment = text.partition("#")
    if sep and fragment != primary.model:
        raise UsageError(
            f"Invalid --replica '{shown}': it names the model '{redact_reference('#' + fragment)[1:]}', but "
            f"the checkpoint's model is '{primary.model}'; replicas serve the checkpoint's model.",
            f"Drop the '#...' part: {_REPLICA_FORM}",
        )
    try:
        ref = parse_checkpoint(f"{head}#{primary.model}")
    except UsageError as error:
        problem = error.problem.replace("Invalid --checkpoint", "Invalid --replica", 1)
        problem = problem.replace(f"#{primary.model}'", "'", 1)  # show what was typed, not the model added
        raise UsageError(problem, _REPLICA_FORM) from None
    assert isinstance(ref, EndpointRef)
    return Replica(ref.base_url, ref.authorization)


def model_ids(body: bytes | None) -> set[str] | None:
    """The ids in a `GET /models` reply; None when it is missing, oversize or not an OpenAI model list."""
    if body is None:
        return None
    try:
        return {str(m.get("id")) for m in json.loads(body).get("data", [])}
    except (ValueError, AttributeError, TypeError):
        return None


def check_same_model(model: str, served: Sequence[tuple[str, int, set[str] | None]]) -> None:
    """Refuse replicas that do not serve the checkpoint's model: (base URL, HTTP status, listed ids) per
    replica, the checkpoint's own URL first.

    Each must list `model`; where the checkpoint's server does not list it (a server that ignores the
    name, answering with whatever it loaded), each replica must list exactly the same ids instead."""
    primary_ids = served[0][2]
    for base_url, status, ids in served:
        if not ids:
            raise UsageError(
                f"Cannot tell which models {base_url} serves: GET {base_url}/models answered HTTP {status} "
                "without a model list, so its replicas cannot be checked to serve the same model.",
                "Replicas need servers that list their models (vLLM, SGLang, llama.cpp, harness serve do); "
                "drop --replica to evaluate this endpoint alone.",
            )
        same = model in ids if model in (primary_ids or ()) else ids == primary_ids
        if not same:
            shown = ", ".join(sorted(ids)[:20])
            expected = (
                f"the model '{model}'"
                if model in (primary_ids or ())
                else f"the same models as {served[0][0]}"
            )
            raise UsageError(
                f"The replica {base_url} does not serve {expected}: it lists {shown}.",
                "Every --replica must serve the checkpoint's model (same weights, same name); start it "
                "with that model, or drop it.",
            )


def cooldown_s(failures: int) -> float:
    """1 s after the first failure, doubling with each failed probe, at most 30 s."""
    return min(COOLDOWN_MAX_S, COOLDOWN_MIN_S * 2.0 ** max(0, failures - 1))


class ReplicaPool:
    """Least-loaded routing over replicas, with drain on failure and recovery by probing."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        probe: Callable[[Replica], Awaitable[bool]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replicas:
            raise ValueError("a replica pool needs at least one replica")
        self.replicas = tuple(replicas)
        self._probe = probe
        self._clock = clock
        self._turn = 0  # round-robin start among equally loaded replicas
        self._probes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.replicas)

    def healthy(self) -> list[Replica]:
        return [r for r in self.replicas if r.healthy]

    def pick(self) -> Replica:
        """The healthy replica with the fewest requests in flight (round-robin among ties); with none
        healthy, the one down the longest (the caller's backoff then applies)."""
        self._start_due_probes()
        count = len(self.replicas)
        rotated = [self.replicas[(self._turn + i) % count] for i in range(count)]
        up = [r for r in rotated if r.healthy]
        chosen = min(up, key=lambda r: r.in_flight) if up else min(rotated, key=lambda r: r.down_since)
        self._turn = (self.replicas.index(chosen) + 1) % count
        return chosen

    @contextmanager
    def sending(self, replica: Replica) -> Iterator[None]:
        """Counts the request as in flight on `replica` while the block runs."""
        replica.in_flight += 1
        try:
            yield
        finally:
            replica.in_flight -= 1

    def mark_down(self, replica: Replica, reason: str) -> bool:
        """Drain `replica` after a failure; True when another replica is healthy to retry on at once."""
        if len(self.replicas) == 1:
            return False
        if replica.healthy:
            replica.healthy = False
            replica.failures = 1
            replica.down_since = self._clock()
            replica.probe_at = replica.down_since + cooldown_s(1)
            others = len(self.healthy())
            log.warning(
                "replica %s failed (%s): drained, its requests go to the %d healthy other(s); probing it "
                "again in %.0f s",
                replica.base_url, reason, others, cooldown_s(1),
            )  # fmt: skip
        return bool(self.healthy())

    def mark_up(self, replica: Replica) -> None:
        if not replica.healthy:
            replica.healthy = True
            replica.failures = 0
            log.warning("replica %s answers again: it takes requests again", replica.base_url)

    def _start_due_probes(self) -> None:
        now = self._clock()
        for replica in self.replicas:
            if not replica.healthy and not replica.probing and now >= replica.probe_at:
                replica.probing = True
                task = asyncio.get_running_loop().create_task(self._run_probe(replica))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _run_probe(self, replica: Replica) -> None:
        try:
            answered = await self._probe(replica)
        except Exception:
            answered = False
        finally:
            replica.probing = False
        if answered:
            self.mark_up(replica)
        elif not replica.healthy:
            replica.failures += 1
            replica.probe_at = self._clock() + cooldown_s(replica.failures)

    async def aclose(self) -> None:
        for task in list(self._probes):
            task.cancel()
        if self._probes:
            await asyncio.gather(*self._probes, return_exceptions=True)
