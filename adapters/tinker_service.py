"""The Tinker service as its two users reach it: the sampling adapter (adapters/tinker.py) and the
training backend (training/tinker_backend.py, training/tinker_session.py).

- `service_client_factory` builds the SDK's `ServiceClient` (tests replace it with a stand-in);
- `check_credentials` stops before any work when the SDK would find no API key;
- SDK calls may block for minutes while connecting (the SDK retries an unreachable service), so they
  run in a daemon thread (`in_daemon_thread`, `call_in_daemon_thread`) and are awaited under a deadline
  (`within`): a timeout then returns, and the process can still exit;
- `endpoint_error` turns Tinker's exceptions into the harness's EndpointError;
- `close_session` finishes the session, best effort.

Nothing here imports tinker at module import time (the CLI starts without it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import EndpointError, UsageError

log = logging.getLogger("harness.tinker")
T = TypeVar("T")

CONNECT_TIMEOUT_S = 120.0  # creating a sampling session or a training client (the SDK connects inside)
CLOSE_TIMEOUT_S = 10.0  # finishing the session: the results are saved by then
CHECK_SERVICE = "Check the network and the service status (https://tinker.thinkingmachines.ai)"


def sdk_service_client() -> Any:
    import tinker

    return tinker.ServiceClient()


# Builds the ServiceClient for the adapter and the training backend. Tests replace it with the factory of
# tests/support/tinker_standin.py or tests/support/tinker_training_standin.py.
service_client_factory: Callable[[], Any] = sdk_service_client


def check_credentials() -> None:
    """The SDK's three credential sources; without any, stop before any work with one clear line."""
    key = os.environ.get("TINKER_API_KEY", "")
    if key:
        if not key.startswith(("tml-", "eyJ")):
            raise UsageError(
                "TINKER_API_KEY does not look like a Tinker API key (they start with 'tml-').",
                "Copy the key from the Tinker console again.",
            )
        return
    if os.environ.get("TINKER_CREDENTIAL_CMD"):
        return
    try:
        from tinker.lib.credentials import default_credentials_path

        if Path(default_credentials_path()).is_file():
            return
    except (ImportError, AttributeError, TypeError, OSError):
        pass  # an SDK without a credential store: the environment variable is the only source
    raise UsageError(
        "A Tinker checkpoint needs a Tinker API key, and TINKER_API_KEY is not set.",
        "export TINKER_API_KEY=tml-... (from the Tinker console), or run `tinker auth login`.",
    )


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call in a daemon thread (not the executor, which asyncio.run joins at exit)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[T] = loop.create_future()

    def deliver(value: T | None, error: BaseException | None) -> None:
        if not result.done():  # it was cancelled when the caller timed out
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:  # handed to the awaiting coroutine
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(deliver, value, error)
        except RuntimeError:
            pass  # the loop is gone: nobody waits for this any more

    threading.Thread(target=run, name="tinker-connect", daemon=True).start()
    return await result


async def within(
    awaitable: Awaitable[T], seconds: float, what: str, advice: str, shown: float | None = None
) -> T:
    """Await for at most `seconds`; past them, an EndpointError naming the call and `shown` (the limit
    the user set, when part of it was spent already), with `advice` after the hint to check the service."""

    async def run() -> T:
        return await awaitable

    try:
        return await asyncio.wait_for(run(), max(0.0, seconds))
    except TimeoutError:
        raise EndpointError(
            f"The Tinker service did not answer within {shown or seconds:g} s while {what}.",
            f"{CHECK_SERVICE}; {advice}",
        ) from None


async def call_in_daemon_thread(fn: Callable[[], Any], seconds: float, what: str, advice: str) -> Any:
    """fn() in a daemon thread, then its result awaited when it is awaitable (an SDK future); both
    within `seconds` in all."""
    start = time.monotonic()
    result = await within(in_daemon_thread(fn), seconds, what, advice)
    if hasattr(result, "__await__"):
        left = seconds - (time.monotonic() - start)
        result = await within(result, left, what, advice, shown=seconds)
    return result


def endpoint_error(error: BaseException, what: str, checkpoint: str | None = None) -> EndpointError:
    """One of Tinker's exceptions as an EndpointError: a rejected key, a checkpoint the service does
    not know (when the call named `checkpoint`), or any other failure of the service."""
    name = type(error).__name__
    if "Authentication" in name or "PermissionDenied" in name:
        return EndpointError(f"Tinker rejected the API key while {what} ({name}: {error}).", None)
    if checkpoint is not None and "NotFound" in name:
        return EndpointError(
            f"Tinker does not know '{checkpoint}' ({name}: {error}).",
            "Check the run id and checkpoint name (tinker://RUN/sampler_weights/ID).",
        )
    return EndpointError(f"The Tinker service failed while {what} ({name}: {str(error)[:300]}).", None)


async def close_session(service: Any, status: str, seconds: float = CLOSE_TIMEOUT_S) -> None:
    """`service.close(status)` within `seconds`; best effort: a failure is only logged."""
    if service is None or not hasattr(service, "close"):
        return
    try:
        close = functools.partial(service.close, status)
        await call_in_daemon_thread(close, seconds, "closing the session", "closing is best effort.")
    except Exception as error:  # the results (samples, weights) are saved before the session closes
        log.debug("closing the Tinker session failed: %s", error)
