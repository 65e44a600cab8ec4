"""The checks `leaderboard.verify.verify_run` makes on one run's manifest and metrics.json, one each.

Each check raises `leaderboard.bundle.reject` (a DataError "Bundle rejected: ...") naming the file, or
returns what the later checks need. They trust nothing in the files: every value shown in a message is cut
to a bounded length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from harness.readers import parse_json
from harness.runs.manifest import Manifest
from harness.runs.store import METRICS
from harness.suite import LoadedData, Suite
from leaderboard.bundle import BUNDLE_FILE, REMAKE_HINT, reject

MAX_LIMIT = 10_000_000
MAX_LIST = 1024  # completions (n) and request keys per sample


def load_json(path: str, file: Path) -> dict[str, Any]:
    """A bundle file that must hold one JSON object."""
    try:
        payload = parse_json(file.read_bytes(), path, "file", fix=REMAKE_HINT)
    except DataError as error:
        raise reject(error.problem) from None
    if not isinstance(payload, dict):
        raise reject(f"{path} is not a JSON object.")
    return payload


def load_manifest(manifest_path: str, file: Path) -> Manifest:
    """The manifest, with every field the harness writes."""
    try:
        return Manifest.from_record(load_json(manifest_path, file), Path(manifest_path))
    except DataError as error:
        raise reject(error.problem) from None


def check_complete(manifest: Manifest, manifest_path: str) -> None:
    if manifest.status != "complete":
        raise reject(
            f"{manifest_path} says status '{manifest.status[:40]}': only complete runs are accepted."
        )


def check_bounds(manifest: Manifest, manifest_path: str) -> None:
    """A limit, n and max_tokens some run can have (they size what the later checks build)."""
    limit, gen = manifest.limit, manifest.generation
    if (limit is not None and not 0 < limit <= MAX_LIMIT) or not 0 < gen.n <= MAX_LIST or gen.max_tokens < 1:
        raise reject(f"{manifest_path} has a limit, n or max_tokens no run can have.")


def registered_suite(manifest: Manifest, manifest_path: str) -> tuple[Suite, str]:
    """(the registered suite the manifest names, built with the run's judge; that judge's name)."""
    from harness.suite import SuiteOptions
    from suites import get_suite, suite_names

    if manifest.suite not in suite_names():
        raise reject(f"{manifest_path} names suite '{manifest.suite[:80]}', which is not registered here.")
    try:
        options = SuiteOptions.of_run(manifest.suite_settings, where=manifest_path)
        suite = get_suite(manifest.suite, options)
    except (UsageError, DataError) as error:
        raise reject(f"{manifest_path}: {error.problem}") from None
    return suite, options.judge


def check_suite_version(manifest: Manifest, suite: Suite, manifest_path: str) -> None:
    if manifest.suite_version != suite.version:
        raise reject(
            f"{manifest_path} has {manifest.suite} version {manifest.suite_version[:40]}, but the pinned "
            f"version is {suite.version}."
        )


def check_filed_under(base: str, suite: Suite) -> None:
    """The run folder (runs/<checkpoint>/<suite>@<version>/<hash>) is the suite's."""
    expected_dir = f"{suite.name}@{suite.version}"
    if base.split("/")[2] != expected_dir:
        raise reject(f"run {base} is filed under '{base.split('/')[2]}', not '{expected_dir}'.")


def check_pinned_settings(manifest: Manifest, suite: Suite, manifest_path: str) -> None:
    pinned = json.loads(json.dumps(dict(suite.pinned_settings())))  # tuples -> lists, as in the manifest
    if dict(manifest.suite_settings) != pinned:
        changed = sorted(
            str(k)
            for k in set(pinned) | set(manifest.suite_settings)
            if pinned.get(k) != manifest.suite_settings.get(k)
        )
        detail = "; ".join(
            f"{k[:80]}: {repr(manifest.suite_settings.get(k))[:80]} vs pinned {pinned.get(k)!r}"
            for k in changed[:10]
        )
        raise reject(
            f"{manifest_path} has suite settings that differ from the pinned ones ({detail[:1000]})."
        )


def check_settings_hash(manifest: Manifest, suite: Suite, base: str, manifest_path: str) -> None:
    """The manifest's hash and the run folder's name are the hash of the run's settings."""
    from harness.runner import settings_hash

    try:
        expected_hash = settings_hash(suite, manifest.generation, manifest.limit)
    except (TypeError, ValueError) as error:  # settings no run writes (a stop list of objects, say)
        raise reject(f"{manifest_path} has generation settings that cannot be hashed ({error}).") from None
    if manifest.settings_hash != expected_hash or base.split("/")[3] != expected_hash:
        raise reject(
            f"{manifest_path} has settings hash {manifest.settings_hash[:64]} (folder {base.split('/')[3]}), "
            f"but its suite, version, pinned settings, generation settings "
            f"({str(manifest.generation.as_record())[:300]}) and limit ({manifest.limit}) hash to {expected_hash}."
        )


def load_suite_data(suite: Suite, limit: int | None, where: str) -> LoadedData:
    """The suite's samples here; data that cannot be loaded is this machine's problem, not the bundle's."""
    from harness.data import resolve_data_source

    try:
        return suite.load(resolve_data_source(None), limit)
    except DataError as error:
        raise DataError(
            f"Cannot verify {where}: the {suite.name} data cannot be loaded here ({error.problem})",
            "Set HARNESS_DATA_DIR to the upstream data files (or give this machine hub access) and add again.",
        ) from None


def check_data_hash(manifest: Manifest, loaded: LoadedData, suite: Suite, manifest_path: str) -> None:
    if loaded.sha256 != manifest.data_sha256:
        raise reject(
            f"{manifest_path} was run on data with sha256 {manifest.data_sha256[:12]}, but the {suite.name} data "
            f"here hashes to {loaded.sha256[:12]} ({loaded.source})."
        )


def claimed_metrics(metrics_file: Mapping[str, Any], metrics_path: str) -> dict[str, Any]:
    """metrics.json's 'metrics' object."""
    file_metrics = metrics_file.get("metrics")
    if not isinstance(file_metrics, dict):
        raise reject(f"{metrics_path} lacks the object 'metrics'.")
    return file_metrics


def check_bundle_claims(file_metrics: Mapping[str, Any], bundle_metrics: Any, where: str) -> None:
    """bundle.json claims for the run the metrics its metrics.json holds."""
    if file_metrics != bundle_metrics:
        raise reject(f"{BUNDLE_FILE} claims other metrics for {where} than its {METRICS}.")
