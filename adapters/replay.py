"""`replay:FILE.jsonl`: answers every request with a stored response for its sample id.

One JSON object per line: {"sample_id": "...", "text": "..."} (or "texts": [...] for n > 1). Used to
check scorers against gold answers and to re-score responses produced elsewhere (another harness, a
recorded run) without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from harness.errors import DataError, UsageError
from harness.readers import parse_json, read_bytes
from harness.runs.store import holds_lone_surrogate
from harness.types import ApiKind, Completion, Request

_FIX = 'Each line must be {"sample_id": "...", "text": "..."} (or "texts": [...]), in UTF-8.'


class ReplayAdapter:
    concurrency = 1
    batch_size = 256

    def __init__(self, path_text: str) -> None:
        self.path = Path(path_text).expanduser()
        if not self.path.is_file():
            raise UsageError(
                f"The replay file {self.path} does not exist.", "Check the path after 'replay:'."
            )
        self.api: ApiKind = "chat"
        raw = read_bytes(self.path, "replay file", fix=_FIX)
        self._identity = f"replay:{hashlib.sha256(raw).hexdigest()[:16]}"
        self._responses: dict[str, tuple[str, ...]] = {}
        # Lines split on "\n" only (a U+2028 inside a JSON string is text); bytes decoded strictly.
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            row = parse_json(line, self.path, "replay file", number, _FIX)
            try:
                if not isinstance(row, dict):
                    raise TypeError("not a JSON object")
                if holds_lone_surrogate(row):
                    raise TypeError("a lone surrogate escape (\\ud800-\\udfff) is not text")
                texts = row["texts"] if "texts" in row else [row["text"]]
                if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                    raise TypeError("'text' must be a string and 'texts' a non-empty list of strings")
                self._responses[str(row["sample_id"])] = tuple(texts)
            except (KeyError, TypeError) as error:
                raise DataError(
                    f"{self.path}:{number} is not a replay record ({type(error).__name__}: {error}).", _FIX
                ) from None

    def identity(self) -> str:
        return self._identity

    async def preflight(self) -> None:
        return None

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        completions = []
        for request in requests:
            texts = self._responses.get(request.sample_id)
            if texts is None:
                raise DataError(
                    f"The replay file {self.path} has no response for sample {request.sample_id}.",
                    "Add it, or restrict the run with --limit to the samples the file covers.",
                )
            n = request.settings.n
            chosen = (texts * n)[:n] if len(texts) < n else texts[:n]
            completions.append(Completion(texts=chosen, finish_reasons=("stop",) * n))
        return completions

    async def aclose(self) -> None:
        return None
