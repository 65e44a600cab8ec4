"""A sweep file: checkpoints x suites, evaluated by one scheduler (locally) or as a Slurm array job.

```yaml
suites: [gsm8k, ifeval]          # default for every checkpoint
limit: 50                        # optional
generation: {max_tokens: 256}    # harness.api.evaluate.Generation fields (seed, samples, temperature, ...)
runs: runs                       # optional; relative paths are relative to this file
checkpoints:
  - embedded
  - ref: http://a:8000/v1#team1-dpo
    replicas: [http://b:8000/v1]           # the same model behind other servers
    backend: {concurrency: 64, timeout: 600}
    suites: [gsm8k]                          # this checkpoint's own suites
    serve: vllm serve /models/team1 --port {port}   # Slurm: start the server inside the task
slurm: {partition: gpu, gpus_per_task: 1, time: "01:00:00", shards: 4}
```

Every problem names the file and the key. Checkpoint references are validated where they are used
(`harness.checkpoints.parse_checkpoint`), so a bad one lists the valid forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.readers import read_yaml

_FIX = "See the sweep file format in docs/sweeps.md."
_KEYS = ("suites", "limit", "generation", "runs", "data_dir", "judge", "checkpoints", "slurm")
_CHECKPOINT_KEYS = ("ref", "suites", "replicas", "backend", "serve")
GENERATION_KEYS = ("seed", "samples", "temperature", "top_p", "max_tokens", "thinking_budget", "logprobs")
BACKEND_KEYS = ("concurrency", "timeout", "max_attempts", "batch_size", "device", "api_key_env")
SLURM_KEYS = (
    "partition", "account", "gpus_per_task", "cpus_per_task", "mem", "time", "shards", "sbatch_lines",
)  # fmt: skip


@dataclass(frozen=True)
class SweepCheckpoint:
    reference: str
    suites: tuple[str, ...]
    replicas: tuple[str, ...] = ()
    backend: Mapping[str, Any] = field(default_factory=dict)  # BACKEND_KEYS
    serve: str | None = None  # a command that serves the checkpoint; "{port}" is replaced by a free port


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    mem: str | None = None  # e.g. "16G"
    time: str | None = None  # e.g. "01:00:00"
    shards: int = 1  # array tasks per (checkpoint, suite)
    sbatch_lines: tuple[str, ...] = ()  # extra "#SBATCH ..." lines, verbatim


@dataclass(frozen=True)
class SweepTask:
    """One unit of work: a checkpoint's suite, or one shard of it."""

    checkpoint: SweepCheckpoint
    suite: str
    shard_index: int = 0
    shard_count: int = 1


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    checkpoints: tuple[SweepCheckpoint, ...]
    limit: int | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)  # GENERATION_KEYS
    runs: Path | None = None
    data_dir: Path | None = None
    judge: str | None = None
    slurm: SlurmOptions = SlurmOptions()

    def tasks(self, shards: int | None = None) -> list[SweepTask]:
        """Every (checkpoint, suite, shard) in file order; `shards` overrides slurm.shards."""
        count = shards or self.slurm.shards
        return [
            SweepTask(c, suite, i, count)
            for c in self.checkpoints
            for suite in c.suites
            for i in range(count)
        ]


def load_sweep(path: Path) -> SweepSpec:
    """Read and validate a sweep file."""
    raw = read_yaml(path, "sweep file", fix=_FIX)

    def bad(key: str, problem: str) -> UsageError:
        return UsageError(f"The sweep file {path}: '{key}' {problem}.", _FIX)

    if not isinstance(raw, dict):
        raise UsageError(f"The sweep file {path} is not a mapping of keys to values.", _FIX)
    _known(raw, _KEYS, "", bad)
    suites = _names(raw.get("suites"), "suites", bad, required=False)
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise bad("limit", "must be a positive integer or null")
    generation = _mapping(raw.get("generation"), "generation", GENERATION_KEYS, bad)
    entries = raw.get("checkpoints")
    if not isinstance(entries, list) or not entries:
        raise bad("checkpoints", "must be a non-empty list of references or {ref: ...} mappings")
    checkpoints = tuple(_checkpoint(entry, i, suites, bad) for i, entry in enumerate(entries))
    slurm_raw = _mapping(raw.get("slurm"), "slurm", SLURM_KEYS, bad)
    return SweepSpec(
        path=path,
        checkpoints=checkpoints,
        limit=limit,
        generation=generation,
        runs=_path(raw.get("runs"), "runs", path, bad),
        data_dir=_path(raw.get("data_dir"), "data_dir", path, bad),
        judge=_text(raw.get("judge"), "judge", bad),
        slurm=_slurm(slurm_raw, bad),
    )


def _checkpoint(entry: Any, i: int, suites: tuple[str, ...], bad: Any) -> SweepCheckpoint:
    where = f"checkpoints[{i}]"
    if isinstance(entry, str):
        entry = {"ref": entry}
    if not isinstance(entry, dict):
        raise bad(where, "must be a reference or a mapping with 'ref'")
    _known(entry, _CHECKPOINT_KEYS, f"{where}.", bad)
    reference = _text(entry.get("ref"), f"{where}.ref", bad)
    if reference is None:
        raise bad(f"{where}.ref", "is missing")
    own = _names(entry.get("suites"), f"{where}.suites", bad, required=False) or suites
    if not own:
        raise bad(f"{where}.suites", "is missing, and the file has no top-level 'suites'")
    replicas = _names(entry.get("replicas"), f"{where}.replicas", bad, required=False)
    backend = _mapping(entry.get("backend"), f"{where}.backend", BACKEND_KEYS, bad)
    return SweepCheckpoint(
        reference, own, replicas, backend, _text(entry.get("serve"), f"{where}.serve", bad)
    )


def _slurm(raw: Mapping[str, Any], bad: Any) -> SlurmOptions:
    def whole(key: str, default: int, least: int) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise bad(f"slurm.{key}", f"must be a whole number >= {least}")
        return value

    lines = raw.get("sbatch_lines") or []
    if not isinstance(lines, list) or not all(isinstance(x, str) and "\n" not in x for x in lines):
        raise bad("slurm.sbatch_lines", "must be a list of single-line strings")
    return SlurmOptions(
        partition=_text(raw.get("partition"), "slurm.partition", bad),
        account=_text(raw.get("account"), "slurm.account", bad),
        gpus_per_task=whole("gpus_per_task", 0, 0),
        cpus_per_task=whole("cpus_per_task", 2, 1),
        mem=_text(raw.get("mem"), "slurm.mem", bad),
        time=_text(raw.get("time"), "slurm.time", bad),
        shards=whole("shards", 1, 1),
        sbatch_lines=tuple(lines),
    )


def _known(raw: Mapping[Any, Any], keys: tuple[str, ...], prefix: str, bad: Any) -> None:
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        raise bad(f"{prefix}{unknown[0]}", f"is not a key (known: {', '.join(keys)})")


def _mapping(value: Any, key: str, keys: tuple[str, ...], bad: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(key, f"must be a mapping of {', '.join(keys)}")
    _known(value, keys, f"{key}.", bad)
    return {str(k): v for k, v in value.items()}


def _names(value: Any, key: str, bad: Any, required: bool) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
        raise bad(key, "must be a non-empty list of strings")
    if len(set(value)) != len(value):
        raise bad(key, "names an entry twice")
    return tuple(value)


def _text(value: Any, key: str, bad: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\n" in value or len(value) > 2000:
        raise bad(key, "must be a one-line string")
    return value


def _path(value: Any, key: str, sweep_file: Path, bad: Any) -> Path | None:
    text = _text(value, key, bad)
    if text is None:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else sweep_file.parent / path
