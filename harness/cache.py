"""Response cache: SQLite, keyed by (adapter identity, request hash). Re-runs and re-scoring are free.

Only the runner's event-loop thread touches the connection. WAL mode lets a second process read
while one writes; writes commit per response, so a crash loses at most the response in flight.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from harness.errors import DataError, StorageError
from harness.types import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    adapter TEXT NOT NULL,
    request_key TEXT NOT NULL,
    completion TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (adapter, request_key)
)
"""


class ResponseCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as error:
            text = str(error).lower()
            if any(s in text for s in ("disk is full", "disk i/o error", "readonly", "unable to open")):
                # the disk refuses writes: deleting the cache would not help
                raise StorageError(
                    f"The response cache {path} cannot be written ({error}).",
                    "Free space on that disk or make it writable, or pass --no-cache.",
                ) from None
            raise DataError(
                f"The response cache {path} cannot be opened ({error}).",
                "Delete it (it only holds copies of model responses) or pass --no-cache.",
            ) from None

    def get(self, adapter: str, request_key: str) -> Completion | None:
        row = self._db.execute(
            "SELECT completion FROM responses WHERE adapter = ? AND request_key = ?", (adapter, request_key)
        ).fetchone()
        if row is None:
            return None
        try:
            return Completion.from_record(json.loads(row[0]))
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable entry is a miss; it is overwritten by the next put

    def put(self, adapter: str, request_key: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
            (adapter, request_key, json.dumps(completion.to_record(), ensure_ascii=False), time.time()),
        )

    def close(self) -> None:
        self._db.close()
