"""Per-sample data of one run, read once: the sample browser's records and the compare page's scores.

A sample is *correct* when its primary per-sample score reaches the maximum (1.0). The per-sample
score behind a primary metric is the metric itself, except where the metric is an aggregate of
another per-sample value (safety_score averages `safe_outcome` over strata).
Categories come from the sample's recorded fields: `subset`/`category` (safety), the
`<primary>_<category>` score keys (alice), the instruction ids (ifeval).
Each response carries whether generation stopped at the token limit (finish reason "length": `cut`) and
whether the page shows only its first DISPLAY_CHARS characters (`clipped`); the browser badges both.
A reasoning run's record (its `reasoning` parts) shows each response as its answer (`responses`, null where
the response ended inside its thinking) and its thinking (`thinking`) apart; the browser collapses the thinking.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import DataError
from harness.readers import DEFAULT_MAX_BYTES, MiB, parse_json
from harness.runs.catalog import RunView
from harness.runs.scores import STRATIFIED, per_sample_key, stratum_of
from harness.runs.store import SAMPLES, SampleRecord
from leaderboard.site_state import stat_once

# What a paired comparison reads of a record besides id and scores (reports.paired_cache.light_record).
_STRATUM_FIELDS = frozenset(stratum for _, stratum in STRATIFIED.values())
CUT_REASON = "length"  # the finish reason every adapter reports for "stopped at max_tokens"
DISPLAY_CHARS = 20_000  # a response longer than this is clipped in the sample browser (and says so)

CORRECT_AT = 1.0 - 1e-9
MAX_SAMPLES_BYTES = DEFAULT_MAX_BYTES  # the bound every reader of a samples file keeps (harness.runs.store)
_BUFFER = 1 << 20
_FIX = "Repair or delete the run (see `harness runs`), then rebuild the site."


@dataclass(frozen=True)
class RunSamples:
    score_key: str  # the per-sample score used as "primary"
    records: list[dict[str, Any]]  # sample browser records (JSON-able)
    ids: list[str]
    scores: list[float | None]
    categories: list[str]
    strata: list[str] | None  # per-sample stratum when the primary metric is a mean of stratum means
    # The records as reports.paired_cache.light_record makes them from run.samples() (when asked for, and
    # only when every line is one run.samples() reads the same way; else None).
    light: tuple[SampleRecord, ...] | None = None


def _categories(row: Mapping[str, Any], primary: str) -> list[str]:
    extracted = row.get("extracted") or {}
    out: list[str] = []
    for key in ("subset", "category"):
        value = extracted.get(key)
        if isinstance(value, str) and value:
            out.append(value)
    prefix = primary + "_"
    out.extend(k[len(prefix) :] for k in (row.get("scores") or {}) if k.startswith(prefix))
    instructions = extracted.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.extend(i.strip() for i in instructions.split(",") if i.strip())
    elif isinstance(instructions, list):
        out.extend(str(i) for i in instructions)
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _responses(row: Mapping[str, Any]) -> tuple[list[str], list[bool], list[bool]]:
    """(texts, cut at the token limit, clipped for display) over all completions of a sample."""
    texts: list[str] = []
    cut: list[bool] = []
    clipped: list[bool] = []
    for completion in row.get("completions") or []:
        reasons = completion.get("finish_reasons") or []
        for i, text in enumerate(completion.get("texts") or []):
            text = str(text)
            texts.append(text[:DISPLAY_CHARS])
            clipped.append(len(text) > DISPLAY_CHARS)
            cut.append(i < len(reasons) and reasons[i] == CUT_REASON)
    return texts, cut, clipped


def _reasoned(row: Mapping[str, Any], n_texts: int) -> tuple[list[str | None], list[str], list[bool]] | None:
    """(answers, thinking, clipped) of a reasoning run's record, one per response; None: no parts stored
    (or not one per response: then the texts are shown whole)."""
    parts = row.get("reasoning")
    if not isinstance(parts, list) or not parts or len(parts) != n_texts:
        return None
    if not all(isinstance(part, dict) for part in parts):
        return None
    answers: list[str | None] = []
    thinking: list[str] = []
    clipped: list[bool] = []
    for part in parts:
        answer, reasoning = part.get("answer"), str(part.get("reasoning") or "")
        answer = None if answer is None else str(answer)
        answers.append(None if answer is None else answer[:DISPLAY_CHARS])
        thinking.append(reasoning[:DISPLAY_CHARS])
        clipped.append(len(reasoning) > DISPLAY_CHARS or len(answer or "") > DISPLAY_CHARS)
    return answers, thinking, clipped


def _light(row: Mapping[str, Any], sample_id: str, scores: Mapping[str, Any]) -> SampleRecord | None:
    """The light record (reports.paired_cache) of a row that SampleRecord.from_row reads without error."""
    extracted = row.get("extracted") or {}
    if not (
        all(isinstance(v, int | float) for v in scores.values())
        and isinstance(row.get("request_keys"), list)
        and isinstance(row.get("completions"), list)
        and isinstance(extracted, dict)
        and all(isinstance(c, dict) and isinstance(c.get("texts"), list) for c in row["completions"])
    ):
        return None
    kept = {k: v for k, v in extracted.items() if k in _STRATUM_FIELDS}
    return SampleRecord(sample_id, "", "", (), (), {str(k): float(v) for k, v in scores.items()}, kept)


def read_run_samples(
    run: RunView, light: bool = False, stats: dict[str, os.stat_result | None] | None = None
) -> RunSamples:
    """One pass over samples.jsonl (raw JSON, no dataclasses: this is the build's hot loop); with
    `light`, also the records a paired comparison reads (RunSamples.light). `stats`: the build's stat memo
    (leaderboard.site_state.stat_once; the file was stat'ed for its fingerprint)."""
    path = run.run_dir / SAMPLES
    records: list[dict[str, Any]] = []
    ids: list[str] = []
    scores: list[float | None] = []
    categories: set[str] = set()
    score_key: str | None = None
    stratum_field = stratum_of(run.primary)
    strata: list[str] | None = [] if stratum_field else None
    info = stat_once(str(path), {} if stats is None else stats)
    if info is None or not stat.S_ISREG(info.st_mode):  # as path.is_file(): missing, a folder, a FIFO
        return RunSamples(run.primary, [], [], [], [], strata)
    first_line: dict[str, int] = {}  # a repeated sample would be counted twice in every statistic
    read = 0
    lights: list[SampleRecord | None] | None = [] if light else None
    # A large buffer: one read for most files (each syscall waits for the GIL while the writer's threads
    # run: leaderboard.site_writer).
    with path.open(
        "rb", buffering=_BUFFER
    ) as handle:  # bytes: parse_json decodes strictly, naming the line and byte
        # readline(limit): a file with no newline (or one that grows while read) is never held whole.
        for number, line in enumerate(iter(lambda: handle.readline(MAX_SAMPLES_BYTES + 1), b""), start=1):
            read += len(line)
            if read > MAX_SAMPLES_BYTES:
                raise DataError(
                    f"{path} holds more than {MAX_SAMPLES_BYTES // MiB} MiB by line {number}, more than a "
                    "samples file may hold.",
                    _FIX,
                )
            if not line.endswith(b"\n"):
                lights = None  # run.samples() refuses what this skips: the figure reads it itself
                break  # a torn last line (the run is being written or crashed): the harness redoes it
            row = parse_json(line, path, "samples file", number, _FIX)
            try:
                sample_scores = row["scores"]
                sample_id = str(row["id"])
                if not isinstance(sample_scores, dict):
                    raise TypeError("'scores' is not an object")
                if sample_id in first_line:
                    raise DataError(
                        f"{path} line {number} repeats sample {sample_id} (first at line "
                        f"{first_line[sample_id]}).",
                        "Keep one of the two lines (or delete the run and evaluate again), then rebuild the site.",
                    )
                first_line[sample_id] = number
                if score_key is None:
                    score_key = per_sample_key(run.primary, sample_scores)
                raw = sample_scores.get(score_key)
                score = float(raw) if isinstance(raw, int | float) else None
                cats = _categories(row, run.primary)
                extracted = {str(k): _text(v) for k, v in (row.get("extracted") or {}).items()}
                responses, cut, clipped = _responses(row)
                reasoned = _reasoned(row, len(responses))
                if lights is not None:
                    lights.append(_light(row, sample_id, sample_scores))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise DataError(
                    f"{path} line {number} is corrupt ({type(error).__name__}: {str(error)[:120]}).", _FIX
                ) from None
            categories.update(cats)
            correct = score is not None and score >= CORRECT_AT
            record: dict[str, Any] = {
                "id": sample_id,
                "prompt": str(row.get("prompt", "")),
                "target": str(row.get("target", "")),
                "responses": responses,
                "cut": cut,
                "clipped": clipped,
                "extracted": extracted,
                "scores": {str(k): v for k, v in sample_scores.items()},
                "s": score,
                "correct": correct,
                "verdict": extracted.get("verdict") or ("correct" if correct else "incorrect"),
                "cats": cats,
            }
            if reasoned is not None:  # the answers (what was scored) and the thinking, apart
                record["responses"], record["thinking"], record["clipped"] = reasoned
            records.append(record)
            ids.append(sample_id)
            scores.append(score)
            if strata is not None and stratum_field is not None:
                strata.append(str(extracted.get(stratum_field) or ""))
    kept = None if lights is None or None in lights else tuple(r for r in lights if r is not None)
    return RunSamples(score_key or run.primary, records, ids, scores, sorted(categories), strata, kept)
