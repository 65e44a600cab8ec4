"""The run manifest: everything needed to know what a run is and to reproduce it.

It never holds secrets: checkpoint references name the environment variable of an API key, not its
value, and adapters' identities are built from references.
"""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError
from harness.types import GenerationSettings
from harness.version import __version__

SCHEMA_VERSION = 1


def how_it_ended(error: BaseException) -> tuple[str, str]:
    """(status, error text) a manifest records for what stopped a run: an interrupt or a failure."""
    status = "interrupted" if isinstance(error, KeyboardInterrupt | asyncio.CancelledError) else "failed"
    message = error.message if isinstance(error, HarnessError) else f"{type(error).__name__}: {error}"
    return status, message[:500]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def git_state() -> tuple[str | None, bool | None]:
    """(revision, dirty) of the checkout the harness runs from, or (None, None) outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        revision = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return revision, bool(status.strip())


@dataclass(frozen=True)
class Invocation:
    started_at: str
    finished_at: str | None = None
    status: str = "running"  # running | complete | interrupted | failed
    generated: int = 0  # requests sent to the model
    cache_hits: int = 0  # requests answered by the response cache
    resumed: int = 0  # samples already in samples.jsonl at start
    repaired_bytes: int = 0  # torn last line cut off at start
    retries: int = 0
    error: str | None = None
    cost_estimate_usd: float | None = None  # pre-run upper bound (USD) of what this invocation spends
    # The machine measurement that scaled sandbox time limits, when this invocation ran sandboxed code
    # (`suites.sandbox.timing.record_since`); the pinned limits themselves are in suite_settings.
    sandbox_timing: Mapping[str, Any] | None = None
    # The run folder (relative to the runs folder) of a smaller `--limit` run whose finished samples this
    # invocation copied in, counted in `resumed` (harness.runs.extend); None when it copied none.
    extended_from: str | None = None


@dataclass(frozen=True)
class Manifest:
    suite: str
    suite_version: str
    suite_settings: Mapping[str, Any]
    checkpoint: str
    adapter: str
    generation: GenerationSettings
    limit: int | None
    settings_hash: str
    data_source: str
    data_sha256: str
    n_samples: int
    n_total: int
    created_at: str
    harness_version: str = __version__
    git_revision: str | None = None
    git_dirty: bool | None = None
    python: str = field(default_factory=lambda: platform.python_version())
    platform: str = field(default_factory=lambda: f"{sys.platform}-{platform.machine()}")
    status: str = "running"
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    invocations: tuple[Invocation, ...] = ()
    # The registry entry a STAGE:TAG reference resolved to (name, stage, parent, base, hashes), if any.
    lineage: Mapping[str, Any] | None = None

    def with_invocation(self, invocation: Invocation, keep_complete: bool = False) -> Manifest:
        """Replace the last invocation (the current one) or append a new one. The run takes the
        invocation's status, except that with `keep_complete` a complete run stays complete: a re-run
        that fails (or is still going) records that in its invocation, never by downgrading the run."""
        previous = self.invocations
        if previous and previous[-1].started_at == invocation.started_at:
            previous = previous[:-1]
        status = self.status if keep_complete and self.status == "complete" else invocation.status
        return replace(self, invocations=(*previous, invocation), status=status)

    def to_record(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "suite": self.suite,
            "suite_version": self.suite_version,
            "suite_settings": dict(self.suite_settings),
            "checkpoint": self.checkpoint,
            "adapter": self.adapter,
            "generation": self.generation.as_record(),
            "limit": self.limit,
            "settings_hash": self.settings_hash,
            "data": {"source": self.data_source, "sha256": self.data_sha256},
            "n_samples": self.n_samples,
            "n_total": self.n_total,
            "created_at": self.created_at,
            "harness": {
                "version": self.harness_version,
                "git_revision": self.git_revision,
                "git_dirty": self.git_dirty,
            },
            "python": self.python,
            "platform": self.platform,
            "status": self.status,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd,
            },
            "invocations": [vars(i).copy() for i in self.invocations],
            "lineage": None if self.lineage is None else dict(self.lineage),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], path: Path) -> Manifest:
        try:
            gen = record["generation"]
            return cls(
                suite=str(record["suite"]),
                suite_version=str(record["suite_version"]),
                suite_settings=dict(record.get("suite_settings") or {}),
                checkpoint=str(record["checkpoint"]),
                adapter=str(record["adapter"]),
                generation=GenerationSettings(
                    max_tokens=int(gen["max_tokens"]),
                    temperature=float(gen["temperature"]),
                    top_p=float(gen["top_p"]),
                    stop=tuple(gen.get("stop") or ()),
                    n=int(gen.get("n", 1)),
                    seed=None if gen.get("seed") is None else int(gen["seed"]),
                    thinking_budget=_optional_int(gen.get("thinking_budget")),
                    logprobs=gen.get("logprobs") is True,
                ),
                limit=None if record.get("limit") is None else int(record["limit"]),
                settings_hash=str(record["settings_hash"]),
                data_source=str(record["data"]["source"]),
                data_sha256=str(record["data"]["sha256"]),
                n_samples=int(record["n_samples"]),
                n_total=int(record["n_total"]),
                created_at=str(record["created_at"]),
                harness_version=str(record["harness"]["version"]),
                git_revision=record["harness"].get("git_revision"),
                git_dirty=record["harness"].get("git_dirty"),
                python=str(record.get("python", "")),
                platform=str(record.get("platform", "")),
                status=str(record.get("status", "unknown")),
                cost_usd=float(record.get("usage", {}).get("cost_usd", 0.0)),
                prompt_tokens=int(record.get("usage", {}).get("prompt_tokens", 0)),
                completion_tokens=int(record.get("usage", {}).get("completion_tokens", 0)),
                invocations=tuple(Invocation(**i) for i in _list(record.get("invocations", []))),
                lineage=_mapping_or_none(record.get("lineage")),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
            raise DataError(
                f"The manifest {path} is missing or has a malformed field ({type(error).__name__}: {error}).",
                "It is written by the harness; delete the run folder and run the evaluation again.",
            ) from None


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _mapping_or_none(value: Any) -> Mapping[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"'lineage' must be a mapping or null, got {type(value).__name__}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
