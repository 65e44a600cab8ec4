"""Verifying one submitted run against the registered suite, from the files `read_bundle` extracted.

`verify_run` is the list of checks, in the order they run: those on manifest.json and metrics.json are in
leaderboard.verify_checks; those on samples.jsonl, the recomputed metrics and the re-scoring are here.

Memory is bounded whatever the files hold: samples.jsonl is read a line at a time (lines at most
MAX_LINE_BYTES, records at most the suite's sample count, each record's shape checked), in three
passes (sample ids; request keys and stored scores; re-scoring in small chunks), and across a run only
per-sample scores and extracted values are kept, within MAX_EXTRACTED_CHARS.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.readers import MiB, parse_json
from harness.reasoning import ReasonedText
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, METRICS, SAMPLES, SampleRecord
from harness.suite import Suite
from harness.types import Completion, GenerationSettings, Sample, Score
from leaderboard.bundle import REMAKE_HINT, TOLERANCE, reject
from leaderboard.verify_checks import (
    MAX_LIST,
    check_bounds,
    check_bundle_claims,
    check_complete,
    check_data_hash,
    check_filed_under,
    check_pinned_settings,
    check_settings_hash,
    check_suite_version,
    claimed_metrics,
    load_json,
    load_manifest,
    load_suite_data,
    registered_suite,
)

MAX_LINE_BYTES = 1 * MiB  # a real record is 1-10 KB (n=1); n=20 responses of 1,280 tokens ~150 KB
MAX_BLANK_LINES = 1000
MAX_KEYS = 256  # per-sample scores or extracted values: real records have 1-10
MAX_EXTRACTED_CHARS = 8 * MiB  # kept for the metrics over a whole run; real runs keep ~1 MB
RESCORE_RECORDS = 64  # re-scored at once (a chunk holds full responses)
RESCORE_BYTES = 4 * MiB


@dataclass(frozen=True)
class AcceptedRun:
    path: str  # inside the bundle: runs/<checkpoint>/<suite>@<version>/<hash>
    checkpoint: str
    suite: str
    n_samples: int
    primary: str
    value: float | None
    rescored: bool
    note: str  # why it was not re-scored, if so


def _record(row: Any, where: str) -> SampleRecord:
    """A SampleRecord from a parsed line whose every field has the shape the harness writes."""

    def bad(why: str) -> DataError:
        return reject(f"{where} is not a sample record ({why}).")

    if not isinstance(row, dict):
        raise bad("not a JSON object")
    sample_id, scores, extracted = row.get("id"), row.get("scores"), row.get("extracted") or {}
    keys, completions = row.get("request_keys"), row.get("completions")
    if not isinstance(sample_id, str | int) or isinstance(sample_id, bool):
        raise bad("'id' must be a string")
    if not isinstance(scores, dict) or len(scores) > MAX_KEYS:
        raise bad(f"'scores' must be an object of at most {MAX_KEYS} numbers")
    if not all(isinstance(v, int | float) for v in scores.values()):
        raise bad("'scores' must map metric names to numbers")
    if not isinstance(extracted, dict) or len(extracted) > MAX_KEYS:
        raise bad(f"'extracted' must be an object of at most {MAX_KEYS} values")
    if not all(v is None or isinstance(v, str) for v in extracted.values()):
        raise bad("'extracted' values must be strings or null")
    if not isinstance(keys, list) or len(keys) > MAX_LIST or not all(isinstance(k, str) for k in keys):
        raise bad(f"'request_keys' must be a list of at most {MAX_LIST} strings")
    if not isinstance(completions, list) or len(completions) > MAX_LIST:
        raise bad(f"'completions' must be a list of at most {MAX_LIST} objects")
    try:
        parsed = tuple(Completion.from_record(c) for c in completions)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise bad(f"a completion is malformed: {type(error).__name__}: {str(error)[:120]}") from None
    if len(parsed) != len(keys) or not all(c.texts for c in parsed):  # the runner writes one per request
        raise bad(f"{len(parsed)} responses for {len(keys)} requests, each with at least one text expected")
    parts = row.get("reasoning") or []
    if not isinstance(parts, list) or len(parts) > MAX_LIST * MAX_LIST:
        raise bad("'reasoning' must be a list of thinking/answer splits")
    try:
        split = tuple(ReasonedText.from_record(part) for part in parts)
    except ValueError as error:
        raise bad(f"a thinking/answer split is malformed: {str(error)[:120]}") from None
    return SampleRecord(
        id=str(sample_id),
        prompt=str(row.get("prompt", ""))[:MAX_LINE_BYTES],
        target=str(row.get("target", ""))[:MAX_LINE_BYTES],
        request_keys=tuple(keys),
        completions=parsed,
        scores={str(k): float(v) for k, v in scores.items()},
        extracted=dict(extracted),
        reasoning=split,
    )


def iter_records(file: Path, shown: str) -> Iterator[tuple[int, SampleRecord, int]]:
    """(line number, record, line bytes) for every non-blank line, a line at a time."""
    blank = 0
    with file.open("rb") as handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise reject(f"{shown} line {number} is longer than {MAX_LINE_BYTES:,} bytes.")
            if not raw.strip():
                blank += 1
                if blank > MAX_BLANK_LINES:
                    raise reject(f"{shown} holds more than {MAX_BLANK_LINES} blank lines.")
                continue
            try:
                row = parse_json(raw, shown, "samples file", number, REMAKE_HINT)
            except DataError as error:
                raise reject(error.problem) from None
            yield number, _record(row, f"{shown} line {number}"), len(raw)


def _extracted_size(score: Score) -> int:
    return sum(len(v) for v in score.extracted.values() if v is not None)


def same_number(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError, OverflowError):
        return False
    return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= TOLERANCE


def _compare_metrics(where: str, claimed: Mapping[str, Any], recomputed: Mapping[str, Any], how: str) -> None:
    if set(claimed) != set(recomputed):
        raise reject(
            f"{where} claims metrics {sorted(set(claimed) - set(recomputed))[:5]} and lacks "
            f"{sorted(set(recomputed) - set(claimed))[:5]} compared with the metrics {how}."
        )
    for name, record in recomputed.items():
        got = claimed[name]
        if not isinstance(got, dict):
            raise reject(f"{where}: metric {name} is not an object.")
        if not same_number(got.get("value"), record["value"]) or got.get("n") != record["n"]:
            raise reject(
                f"{where}: metric {name} claims {str(got.get('value'))[:40]} (n={str(got.get('n'))[:40]}) but "
                f"{how} it is {record['value']} (n={record['n']})."
            )
        claimed_ci, ci = got.get("ci95"), record["ci95"]
        if (
            not same_number(got.get("stderr"), record["stderr"])
            or not isinstance(claimed_ci, list)
            or len(claimed_ci) != 2
            or not all(same_number(a, b) for a, b in zip(claimed_ci, ci, strict=True))
        ):
            raise reject(
                f"{where}: metric {name} claims stderr {str(got.get('stderr'))[:40]} and 95% CI "
                f"{str(claimed_ci)[:80]} but {how} they are {record['stderr']} and {ci}."
            )


def _check_ids(
    file: Path, shown: str, manifest: Manifest, samples: Mapping[str, Sample], limit: int | None
) -> None:
    """Pass 1: every sample exactly once, nothing else (only ids are kept)."""
    first_line: dict[str, int] = {}
    unexpected: list[str] = []
    for number, record, _ in iter_records(file, shown):
        if record.id in first_line:
            raise reject(
                f"{shown} has a duplicated sample set: sample {record.id[:80]} appears at lines "
                f"{first_line[record.id]} and {number}."
            )
        first_line[record.id] = number
        if record.id not in samples:
            unexpected.append(record.id[:80])
        if len(first_line) > len(samples):
            raise reject(
                f"{shown} has more records than the {len(samples)} samples the suite has for limit {limit} "
                f"(at line {number}); unexpected ids {unexpected[:10]}."
            )
    missing = [s for s in samples if s not in first_line]
    if missing or unexpected or manifest.n_samples != len(samples) or len(first_line) != manifest.n_samples:
        raise reject(
            f"{shown} has an incomplete sample set: {len(first_line)} records, the manifest says "
            f"{manifest.n_samples}, the suite has {len(samples)} for limit {limit}; missing ids "
            f"{missing[:10]}, unexpected ids {unexpected[:10]}."
        )


def _stored_scores(
    file: Path, shown: str, keys: Mapping[str, Mapping[str, tuple[str, ...]]], samples: Mapping[str, Sample]
) -> list[Score]:
    """Pass 2: responses answer the pinned prompts; the stored per-sample scores, in file order."""
    off_prompt: list[str] = []
    edited: list[str] = []
    scores: list[Score] = []
    kept = 0
    for _, record, _ in iter_records(file, shown):
        if record.request_keys not in (keys["chat"][record.id], keys["text"][record.id]):
            off_prompt.append(record.id)
        sample = samples[record.id]
        if (record.prompt, record.target) != (sample.prompt_text, sample.target):  # shown on the site
            edited.append(record.id)
        score = Score(values=record.scores, extracted=record.extracted)
        kept += _extracted_size(score)
        if kept > MAX_EXTRACTED_CHARS:
            raise reject(f"{shown}: the extracted values total more than {MAX_EXTRACTED_CHARS:,} characters.")
        scores.append(score)
    if off_prompt:
        raise reject(
            f"{shown}: the responses of samples {off_prompt[:10]} were not generated from the pinned "
            "prompts and generation settings (request keys differ)."
        )
    if edited:
        raise reject(
            f"{shown}: the stored prompt or target of samples {edited[:10]} differ from the suite's."
        )
    return scores


async def _rescored(
    suite: Suite, samples: Mapping[str, Sample], file: Path, shown: str
) -> tuple[list[Score], list[str]]:
    """Pass 3: the suite's scorer over the stored responses, a chunk at a time; (scores, differences)."""
    from harness.reasoning_stats import record_parts
    from harness.suite import score_many

    out: list[Score] = []
    differ: list[str] = []
    kept = 0
    chunk: list[SampleRecord] = []
    size = 0

    async def flush() -> None:
        nonlocal kept
        try:
            new = await score_many(suite, [(samples[r.id], r.completions) for r in chunk])
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as error:
            # The same scorer scored these responses when the run was made: a response it cannot score
            # was put there by hand.
            raise reject(
                f"{shown}: the {suite.name} scorer cannot score the stored responses of samples "
                f"{[r.id for r in chunk][:10]} ({type(error).__name__}: {str(error)[:120]})."
            ) from None
        for old, score in zip(chunk, new, strict=True):
            changed = [
                f"{k}: {old.scores.get(k)} stored, {score.values.get(k)} re-scored"
                for k in sorted(set(old.scores) | set(score.values))
                if not same_number(old.scores.get(k), score.values.get(k))
            ]
            if old.reasoning != record_parts(suite.reasoning, old.completions):
                changed.append(
                    "its stored thinking/answer split is not what the run's reasoning parser makes"
                )
            if changed:
                differ.append(f"{old.id} ({', '.join(changed)})")
            kept += _extracted_size(score)
            if kept > MAX_EXTRACTED_CHARS:
                raise reject(f"{shown}: re-scoring extracted more than {MAX_EXTRACTED_CHARS:,} characters.")
            out.append(Score(values=dict(score.values), extracted=dict(score.extracted)))
        chunk.clear()

    for _, record, line_bytes in iter_records(file, shown):
        chunk.append(record)
        size += line_bytes
        if len(chunk) >= RESCORE_RECORDS or size >= RESCORE_BYTES:
            await flush()
            size = 0
    if chunk:
        await flush()
    return out, differ


def _request_keys(
    suite: Suite, samples: Sequence[Sample], generation: GenerationSettings
) -> dict[str, dict[str, tuple[str, ...]]]:
    """api -> sample id -> the keys of the requests the pinned prompts make (either api is accepted)."""
    return {
        api: {s.id: tuple(r.key() for r in suite.requests(s, generation, api)) for s in samples}
        for api in ("chat", "text")
    }


def verify_run(run: Mapping[str, Any], files: Mapping[str, Path]) -> AcceptedRun:
    """Check one run of a bundle (its bundle.json entry and extracted files) against the registered suite."""
    from harness.suite import SuiteOptions

    base = str(run["path"])
    where = f"run {base}"
    manifest_path = f"{base}/{MANIFEST}"
    manifest = load_manifest(manifest_path, files[manifest_path])
    check_complete(manifest, manifest_path)
    check_bounds(manifest, manifest_path)
    suite, judge = registered_suite(manifest, manifest_path)
    check_suite_version(manifest, suite, manifest_path)
    check_filed_under(base, suite)
    check_pinned_settings(manifest, suite, manifest_path)
    check_settings_hash(manifest, suite, base, manifest_path)
    loaded = load_suite_data(suite, manifest.limit, where)
    check_data_hash(manifest, loaded, suite, manifest_path)
    samples_path = f"{base}/{SAMPLES}"
    samples_file = files[samples_path]
    samples = {s.id: s for s in loaded.samples}
    _check_ids(samples_file, samples_path, manifest, samples, manifest.limit)
    keys = _request_keys(suite, loaded.samples, manifest.generation)
    stored = _stored_scores(samples_file, samples_path, keys, samples)
    metrics_path = f"{base}/{METRICS}"
    metrics_file = load_json(metrics_path, files[metrics_path])
    file_metrics = claimed_metrics(metrics_file, metrics_path)
    check_bundle_claims(file_metrics, run["metrics"], where)
    recomputed = {n: m.to_record() for n, m in _metrics(suite, stored, samples_path).items()}
    _compare_metrics(
        metrics_path, file_metrics, recomputed, "recomputed from the per-sample scores in samples.jsonl"
    )
    del stored
    _check_reasoning_claims(suite, metrics_file, samples_file, samples_path, metrics_path)
    needs_judge = suite.judge is not None and judge != SuiteOptions().judge
    note = f"scored by the model judge '{judge}', which is not run here" if needs_judge else ""
    if not needs_judge:
        rescored, differ = asyncio.run(_rescored(suite, samples, samples_file, samples_path))
        if differ:
            raise reject(
                f"{samples_path}: re-scoring the stored responses with the {suite.name} scorer gives other "
                f"per-sample scores for {len(differ)} sample(s): {'; '.join(differ[:10])}"
                + (" ..." if len(differ) > 10 else "")
                + "."
            )
        again = {n: m.to_record() for n, m in _metrics(suite, rescored, samples_path).items()}
        _compare_metrics(metrics_path, file_metrics, again, "re-scored from the stored responses")
    primary = str(metrics_file.get("primary") or suite.primary_metric)
    value = recomputed.get(primary, {}).get("value")
    return AcceptedRun(
        base, manifest.checkpoint, suite.name, len(samples), primary, value, not needs_judge, note
    )


def _check_reasoning_claims(
    suite: Suite, metrics_file: Mapping[str, Any], samples_file: Path, samples_path: str, metrics_path: str
) -> None:
    """The "ended inside reasoning" share and thinking lengths a bundle shows must be the ones its stored
    responses give under the run's reasoning parser; a run without reasoning claims none."""
    from harness.reasoning_stats import summarize_reasoning

    claimed = metrics_file.get("reasoning")
    if not suite.reasoning.enabled:
        if claimed is not None:
            raise reject(f"{metrics_path} has a reasoning block, but the run was made without --reasoning.")
        return
    records = [record for _, record, _ in iter_records(samples_file, samples_path)]
    summary = summarize_reasoning(suite.reasoning, records)
    computed = json.loads(json.dumps(None if summary is None else summary.to_record()))  # as written
    if claimed != computed:
        raise reject(
            f"{metrics_path}: its reasoning block (ended inside reasoning, thinking lengths) is not what the "
            f"stored responses give under the run's reasoning parser ({suite.reasoning.describe()})."
        )


def _metrics(suite: Suite, scores: Sequence[Score], shown: str) -> dict[str, Any]:
    """The suite's metrics; a per-sample record that lacks what the suite needs is the bundle's fault."""
    try:
        return dict(suite.metrics(scores))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as error:
        raise reject(
            f"{shown}: the per-sample scores do not give the suite's metrics ({type(error).__name__}: "
            f"{str(error)[:120]})."
        ) from None
