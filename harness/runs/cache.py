"""Response cache: SQLite, keyed by (adapter identity, request hash). Re-runs and re-scoring are free.

Only the runner's event-loop thread touches the connection. WAL mode lets a second process read
while one writes; writes commit per response, so a crash loses at most the response in flight.

What it reads back is checked like any file: stored text that is not valid UTF-8, or a database that
turns out to be damaged, is a DataError naming the cache (never a traceback, never text with U+FFFD
put in place of the bad bytes). An entry that is valid text but not a completion is a miss, and the
next put overwrites it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from harness.errors import DataError, StorageError
from harness.runs.store import holds_lone_surrogate
from harness.types import Completion

CACHE_FILE = Path(".cache") / "responses.sqlite"  # under the runs folder
_FIX = "Delete it (it only holds copies of model responses) or pass --no-cache."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    adapter TEXT NOT NULL,
    request_key TEXT NOT NULL,
    completion TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (adapter, request_key)
)
"""


def _refused_write(text: str) -> bool:
    return any(s in text.lower() for s in ("disk is full", "disk i/o error", "readonly", "unable to open"))


class ResponseCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"Cannot create the cache folder {path.parent}: {error.strerror or error}.",
                "Make the runs folder writable, or pass --no-cache.",
            ) from None
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.text_factory = bytes  # decoded strictly by get(), never with replacement characters
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, UnicodeDecodeError) as error:  # damage can garble even the error text
            if _refused_write(str(error)):  # the disk refuses writes: deleting the cache would not help
                raise StorageError(
                    f"The response cache {path} cannot be written ({error}).",
                    "Free space on that disk or make it writable, or pass --no-cache.",
                ) from None
            raise DataError(f"The response cache {path} cannot be opened ({error}).", _FIX) from None

    @classmethod
    def in_runs_folder(cls, runs_root: Path) -> ResponseCache:
        return cls(runs_root / CACHE_FILE)

    def get(self, adapter: str, request_key: str) -> Completion | None:
        try:
            row = self._db.execute(
                "SELECT completion FROM responses WHERE adapter = ? AND request_key = ?",
                (adapter, request_key),
            ).fetchone()
        except (sqlite3.Error, UnicodeDecodeError) as error:  # "database disk image is malformed", ...
            raise DataError(f"The response cache {self.path} cannot be read ({error}).", _FIX) from None
        if row is None:
            return None
        stored = row[0] if isinstance(row[0], bytes) else str(row[0]).encode()
        try:
            text = stored.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"The response cache {self.path} holds a response that is not valid UTF-8 (request "
                f"{request_key[:16]}, byte {error.start} of its text: {stored[error.start : error.start + 4]!r}).",
                _FIX,
            ) from None
        try:
            record = json.loads(text)
            if holds_lone_surrogate(record):
                raise ValueError("not text")
            return Completion.from_record(record)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            return None  # an unreadable entry is a miss; it is overwritten by the next put

    def put(self, adapter: str, request_key: str, completion: Completion) -> None:
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                (adapter, request_key, json.dumps(completion.to_record(), ensure_ascii=False), time.time()),
            )
        except sqlite3.Error as error:  # "database or disk is full", "attempt to write a readonly database"
            raise StorageError(
                f"Cannot store a response in the response cache {self.path} ({error}).",
                "Free space on that disk or make it writable (or pass --no-cache), then re-run the same "
                "command: every sample finished before this is kept in samples.jsonl and is not redone.",
            ) from None

    def close(self) -> None:
        self._db.close()
