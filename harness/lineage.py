"""The checkpoint registry: which checkpoints exist, where they came from, and what `STAGE:TAG` means.

One JSONL file, append-only (a line per checkpoint, flock'd while appending), written by training stages
and by `harness checkpoints add`. It lives in the runs folder (`<runs>/registry.jsonl`) unless
`$HARNESS_REGISTRY` names another file, so runs, the response cache and the lineage travel together.

`STAGE:TAG` resolves among the entries of that stage: `latest` is the last one registered, `vN` the N-th,
anything else an entry's name or one of its tags.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.checkpoints import CheckpointRef, RegistryRef, WandbRef, parse_checkpoint
from harness.errors import DataError, UsageError
from harness.names import NAME_RULE, check_name
from harness.readers import decode_utf8, read_bytes
from harness.runs.manifest import now_iso
from harness.runs.store import loads_line

REGISTRY_FILE = "registry.jsonl"
TAG_KIND = "tag"  # a line that moves a tag onto an existing entry (e.g. `best`, set by `harness pipeline`)
_NTH = re.compile(r"^v([1-9][0-9]*)$")
_RESERVED = re.compile(r"latest|v[0-9]+")  # STAGE:latest and STAGE:vN mean the last and the N-th entry
_REGISTRY_FIX = "Fix or delete that line; every other entry is intact."


def check_registry_name(value: str, what: str) -> str:
    """The shared name rule (harness.names), and not `latest` or `vN`, which STAGE:TAG reserves: a
    checkpoint or tag so named would hide the last or N-th entry of its stage."""
    check_name(value, what)
    if _RESERVED.fullmatch(value):
        raise UsageError(
            f"The {what} '{value}' is reserved: STAGE:{value} means the "
            + ("last" if value == "latest" else "N-th")
            + " checkpoint of a stage.",
            f"Pick another ({NAME_RULE}).",
        )
    return value


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    return tuple(check_registry_name(tag, "tag") for tag in tags)


def registry_path(runs_root: Path | None = None) -> Path:
    if os.environ.get("HARNESS_REGISTRY"):
        return Path(os.environ["HARNESS_REGISTRY"]).expanduser()
    if runs_root is None:
        from harness.runs.store import runs_root as default_root

        runs_root = default_root(None)
    return runs_root / REGISTRY_FILE


def sha256_of_files(paths: Iterable[Path]) -> str:
    """One digest over files in the given order (names excluded, so a moved file keeps its hash)."""
    digest = hashlib.sha256()
    for path in paths:
        file_digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(chunk)
        digest.update(file_digest.digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointEntry:
    name: str  # unique in the registry
    reference: str  # a concrete checkpoint reference (never STAGE:TAG)
    stage: str  # base, sft, dpo, rlvr, ... (the STAGE of STAGE:TAG)
    base_model: str
    parent: str | None = None  # the parent entry's name
    tags: tuple[str, ...] = ()
    config_sha256: str | None = None
    data_sha256: str | None = None
    seed: int | None = None
    created_at: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)  # steps, cost, waivers: what training records

    def checkpoint_ref(self) -> CheckpointRef:
        return parse_checkpoint(self.reference)

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "stage": self.stage,
            "base_model": self.base_model,
            "parent": self.parent,
            "tags": list(self.tags),
            "config_sha256": self.config_sha256,
            "data_sha256": self.data_sha256,
            "seed": self.seed,
            "created_at": self.created_at,
            "details": dict(self.details),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CheckpointEntry:
        seed = record.get("seed")
        return cls(
            name=str(record["name"]),
            reference=str(record["reference"]),
            stage=str(record["stage"]),
            base_model=str(record["base_model"]),
            parent=None if record.get("parent") is None else str(record["parent"]),
            tags=tuple(str(t) for t in record.get("tags") or ()),
            config_sha256=record.get("config_sha256"),
            data_sha256=record.get("data_sha256"),
            seed=None if seed is None else int(seed),
            created_at=str(record.get("created_at", "")),
            details=dict(record.get("details") or {}),
        )


class CheckpointRegistry:
    def __init__(self, path: Path):
        self.path = path
        self.entries: list[CheckpointEntry] = self._read() if path.exists() else []

    def _read(self) -> list[CheckpointEntry]:
        entries: list[CheckpointEntry] = []
        data = read_bytes(self.path, "checkpoint registry", fix=_REGISTRY_FIX)
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            line = decode_utf8(raw, self.path, "checkpoint registry", number, _REGISTRY_FIX)
            try:
                record = loads_line(line)
                if not isinstance(record, dict):
                    raise TypeError("not a JSON object")
                if record.get("kind") == TAG_KIND:
                    entries = _moved_tag(entries, str(record["name"]), str(record["tag"]))
                else:
                    entries.append(CheckpointEntry.from_record(record))
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:
                raise DataError(
                    f"The checkpoint registry {self.path} line {number} is corrupt "
                    f"({type(error).__name__}: {str(error)[:200]}).",
                    _REGISTRY_FIX,
                ) from None
        return entries

    def by_name(self, name: str) -> CheckpointEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def children(self, name: str) -> list[CheckpointEntry]:
        return [e for e in self.entries if e.parent == name]

    def of_stage(self, stage: str) -> list[CheckpointEntry]:
        return [e for e in self.entries if e.stage == stage]

    def lookup(self, ref: RegistryRef) -> CheckpointEntry:
        same_stage = self.of_stage(ref.stage)
        found: CheckpointEntry | None = None
        if ref.tag == "latest" and same_stage:
            found = same_stage[-1]
        else:
            found = next((e for e in reversed(same_stage) if e.name == ref.tag or ref.tag in e.tags), None)
            nth = _NTH.match(ref.tag)
            if found is None and nth and int(nth.group(1)) <= len(same_stage):
                found = same_stage[int(nth.group(1)) - 1]
        if found is None:
            raise UsageError(
                f"No checkpoint '{ref.raw}' in the registry {self.path}"
                + ("" if self.entries else " (it has no entries yet)")
                + ".",
                self.known_text(),
            )
        return found

    def known_text(self) -> str:
        if not self.entries:
            return (
                "Training stages register their checkpoints; or add one: "
                "harness checkpoints add NAME REF --stage sft [--parent NAME]."
            )
        lines = ["Known references:"]
        for stage in dict.fromkeys(e.stage for e in self.entries):
            entries = self.of_stage(stage)
            lines.append(f"  {stage}:latest -> {entries[-1].name}")
            for index, entry in enumerate(entries, start=1):
                tags = "".join(f", {stage}:{t}" for t in entry.tags)
                lines.append(f"  {stage}:{entry.name} ({stage}:v{index}{tags}) -> {entry.reference}")
        return "\n".join(lines)

    def resolve_parent(self, text: str) -> CheckpointEntry:
        """A parent given as an entry name or as STAGE:TAG."""
        entry = self.by_name(text)
        if entry is not None:
            return entry
        parsed = parse_checkpoint(text) if ":" in text else None
        if isinstance(parsed, RegistryRef):
            return self.lookup(parsed)
        raise UsageError(f"The parent '{text}' is not in the registry {self.path}.", self.known_text())

    def add(
        self,
        name: str,
        reference: str,
        stage: str,
        parent: str | None = None,
        base_model: str | None = None,
        tags: Sequence[str] = (),
        config_sha256: str | None = None,
        data_sha256: str | None = None,
        seed: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> CheckpointEntry:
        check_registry_name(name, "checkpoint name")
        check_name(stage, "stage name")
        tags = check_tags(tags)
        parsed = parse_checkpoint(reference)
        if isinstance(parsed, RegistryRef | WandbRef):
            raise UsageError(
                f"'{reference}' is itself a registry reference.",
                "Register the checkpoint's concrete reference (hf:PATH, tinker://..., http://...#MODEL, ...).",
            )
        reference = parsed.raw  # as runs store it: credentials in a URL are never written to the registry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # another writer may have appended since we read
            handle.seek(0)
            self.entries = [] if not handle.read(1) else self._read()
            if self.by_name(name) is not None:
                raise UsageError(
                    f"A checkpoint named '{name}' is already in the registry {self.path}.",
                    "Names are unique; pick another (tags can be shared: --tag).",
                )
            parent_entry = None if parent is None else self.resolve_parent(parent)
            entry = CheckpointEntry(
                name=name,
                reference=reference,
                stage=stage,
                base_model=base_model or (parent_entry.base_model if parent_entry else reference),
                parent=None if parent_entry is None else parent_entry.name,
                tags=tuple(tags),
                config_sha256=config_sha256,
                data_sha256=data_sha256,
                seed=seed,
                created_at=now_iso(),
                details=dict(details or {}),
            )
            line = json.dumps(entry.to_record(), ensure_ascii=False, sort_keys=True) + "\n"
            handle.seek(0, os.SEEK_END)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.entries.append(entry)
        return entry

    def tag(self, name: str, tag: str) -> CheckpointEntry:
        """Move `tag` onto the entry `name` (off any other entry): one appended line."""
        check_registry_name(tag, "tag")
        line = json.dumps(
            {"kind": TAG_KIND, "name": name, "tag": tag, "created_at": now_iso()}, sort_keys=True
        )
        with self.path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            self.entries = [] if not handle.read(1) else self._read()
            if self.by_name(name) is None:
                raise UsageError(
                    f"No checkpoint named '{name}' in the registry {self.path}.", self.known_text()
                )
            handle.seek(0, os.SEEK_END)
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries = _moved_tag(self.entries, name, tag)
        found = self.by_name(name)
        assert found is not None
        return found

    def lineage(self, entry: CheckpointEntry) -> list[CheckpointEntry]:
        """The entry and its ancestors, oldest first (stops at a dangling parent or a cycle)."""
        chain, seen = [entry], {entry.name}
        while (parent := chain[-1].parent) and parent not in seen and (found := self.by_name(parent)):
            chain.append(found)
            seen.add(parent)
        return list(reversed(chain))


def _moved_tag(entries: list[CheckpointEntry], name: str, tag: str) -> list[CheckpointEntry]:
    target = next((e for e in entries if e.name == name), None)
    if target is None:
        raise ValueError(f"the tag line names no earlier entry '{name}'")
    out = []
    for entry in entries:
        tags = tuple(t for t in entry.tags if t != tag)  # a moved tag names one checkpoint
        if entry.name == name:
            tags = (*tags, tag)
        out.append(replace(entry, tags=tags) if tags != entry.tags else entry)
    return out


def resolve_registry_ref(ref: RegistryRef, runs_root: Path | None = None) -> CheckpointEntry:
    return CheckpointRegistry(registry_path(runs_root)).lookup(ref)


def resolve_checkpoint(
    raw: str, runs_root: Path | None = None
) -> tuple[CheckpointRef, CheckpointEntry | None]:
    """Parse a reference; a STAGE:TAG becomes the concrete reference it names. A concrete reference that is
    registered also brings its entry along, so its runs carry lineage however it was named."""
    ref = parse_checkpoint(raw)
    path = registry_path(runs_root)
    if isinstance(ref, RegistryRef):
        entry = CheckpointRegistry(path).lookup(ref)
        return entry.checkpoint_ref(), entry
    if isinstance(ref, WandbRef):
        return resolve_wandb(ref)
    if not path.exists():
        return ref, None
    matches = [e for e in CheckpointRegistry(path).entries if e.reference == ref.raw]
    return ref, (matches[-1] if matches else None)


def resolve_wandb(ref: WandbRef, api: Any | None = None) -> tuple[CheckpointRef, CheckpointEntry | None]:
    """A `wandb:` reference as the concrete reference in its artifact's metadata, with the registry entry
    the artifact was logged from; `details.wandb_artifact` records the version it resolved to (ENTITY/
    PROJECT/NAME:vN), so the manifest's lineage says which artifact the run evaluated."""
    from harness.wandb_refs import resolve_wandb_ref

    found = resolve_wandb_ref(ref, api)
    concrete = parse_checkpoint(found.reference)
    if found.entry is None:
        return concrete, None
    try:
        entry = CheckpointEntry.from_record(found.entry)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"The W&B artifact '{found.artifact}' has a malformed registry entry in its metadata "
            f"({type(error).__name__}: {str(error)[:200]}).",
            "Log it again with `harness export wandb`, or pass the concrete reference.",
        ) from None
    return concrete, replace(entry, details={**entry.details, "wandb_artifact": found.artifact})
