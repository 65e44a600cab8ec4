"""Class submissions: `harness leaderboard submit` writes a bundle, `harness leaderboard add` verifies it.

A bundle is a zip holding, for each run, exactly `runs/<checkpoint>/<suite>@<version>/<hash>/` with
manifest.json, samples.jsonl and metrics.json, plus `bundle.json` (team, harness version, the sha256 of
every file, the metrics each run claims). Nothing else goes in: no response cache, no environment.

`add` trusts nothing in the bundle. It rejects, naming the file, run, metric or sample ids:
- a malformed zip or bundle.json, a path that is absolute or climbs out (zip-slip), a duplicated entry;
- a file whose sha256 differs from bundle.json, a file missing from or not listed in bundle.json;
- a run that is not complete, a suite that is not registered, a suite version, pinned settings or
  settings hash other than those of the registered suite, data other than the suite's data;
- a sample set that is not exactly the suite's samples for the run's --limit (missing, extra, repeated);
- responses that do not answer the pinned prompts (request keys), per-sample scores that the suite's own
  scorer does not reproduce from the stored responses (skipped, and said, for model judges), and claimed
  metrics that differ from the metrics recomputed from the per-sample records (tolerance 1e-9).
Accepted runs land in `<site-data>/<team>/` (a runs folder with submission.json), replacing that team's
previous submission: the new folder is built next to it and swapped in by rename.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from harness.manifest import Manifest, now_iso
from harness.store import MANIFEST, METRICS, SAMPLES, SampleRecord
from harness.suite import Suite
from leaderboard.bundle import (
    BUNDLE_FILE,
    SUBMISSION_FILE,
    TOLERANCE,
    read_bundle,
    reject,
    write_bundle,
)

__all__ = ["AddResult", "accepted_roots", "add_bundle", "write_bundle"]

# ------------------------------------------------------------------------------------------------- add


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


@dataclass(frozen=True)
class AddResult:
    team: str
    folder: Path
    bundle_sha256: str
    runs: tuple[AcceptedRun, ...]
    replaced: bool

    def describe(self) -> str:
        head = (
            f"accepted bundle {self.bundle_sha256[:12]} from team {self.team}: {len(self.runs)} run(s) "
            f"in {self.folder}" + (" (replaces the team's previous submission)" if self.replaced else "")
        )
        lines = [head]
        for run in self.runs:
            value = "n/a" if run.value is None else f"{run.value:.4f}"
            check = "re-scored from responses" if run.rescored else f"NOT re-scored: {run.note}"
            lines.append(
                f"  {run.checkpoint}  {run.suite}  {run.primary}={value}  n={run.n_samples}  ({check})"
            )
        return "\n".join(lines)


def _parse_records(path: str, data: bytes) -> list[SampleRecord]:
    records: list[SampleRecord] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = SampleRecord.from_line(line)
        except (ValueError, KeyError, TypeError) as error:
            raise reject(
                f"{path} line {number} is not a sample record ({type(error).__name__}: {error})."
            ) from None
        if record.id in first_line:
            raise reject(
                f"{path} has a duplicated sample set: sample {record.id} appears at lines "
                f"{first_line[record.id]} and {number}."
            )
        first_line[record.id] = number
        records.append(record)
    return records


def _load_json(path: str, data: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as error:
        raise reject(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(payload, dict):
        raise reject(f"{path} is not a JSON object.")
    return payload


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
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
        if not _same(got.get("value"), record["value"]) or got.get("n") != record["n"]:
            raise reject(
                f"{where}: metric {name} claims {got.get('value')} (n={got.get('n')}) but {how} it is "
                f"{record['value']} (n={record['n']})."
            )
        claimed_ci, ci = got.get("ci95"), record["ci95"]
        if (
            not _same(got.get("stderr"), record["stderr"])
            or not isinstance(claimed_ci, list)
            or len(claimed_ci) != 2
            or not all(_same(a, b) for a, b in zip(claimed_ci, ci, strict=True))
        ):
            raise reject(
                f"{where}: metric {name} claims stderr {got.get('stderr')} and 95% CI {claimed_ci} but {how} "
                f"they are {record['stderr']} and {ci}."
            )


async def _rescore(
    suite: Suite, samples: Mapping[str, Any], records: Sequence[SampleRecord]
) -> list[SampleRecord]:
    from harness.suite import score_many

    scores = await score_many(suite, [(samples[r.id], r.completions) for r in records])
    return [
        replace(r, scores=dict(score.values), extracted=dict(score.extracted))
        for r, score in zip(records, scores, strict=True)
    ]


def _verify_run(run: Mapping[str, Any], contents: Mapping[str, bytes]) -> AcceptedRun:
    from harness.data import resolve_data_source
    from harness.runner import metrics_of, settings_hash
    from harness.suite import SuiteOptions
    from suites import get_suite, suite_names

    base = str(run["path"])
    where = f"run {base}"
    manifest_path = f"{base}/{MANIFEST}"
    try:
        manifest = Manifest.from_record(
            _load_json(manifest_path, contents[manifest_path]), Path(manifest_path)
        )
    except DataError as error:
        raise reject(error.problem) from None
    if manifest.status != "complete":
        raise reject(f"{manifest_path} says status '{manifest.status}': only complete runs are accepted.")
    if manifest.suite not in suite_names():
        raise reject(f"{manifest_path} names suite '{manifest.suite}', which is not registered here.")
    judge = str(manifest.suite_settings.get("judge", SuiteOptions().judge))
    try:
        suite = get_suite(manifest.suite, SuiteOptions(judge=judge))
    except UsageError as error:
        raise reject(f"{manifest_path}: {error.problem}") from None
    if manifest.suite_version != suite.version:
        raise reject(
            f"{manifest_path} has {manifest.suite} version {manifest.suite_version}, but the pinned version is "
            f"{suite.version}."
        )
    expected_dir = f"{suite.name}@{suite.version}"
    if base.split("/")[2] != expected_dir:
        raise reject(f"{where} is filed under '{base.split('/')[2]}', not '{expected_dir}'.")
    pinned = json.loads(json.dumps(dict(suite.pinned_settings())))  # tuples -> lists, as in the manifest
    if dict(manifest.suite_settings) != pinned:
        changed = sorted(
            k
            for k in set(pinned) | set(manifest.suite_settings)
            if pinned.get(k) != manifest.suite_settings.get(k)
        )
        detail = "; ".join(
            f"{k}: {manifest.suite_settings.get(k)!r} vs pinned {pinned.get(k)!r}" for k in changed
        )
        raise reject(f"{manifest_path} has suite settings that differ from the pinned ones ({detail}).")
    expected_hash = settings_hash(suite, manifest.generation, manifest.limit)
    if manifest.settings_hash != expected_hash or base.split("/")[3] != expected_hash:
        raise reject(
            f"{manifest_path} has settings hash {manifest.settings_hash} (folder {base.split('/')[3]}), but its "
            f"suite, version, pinned settings, generation settings ({manifest.generation.as_record()}) and "
            f"limit ({manifest.limit}) hash to {expected_hash}."
        )
    try:
        loaded = suite.load(resolve_data_source(None), manifest.limit)
    except DataError as error:
        raise DataError(
            f"Cannot verify {where}: the {suite.name} data cannot be loaded here ({error.problem})",
            "Set HARNESS_DATA_DIR to the upstream data files (or give this machine hub access) and add again.",
        ) from None
    if loaded.sha256 != manifest.data_sha256:
        raise reject(
            f"{manifest_path} was run on data with sha256 {manifest.data_sha256[:12]}, but the {suite.name} data "
            f"here hashes to {loaded.sha256[:12]} ({loaded.source})."
        )
    records = _parse_records(f"{base}/{SAMPLES}", contents[f"{base}/{SAMPLES}"])
    samples = {s.id: s for s in loaded.samples}
    have = {r.id for r in records}
    missing = [s.id for s in loaded.samples if s.id not in have]
    extra = sorted(have - set(samples))
    if missing or extra or manifest.n_samples != len(samples) or len(records) != manifest.n_samples:
        raise reject(
            f"{base}/{SAMPLES} has an incomplete sample set: {len(records)} records, the manifest says "
            f"{manifest.n_samples}, the suite has {len(samples)} for limit {manifest.limit}; missing ids "
            f"{missing[:10]}, unexpected ids {extra[:10]}."
        )
    keys = {
        api: {
            s.id: tuple(r.key() for r in suite.requests(s, manifest.generation, api)) for s in loaded.samples
        }
        for api in ("chat", "text")
    }
    off_prompt = [r.id for r in records if r.request_keys not in (keys["chat"][r.id], keys["text"][r.id])]
    if off_prompt:
        raise reject(
            f"{base}/{SAMPLES}: the responses of samples {off_prompt[:10]} were not generated from the pinned "
            "prompts and generation settings (request keys differ)."
        )
    metrics_path = f"{base}/{METRICS}"
    metrics_file = _load_json(metrics_path, contents[metrics_path])
    file_metrics = metrics_file.get("metrics")
    if not isinstance(file_metrics, dict):
        raise reject(f"{metrics_path} lacks the object 'metrics'.")
    if file_metrics != run["metrics"]:
        raise reject(f"{BUNDLE_FILE} claims other metrics for {where} than its {METRICS}.")
    recomputed = {n: m.to_record() for n, m in metrics_of(suite, records).items()}
    _compare_metrics(
        metrics_path, file_metrics, recomputed, "recomputed from the per-sample scores in samples.jsonl"
    )
    needs_judge = hasattr(suite, "async_judge") and judge != SuiteOptions().judge
    note = f"scored by the model judge '{judge}', which is not run here" if needs_judge else ""
    if not needs_judge:
        rescored = asyncio.run(_rescore(suite, samples, records))
        differ = []
        for old, new in zip(records, rescored, strict=True):
            changed = [
                f"{k}: {old.scores.get(k)} stored, {new.scores.get(k)} re-scored"
                for k in sorted(set(old.scores) | set(new.scores))
                if not _same(old.scores.get(k), new.scores.get(k))
            ]
            if changed:
                differ.append(f"{old.id} ({', '.join(changed)})")
        if differ:
            raise reject(
                f"{base}/{SAMPLES}: re-scoring the stored responses with the {suite.name} scorer gives other "
                f"per-sample scores for {len(differ)} sample(s): {'; '.join(differ[:10])}"
                + (" ..." if len(differ) > 10 else "")
                + "."
            )
        again = {n: m.to_record() for n, m in metrics_of(suite, rescored).items()}
        _compare_metrics(metrics_path, file_metrics, again, "re-scored from the stored responses")
    primary = str(metrics_file.get("primary") or suite.primary_metric)
    value = recomputed.get(primary, {}).get("value")
    return AcceptedRun(
        base, manifest.checkpoint, suite.name, len(records), primary, value, not needs_judge, note
    )


def add_bundle(bundle: Path, site_data: Path) -> AddResult:
    meta, contents, bundle_sha = read_bundle(bundle)
    runs = tuple(_verify_run(run, contents) for run in meta["runs"])
    team = str(meta["team"])
    site_data.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=f".incoming-{team}-", dir=site_data))
    try:
        for path, data in contents.items():
            target = incoming.joinpath(*path.split("/")[1:])  # runs/<ckpt>/... -> <team>/<ckpt>/...
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (incoming / SUBMISSION_FILE).write_text(
            json.dumps({"team": team, "bundle_sha256": bundle_sha, "accepted_at": now_iso(),
                        "harness_version": meta["harness_version"], "created_at": meta["created_at"]}, indent=2)
            + "\n"
        )  # fmt: skip
        (incoming / BUNDLE_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        final = site_data / team
        replaced = final.exists()
        old = site_data / f".replaced-{team}-{os.getpid()}"
        if replaced:
            os.replace(
                final, old
            )  # a folder cannot be renamed over a non-empty one: move the old aside first
        try:
            os.replace(incoming, final)
        except OSError:
            if replaced:
                os.replace(old, final)
            raise
        if replaced:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    return AddResult(team, final, bundle_sha, runs, replaced)


def accepted_roots(site_data: Path) -> list[Path]:
    """The accepted teams' runs folders (hidden work folders of an add in progress are skipped)."""
    if not site_data.is_dir():
        return []
    return sorted(
        p
        for p in site_data.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / SUBMISSION_FILE).is_file()
    )
