"""The run store: `runs/<checkpoint>/<suite>@<version>/<settings-hash>/`.

- `manifest.json`: what was run and how (see Manifest); rewritten atomically.
- `samples.jsonl`: one record per finished sample, appended, flushed and fsync'd as soon as it is
  scored. A crash can only tear the last line; that line is detected and repaired on the next start
  (the sample is redone, from the response cache when it got there). Any other bad line is an error
  naming the file and line: it is never skipped silently.
- `metrics.json`: metrics over the samples of the run, with stderr and 95% CIs.
- `.lock`: an flock held while a process writes the run, so two processes never append to one file.
  Shards (harness.shards) lock with harness.runs.locks.FileLock: flock is unreliable on NFS/Lustre.

A write the file system refuses (full disk, read-only, no permission) raises StorageError naming the
file and the reason; what was written before stays, and re-running the same command resumes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import DataError, StorageError, UsageError
from harness.readers import MAX_JSON_DEPTH, decode_utf8, json_depth_exceeds, read_bytes, read_json_object
from harness.reasoning import ReasonedText
from harness.types import Completion

SAMPLES, MANIFEST, METRICS, LOCK = "samples.jsonl", "manifest.json", "metrics.json", ".lock"
SHARDS_DIR = "shards"  # <run>/shards/I-of-N/: a shard's own files (harness.shards), never a run
RUNS_DIR_ENV = "HARNESS_RUNS_DIR"


def runs_root(flag_value: str | None) -> Path:
    return Path(flag_value or os.environ.get(RUNS_DIR_ENV) or "runs").expanduser().resolve()


_STORAGE_FIXES = {
    errno.ENOSPC: "Free space on that disk",
    errno.EDQUOT: "Free space (the disk quota is used up)",
    errno.EFBIG: "Raise the file-size limit (ulimit -f)",
    errno.EROFS: "Make that file system writable",
    errno.EACCES: "Make the folder writable for this user",
    errno.EPERM: "Make the folder writable for this user",
}


def storage_error(error: OSError, path: Path, doing: str) -> StorageError:
    """A refused write as one paragraph: the file, the system's reason, and what to do."""
    code = errno.errorcode.get(error.errno or 0, "")
    reason = error.strerror or str(error)
    fix = _STORAGE_FIXES.get(error.errno or 0, "Fix the runs folder")
    return StorageError(
        f"Cannot {doing} {path}: {reason}{f' ({code})' if code else ''}.",
        f"{fix}, then re-run the same command: every sample finished before this is kept in "
        "samples.jsonl and is not redone (or pass --out DIR to start the run in another folder).",
    )


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # the old file is untouched; give back the space the copy took
            tmp.unlink(missing_ok=True)
        raise storage_error(error, path, "write") from None


RUN_FILE_FIX = "Restore it from a backup, or delete the run folder and run the evaluation again."


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object the harness wrote (manifest, metrics): strict UTF-8, bounded, depth-checked."""
    if not path.exists():
        raise DataError(f"The {what} {path} does not exist.", "Is this a run folder? See `harness runs`.")
    payload = read_json_object(path, what, fix=RUN_FILE_FIX)
    if holds_lone_surrogate(payload):
        raise DataError(f"The {what} {path} holds {_SURROGATE}.", RUN_FILE_FIX)
    return payload


_SURROGATE = "a lone surrogate escape (\\ud800-\\udfff): valid JSON, but not text"


def holds_lone_surrogate(value: Any) -> bool:
    """True if a string in `value` (keys too) holds a lone UTF-16 surrogate, which no UTF-8 output
    (a terminal, a rewritten file) accepts: read as is, it would crash the first print or write."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def loads_line(text: str) -> Any:
    """One JSONL line; every way it can be bad is a ValueError (the caller names file and line)."""
    if json_depth_exceeds(text):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if ("\\ud" in text or "\\uD" in text) and holds_lone_surrogate(value):  # only escapes make one
        raise ValueError(f"it holds {_SURROGATE}")
    return value


def read_metrics(run_dir: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """(primary metric, name -> {value, stderr, ci95, n}) of a run's metrics.json, its shape checked so a
    hand-edited or corrupt file is a DataError naming it rather than a crash where a value is used."""
    path = run_dir / METRICS
    payload = read_json(path, "metrics file")
    try:
        primary, metrics = payload.get("primary", ""), payload["metrics"]
        if not isinstance(primary, str) or not isinstance(metrics, dict):
            raise TypeError("'primary' must be a string and 'metrics' a mapping")
        return primary, {str(name): _metric(record) for name, record in metrics.items()}
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"The metrics file {path} is malformed ({type(error).__name__}: {str(error)[:200]}).",
            "Recompute it from the samples: harness rescore RUN.",
        ) from None


def _number(value: Any, nullable: bool = True) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _metric(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise TypeError("a metric must be a mapping")
    ci = record.get("ci95") or [None, None]
    if not isinstance(ci, list) or len(ci) != 2:
        raise TypeError("'ci95' must be a pair")
    n = record.get("n", 0)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("'n' must be a whole number")
    return {
        "value": _number(record.get("value")),
        "stderr": _number(record.get("stderr")),
        "ci95": [_number(ci[0]), _number(ci[1])],
        "n": n,
    }


@dataclass(frozen=True)
class SampleRecord:
    id: str
    prompt: str
    target: str
    request_keys: tuple[str, ...]
    completions: tuple[Completion, ...]
    scores: Mapping[str, float]
    extracted: Mapping[str, str | None] = field(default_factory=dict)
    # Reasoning runs: every response split into thinking and answer (completions in order, their texts in
    # order); empty when the run's reasoning mode is `none`.
    reasoning: tuple[ReasonedText, ...] = ()

    def to_line(self) -> str:
        record = {
            "id": self.id,
            "prompt": self.prompt,
            "target": self.target,
            "request_keys": list(self.request_keys),
            "completions": [c.to_record() for c in self.completions],
            "scores": dict(self.scores),
            "extracted": dict(self.extracted),
        }
        if self.reasoning:
            record["reasoning"] = [part.to_record() for part in self.reasoning]
        return json.dumps(record, ensure_ascii=False) + "\n"

    @classmethod
    def from_line(cls, line: str) -> SampleRecord:
        return cls.from_row(loads_line(line))

    @classmethod
    def from_row(cls, row: Any) -> SampleRecord:
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        scores = row["scores"]
        if not isinstance(scores, dict) or not all(isinstance(v, int | float) for v in scores.values()):
            raise ValueError("'scores' must map metric names to numbers")
        if not isinstance(row["request_keys"], list) or not isinstance(row["completions"], list):
            raise ValueError("'request_keys' and 'completions' must be lists")
        if not isinstance(row.get("extracted") or {}, dict):
            raise ValueError("'extracted' must be a mapping")
        if not isinstance(row.get("reasoning") or [], list):
            raise ValueError("'reasoning' must be a list")
        return cls(
            id=str(row["id"]),
            prompt=str(row.get("prompt", "")),
            target=str(row.get("target", "")),
            request_keys=tuple(str(k) for k in row["request_keys"]),
            completions=tuple(Completion.from_record(c) for c in row["completions"]),
            scores={str(k): float(v) for k, v in scores.items()},
            extracted=dict(row.get("extracted") or {}),
            reasoning=tuple(ReasonedText.from_record(part) for part in row.get("reasoning") or []),
        )


@dataclass(frozen=True)
class LoadedSamples:
    records: tuple[SampleRecord, ...]
    repaired_bytes: int  # size of a torn last line that was cut off (0: none)


_LINE_FIX = (
    "Delete that line (its sample will be run again, from the response cache if it is there) or delete "
    "the run folder; then re-run the same command."
)


class SamplesFile:
    """Append-only per-sample records with crash repair."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def load(self, repair: bool = True) -> LoadedSamples:
        if not self.path.exists():
            return LoadedSamples((), 0)
        data = read_bytes(self.path, "samples file", fix=_LINE_FIX)
        repaired = 0
        if data and not data.endswith(b"\n"):
            # A write that never reached its newline: the process died mid-line. The sample is redone.
            cut = data.rfind(b"\n") + 1
            repaired = len(data) - cut
            data = data[:cut]
            if repair:
                try:
                    with self.path.open("r+b") as handle:
                        handle.truncate(cut)
                        os.fsync(handle.fileno())
                except OSError as error:
                    raise storage_error(error, self.path, "cut the torn last line off") from None
        records: list[SampleRecord] = []
        seen: dict[str, int] = {}
        for number, raw_line in enumerate(data.split(b"\n")[:-1], start=1):
            line = decode_utf8(raw_line, self.path, "samples file", number, _LINE_FIX)  # never U+FFFD
            try:
                record = SampleRecord.from_row(loads_line(line))
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:
                raise DataError(
                    f"{self.path} line {number} is corrupt ({type(error).__name__}: {str(error)[:120]}).",
                    _LINE_FIX,
                ) from None
            if record.id in seen:
                raise DataError(
                    f"{self.path} line {number} repeats sample {record.id} (first at line {seen[record.id]}).",
                    "Keep one of the two lines and re-run; the harness writes each sample once, so the "
                    "file was edited or written by two processes.",
                )
            seen[record.id] = number
            records.append(record)
        return LoadedSamples(tuple(records), repaired)

    def append(self, record: SampleRecord) -> None:
        try:
            if self._handle is None:
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(record.to_line())
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:
            # A partial line may be on disk now: it is the torn last line the next start repairs.
            raise storage_error(error, self.path, "append a sample to") from None

    def rewrite(self, records: Iterable[SampleRecord]) -> None:
        self.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(record.to_line())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise storage_error(error, self.path, "rewrite") from None

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            # Every append flushes, so closing only fails when an append already failed (and said so):
            # whatever it could not write is a torn last line, repaired on the next start.
            with contextlib.suppress(OSError):
                handle.close()


class RunLock:
    """Exclusive, non-blocking flock on the run folder for the lifetime of a writer."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._handle: IO[str] | None = None

    def __enter__(self) -> RunLock:
        try:
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as error:
            raise storage_error(error, self.path, "open the lock file") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UsageError(
                f"The run {self.path.parent} is being written by {holder}.",
                "Wait for it to finish (or stop it); two writers would duplicate samples.",
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
        except OSError as error:
            with contextlib.suppress(OSError):
                handle.close()
            raise storage_error(error, self.path, "write the lock holder to") from None
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def remove_empty_run(run_dir: Path, created: Sequence[Path]) -> None:
    """Undo a first run that ended before its first sample: the run files go, then each folder in
    `created` (those that run made, deepest first) if it is empty, so nothing it did not make is removed."""
    samples = run_dir / SAMPLES
    with contextlib.suppress(OSError):
        if samples.exists() and samples.stat().st_size > 0:
            return  # finished (or torn) samples are kept for the re-run to resume
        for name in (SAMPLES, MANIFEST, METRICS, LOCK):
            (run_dir / name).unlink(missing_ok=True)
    for folder in created:
        with contextlib.suppress(OSError):
            folder.rmdir()


def find_runs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p.parent
        for p in root.rglob(MANIFEST)
        if not any(part.startswith(".") for part in p.parts[-5:-1]) and not _in_shard_folder(p.parent)
    )


def _in_shard_folder(folder: Path) -> bool:
    return folder.parent.name == SHARDS_DIR and "-of-" in folder.name


def resolve_run(text: str, root: Path) -> Path:
    """A run folder given as a path, or as a unique fragment of its path under the runs root."""
    direct = Path(text).expanduser()
    if (direct / MANIFEST).is_file():
        return direct.resolve()
    runs = find_runs(root)
    matches = [run for run in runs if text in str(run.relative_to(root))]
    if len(matches) == 1:
        return matches[0]
    listing = "\n".join(f"  {run.relative_to(root)}" for run in (matches or runs)[:20])
    if not matches:
        raise UsageError(
            f"No run matches '{text}' under {root}.",
            f"Known runs:\n{listing}" if runs else "There are no runs yet; start one with `harness eval`.",
        )
    raise UsageError(f"'{text}' matches {len(matches)} runs under {root}.", f"Be more specific:\n{listing}")


def sorted_by_ids(records: Sequence[SampleRecord], order: Sequence[str]) -> list[SampleRecord]:
    rank = {sample_id: i for i, sample_id in enumerate(order)}
    return sorted(records, key=lambda r: rank.get(r.id, len(rank)))
