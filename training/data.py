"""Training data: chat examples for SFT and preference pairs for DPO, from a local file or the hub.

SFT rows follow the Tulu 3 SFT mixture schema (`allenai/tulu-3-sft-olmo-2-mixture-0225`): `messages`, a
list of `{role, content}` with at least one assistant turn. DPO rows follow the OLMo 2 preference mixes
(`allenai/olmo-2-0425-1b-preference-mix`): `chosen` and `rejected`, two conversations that share every
turn but the last assistant one (an optional `prompt` string is ignored in favour of the shared turns).
The data sha256 covers the parsed rows used (after shuffling and `limit`), so the same data always hashes
the same, whatever the file's formatting.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from harness.types import Message, Role
from training.config import DataConfig

ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatExample:
    id: str
    messages: tuple[Message, ...]  # the loss covers the assistant turns


@dataclass(frozen=True)
class PreferencePair:
    id: str
    prompt: tuple[Message, ...]  # the shared turns
    chosen: str  # the preferred last assistant turn
    rejected: str


@dataclass(frozen=True)
class Rows:
    rows: tuple[Mapping[str, Any], ...]
    origin: str  # "file:PATH" or "hub:REPO@REVISION"
    files: tuple[Path, ...]  # local files (for decontamination); empty for the hub

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for row in self.rows:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """JSONL (one object per line) or a JSON array; errors name the file and line."""
    if not path.is_file():
        raise UsageError(f"The training data file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}).") from None
        if not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path} must be a JSON array of objects.")
        return list(rows)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number} is not valid JSON ({error.msg}).") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number} is not a JSON object.")
        rows.append(row)
    return rows


def _hub_rows(config: DataConfig) -> list[dict[str, Any]]:
    from harness.data import load_hub_rows

    assert config.hub is not None
    return load_hub_rows(config.hub, config.hub_config, config.split, config.revision or "main")


def load_rows(config: DataConfig, base_dir: Path | None = None) -> Rows:
    files: tuple[Path, ...] = ()
    if config.path is not None:
        path = Path(config.path).expanduser()
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = base_dir / path  # relative to the config file
        rows, origin, files = read_rows(path), f"file:{path}", (path,)
    elif config.hub is not None:
        rows, origin = _hub_rows(config), f"hub:{config.hub}@{config.revision or 'main'}"
    else:
        raise UsageError("The training config names no data.", "Set data.path (a local file) or data.hub.")
    if config.shuffle_seed is not None:
        random.Random(config.shuffle_seed).shuffle(rows)
    if config.limit is not None:
        rows = rows[: config.limit]
    if not rows:
        raise DataError(f"The training data {origin} has no rows.")
    return Rows(tuple(rows), origin, files)


def _messages(value: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: expected a non-empty list of {{role, content}} messages.")
    out = []
    for index, item in enumerate(value):
        role = item.get("role") if isinstance(item, dict) else None
        content = item.get("content") if isinstance(item, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise DataError(f"{where}[{index}]: expected role system/user/assistant and a string content.")
        out.append(Message(role, content))
    return tuple(out)


def _row_id(row: Mapping[str, Any], index: int) -> str:
    value = row.get("id")
    return str(value) if value is not None else f"row-{index:06d}"


def chat_examples(rows: Rows) -> list[ChatExample]:
    examples = []
    for index, row in enumerate(rows.rows):
        where = f"{rows.origin} row {index + 1} 'messages'"
        messages = _messages(row.get("messages"), where)
        if not any(m.role == "assistant" for m in messages):
            raise DataError(f"{where} has no assistant turn to learn from.")
        examples.append(ChatExample(_row_id(row, index), messages))
    return examples


def preference_pairs(rows: Rows) -> list[PreferencePair]:
    pairs = []
    for index, row in enumerate(rows.rows):
        where = f"{rows.origin} row {index + 1}"
        chosen = _messages(row.get("chosen"), f"{where} 'chosen'")
        rejected = _messages(row.get("rejected"), f"{where} 'rejected'")
        if chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
            raise DataError(f"{where}: 'chosen' and 'rejected' must each end with an assistant turn.")
        if chosen[:-1] != rejected[:-1] or not chosen[:-1]:
            raise DataError(
                f"{where}: 'chosen' and 'rejected' must share every turn before the last (the prompt).",
                "Each row is one prompt with two alternative final assistant answers.",
            )
        pairs.append(
            PreferencePair(_row_id(row, index), chosen[:-1], chosen[-1].content, rejected[-1].content)
        )
    return pairs


def describe_counts(examples: Sequence[object]) -> str:
    return f"{len(examples)} example{'s' if len(examples) != 1 else ''}"
