"""Bridges into the peers' ecosystems: any checkpoint reference evaluated by inspect-ai or lm-eval.

- `inspect eval TASK --model harness/<checkpoint-ref>`: `harness.bridges.inspect_provider`, found by
  inspect through the `inspect_ai` entry-point group.
- `python -m harness.bridges.lm_eval_model --model harness --model_args checkpoint=<ref> ...`:
  `harness.bridges.lm_eval_model` (lm-eval 0.4.13 discovers no third-party models, see that module).

What both share lives here: turning a reference and a flat mapping of options into an opened adapter,
and a batcher that turns the peers' one-request-at-a-time calls into the adapter's own batch size and
concurrency. Nothing heavy is imported here; the peer libraries only load in their own module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.checkpoints import CheckpointRef
from harness.errors import UsageError
from harness.types import Adapter, Completion, Request

# Bridge options (inspect's `-M key=value`, lm-eval's `--model_args key=value`) -> AdapterOptions field.
_OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "concurrency": int,
    "timeout_s": float,
    "api_key_env": str,
    "max_attempts": int,
    "n_ctx": int,
    "batch_size": int,
    "device": str,
    "tensor_parallel_size": int,
    "price_table": str,
}
RUNS_DIR_OPTION = "runs_dir"  # where the checkpoint registry lives (STAGE:TAG references)
KNOWN_OPTIONS = (*_OPTION_TYPES, RUNS_DIR_OPTION)


@dataclass(frozen=True)
class OpenedCheckpoint:
    ref: CheckpointRef  # the concrete reference (a STAGE:TAG is resolved through the registry)
    lineage: Mapping[str, Any] | None  # the registry entry, when the reference is registered
    adapter: Adapter


def split_options(raw: Mapping[str, Any], what: str) -> tuple[dict[str, Any], Path | None]:
    """Validated AdapterOptions keyword arguments and the runs folder, from a peer's flat option mapping."""
    unknown = sorted(set(raw) - set(KNOWN_OPTIONS))
    if unknown:
        raise UsageError(
            f"Unknown {what} option(s) for the harness bridge: {', '.join(unknown)}.",
            f"Known: {', '.join(KNOWN_OPTIONS)}.",
        )
    options: dict[str, Any] = {}
    for key, convert in _OPTION_TYPES.items():
        value = raw.get(key)
        if value is None:
            continue
        try:
            options[key] = convert(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"The {what} option {key}={value!r} is not a valid {convert.__name__}.", None
            ) from None
    runs_dir = raw.get(RUNS_DIR_OPTION)
    return options, (Path(str(runs_dir)).expanduser().resolve() if runs_dir else None)


def open_checkpoint(raw_ref: str, options: Mapping[str, Any], what: str) -> OpenedCheckpoint:
    """Resolve a reference (STAGE:TAG through the registry in the runs folder) and build its adapter.

    Adapter constructors are cheap and import their backend, so a bad reference or a missing extra
    fails here, before the peer harness loads any task."""
    from adapters import AdapterOptions, create_adapter
    from harness.lineage import resolve_checkpoint
    from harness.store import runs_root

    kwargs, runs_dir = split_options(options, what)
    known = {f.name for f in fields(AdapterOptions)}
    assert set(kwargs) <= known, f"bridge options out of sync with AdapterOptions: {set(kwargs) - known}"
    ref, entry = resolve_checkpoint(raw_ref, runs_dir or runs_root(None))
    adapter = create_adapter(ref, AdapterOptions(**kwargs))
    return OpenedCheckpoint(ref, None if entry is None else entry.to_record(), adapter)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text up to the first stop sequence: backends differ on whether they strip it themselves."""
    cut = len(text)
    for stop in stops:
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


class RequestBatcher:
    """Gathers concurrent one-request calls into `adapter.generate()` batches of up to `batch_size`, with
    at most `concurrency` batches in flight: the peers call once per sample, our local backends (hf,
    vllm) are fast only when given many prompts at once. Bound to the event loop it is first used in."""

    def __init__(self, adapter: Adapter, window_s: float = 0.005) -> None:
        self._adapter = adapter
        self._size = max(1, int(adapter.batch_size))
        self._slots = asyncio.Semaphore(max(1, int(adapter.concurrency)))
        self._window_s = window_s  # lets callers that start together share a batch
        self._pending: list[tuple[Request, asyncio.Future[Completion]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, request: Request) -> Completion:
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return list(await asyncio.gather(*(self.submit(r) for r in requests)))

    async def _flush(self) -> None:
        await asyncio.sleep(self._window_s)
        while self._pending:
            await self._slots.acquire()  # requests that arrive meanwhile join the next batch
            chunk = [(r, f) for r, f in self._pending[: self._size] if not f.done()]
            del self._pending[: self._size]
            if not chunk:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(chunk))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, chunk: list[tuple[Request, asyncio.Future[Completion]]]) -> None:
        try:
            completions = await self._adapter.generate([request for request, _ in chunk])
            if len(completions) != len(chunk):
                raise RuntimeError(
                    f"{self._adapter.identity()} returned {len(completions)} completions "
                    f"for {len(chunk)} requests"
                )
        except asyncio.CancelledError:
            for _, future in chunk:
                future.cancel()
            raise
        except Exception as error:
            for _, future in chunk:
                if not future.done():
                    future.set_exception(error)
        else:
            for (_, future), completion in zip(chunk, completions, strict=True):
                if not future.done():
                    future.set_result(completion)
        finally:
            self._slots.release()
