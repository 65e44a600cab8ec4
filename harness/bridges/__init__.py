"""Bridges into the peers' ecosystems: any checkpoint reference evaluated by inspect-ai or lm-eval.

- `inspect eval TASK --model harness/<checkpoint-ref>`: `harness.bridges.inspect_provider`, found by
  inspect through the `inspect_ai` entry-point group.
- `python -m harness.bridges.lm_eval_model --model harness --model_args checkpoint=<ref> ...`:
  `harness.bridges.lm_eval_model` (lm-eval 0.4.13 discovers no third-party models, see that module).

What both share lives here: turning a reference and a flat mapping of options into an opened adapter,
and the stop-sequence cut (`harness.batching.RequestBatcher` turns the peers' one-request-at-a-time calls
into the adapter's own batch size and concurrency). Nothing heavy is imported here; the peer libraries
only load in their own module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.checkpoints import CheckpointRef
from harness.errors import UsageError
from harness.types import Adapter

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
    "max_reply_bytes": int,
}
RUNS_DIR_OPTION = "runs_dir"  # where the checkpoint registry lives (STAGE:TAG references)
KNOWN_OPTIONS = (*_OPTION_TYPES, RUNS_DIR_OPTION)
# Taken out before split_options by harness.bridges.reasoning_options; named here for the error's list.
REASONING_OPTIONS = ("reasoning", "think_open", "think_close")


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
            f"Known: {', '.join((*KNOWN_OPTIONS, *REASONING_OPTIONS))}.",
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
    from harness.runs.store import runs_root

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
