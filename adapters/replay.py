"""`replay:FILE.jsonl`: answers every request with a stored response for its sample id.

One JSON object per line: {"sample_id": "...", "text": "..."} (or "texts": [...] for n > 1). Used to
check scorers against gold answers and to re-score responses produced elsewhere (another harness, a
recorded run) without a model.

Reasoning models (harness.reasoning) may add, per line:
- "reasoning": "..." beside "text", or "reasonings": [...] aligned with "texts" (a string or null each):
  the thinking a server returned apart from the answer (`reasoning_content`), to replay `--reasoning field`
  or `auto` runs. Thinking written inside the text (`<think>...</think>`) needs no field.
- "completion_tokens" and "reasoning_tokens": whole numbers >= 0, the counts the backend reported (the
  thinking lengths in metrics.json then use them instead of a character-based estimate).
- "logprobs": a list aligned with the texts, each null or {"lp": [...], "at": [...]} (the token
  log-probabilities and offsets of a run's samples.jsonl, harness.types.TokenLogprobs), replayed as given.
Anything of another type is a DataError naming FILE:LINE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from harness.readers import parse_json, read_bytes
from harness.runs.store import holds_lone_surrogate
from harness.types import ApiKind, Completion, Request, TokenLogprobs

_FIX = (
    'Each line must be {"sample_id": "...", "text": "..."} (or "texts": [...]), in UTF-8; optional '
    '"reasoning" (a string; "reasonings": a list aligned with "texts"), "completion_tokens" and '
    '"reasoning_tokens" (whole numbers), "logprobs" (a list aligned with "texts" of null or {"lp", "at"}).'
)


@dataclass(frozen=True)
class Replayed:
    """One line's stored response."""

    texts: tuple[str, ...]
    reasonings: tuple[str | None, ...] = ()
    completion_tokens: int = 0
    reasoning_tokens: int | None = None
    logprobs: tuple[TokenLogprobs | None, ...] = ()

    def completion(self, n: int, logprobs: bool = True) -> Completion:
        """n texts: the first n, or the stored ones repeated (with their reasonings) when fewer; their
        log-probabilities only when the request asks for them, as a live backend would."""
        chosen = [i % len(self.texts) for i in range(n)]
        reasonings = tuple(self.reasonings[i] for i in chosen) if self.reasonings else ()
        return Completion(
            texts=tuple(self.texts[i] for i in chosen),
            finish_reasons=("stop",) * n,
            completion_tokens=self.completion_tokens,
            reasonings=reasonings,
            reasoning_tokens=self.reasoning_tokens,
            logprobs=tuple(self.logprobs[i] for i in chosen) if self.logprobs and logprobs else (),
        )


def _count(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise TypeError(f"'{key}' must be a whole number >= 0, not {value!r:.40}")
    return value


def parse_replay_row(row: Any) -> tuple[str, Replayed]:
    """(sample id, response) of one line's JSON value; TypeError or KeyError says what is wrong."""
    if not isinstance(row, dict):
        raise TypeError("not a JSON object")
    if holds_lone_surrogate(row):
        raise TypeError("a lone surrogate escape (\\ud800-\\udfff) is not text")
    texts = row["texts"] if "texts" in row else [row["text"]]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("'text' must be a string and 'texts' a non-empty list of strings")
    if "reasoning" in row and "reasonings" in row:
        raise TypeError("give 'reasoning' (beside 'text') or 'reasonings' (beside 'texts'), not both")
    if "reasoning" in row:
        if "texts" in row:
            raise TypeError("'reasoning' goes beside 'text'; beside 'texts' give 'reasonings', one per text")
        reasonings = [row["reasoning"]]
    else:
        reasonings = row.get("reasonings", [])
    if not isinstance(reasonings, list) or not all(r is None or isinstance(r, str) for r in reasonings):
        raise TypeError("'reasoning' must be a string and 'reasonings' a list of strings or nulls")
    if reasonings and len(reasonings) != len(texts):
        raise TypeError(f"'reasonings' has {len(reasonings)} entries for {len(texts)} texts")
    stored = row.get("logprobs", [])
    if not isinstance(stored, list) or (stored and len(stored) != len(texts)):
        raise TypeError('\'logprobs\' must be a list with one entry (null or {"lp", "at"}) per text')
    try:
        logprobs = tuple(
            None if lp is None else TokenLogprobs.from_record(lp, len(t))
            for lp, t in zip(stored, texts, strict=False)
        )
    except ValueError as error:
        raise TypeError(f"'logprobs' is not valid: {error}") from None
    response = Replayed(
        texts=tuple(texts),
        reasonings=tuple(reasonings) if any(r is not None for r in reasonings) else (),
        completion_tokens=_count(row, "completion_tokens") or 0,
        reasoning_tokens=_count(row, "reasoning_tokens"),
        logprobs=logprobs if any(lp is not None for lp in logprobs) else (),
    )
    return str(row["sample_id"]), response


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
        self._responses: dict[str, Replayed] = {}
        # Lines split on "\n" only (a U+2028 inside a JSON string is text); bytes decoded strictly.
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            row = parse_json(line, self.path, "replay file", number, _FIX)
            try:
                sample_id, response = parse_replay_row(row)
                self._responses[sample_id] = response
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
            response = self._responses.get(request.sample_id)
            if response is None:
                raise DataError(
                    f"The replay file {self.path} has no response for sample {request.sample_id}.",
                    "Add it, or restrict the run with --limit to the samples the file covers.",
                )
            completions.append(response.completion(request.settings.n, request.settings.logprobs))
        return completions

    async def aclose(self) -> None:
        return None
