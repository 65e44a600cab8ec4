"""Each check `leaderboard.verify.verify_run` makes on one submitted run, on its own.

The good input is one honest GSM8K run (`tests.support.bundles.make_honest`: a real `harness eval` of
replayed responses, 10 samples); each test changes one thing and expects the exact rejection text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from harness.errors import DataError
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, METRICS, SAMPLES
from harness.suite import LoadedData, Suite, SuiteOptions
from harness.types import Sample
from leaderboard import verify
from leaderboard.verify import _check_ids, _compare_metrics, _request_keys, _stored_scores, verify_run
from leaderboard.verify_checks import (
    MAX_LIMIT,
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
from tests.support.bundles import make_honest

LIMIT = 10


@dataclass(frozen=True)
class Run:
    base: str  # runs/<checkpoint>/gsm8k@<version>/<hash>, as in a bundle
    files: dict[str, Path]  # bundle path -> file, as read_bundle extracts them
    manifest: Manifest
    suite: Suite
    loaded: LoadedData
    lines: list[str]  # samples.jsonl
    metrics: dict[str, Any]  # metrics.json's 'metrics'

    @property
    def manifest_path(self) -> str:
        return f"{self.base}/{MANIFEST}"

    @property
    def samples_path(self) -> str:
        return f"{self.base}/{SAMPLES}"

    @property
    def samples(self) -> dict[str, Sample]:
        return {s.id: s for s in self.loaded.samples}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Run:
    honest = make_honest(tmp_path_factory.mktemp("verify_checks"), data_dir, limit=LIMIT)
    folder = honest.run_dir
    base = f"runs/{folder.parent.parent.name}/{folder.parent.name}/{folder.name}"
    files = {f"{base}/{name}": folder / name for name in (MANIFEST, SAMPLES, METRICS)}
    manifest = load_manifest(f"{base}/{MANIFEST}", folder / MANIFEST)
    suite, _ = registered_suite(manifest, f"{base}/{MANIFEST}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_DATA_DIR", str(data_dir))
        loaded = load_suite_data(suite, manifest.limit, f"run {base}")
    lines = (folder / SAMPLES).read_text().splitlines()
    metrics = json.loads((folder / METRICS).read_text())["metrics"]
    return Run(base, files, manifest, suite, loaded, lines, metrics)


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))


def rejection(check: Callable[[], object]) -> str:
    """The problem text of the rejection `check` raises."""
    with pytest.raises(DataError) as caught:
        check()
    return caught.value.problem


def write_lines(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / SAMPLES
    path.write_text("".join(line + "\n" for line in lines))
    return path


def edit_line(line: str, **changes: Any) -> str:
    return json.dumps({**json.loads(line), **changes})


# ------------------------------------------------------------------------------------------- the whole run


def test_the_honest_run_passes_every_check(run: Run) -> None:
    accepted = verify_run({"path": run.base, "metrics": run.metrics}, run.files)
    assert (accepted.path, accepted.suite, accepted.n_samples) == (run.base, "gsm8k", LIMIT)
    assert accepted.checkpoint == run.manifest.checkpoint
    assert accepted.primary == run.suite.primary_metric
    assert accepted.value == run.metrics[accepted.primary]["value"]
    assert (accepted.rescored, accepted.note) == (True, "")


# ---------------------------------------------------------------------------------------------- manifest


def test_load_json_wants_one_json_object(tmp_path: Path) -> None:
    good, listed, broken = tmp_path / "good.json", tmp_path / "list.json", tmp_path / "broken.json"
    good.write_text('{"a": 1}')
    listed.write_text("[1, 2]")
    broken.write_text("{not json")
    assert load_json("runs/x/metrics.json", good) == {"a": 1}
    assert rejection(lambda: load_json("runs/x/metrics.json", listed)) == (
        "Bundle rejected: runs/x/metrics.json is not a JSON object."
    )
    problem = rejection(lambda: load_json("runs/x/metrics.json", broken))
    assert problem.startswith("Bundle rejected: ") and "runs/x/metrics.json" in problem


def test_load_manifest_rejects_a_missing_field(run: Run, tmp_path: Path) -> None:
    record = json.loads(run.files[run.manifest_path].read_text())
    del record["suite"]
    file = tmp_path / MANIFEST
    file.write_text(json.dumps(record))
    assert rejection(lambda: load_manifest(run.manifest_path, file)) == (
        f"Bundle rejected: The manifest {run.manifest_path} is missing or has a malformed field "
        "(KeyError: 'suite')."
    )


@pytest.mark.parametrize(("status", "shown"), [("interrupted", "interrupted"), ("x" * 100, "x" * 40)])
def test_check_complete(run: Run, status: str, shown: str) -> None:
    check_complete(run.manifest, run.manifest_path)
    manifest = replace(run.manifest, status=status)
    assert rejection(lambda: check_complete(manifest, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} says status '{shown}': only complete runs are accepted."
    )


@pytest.mark.parametrize(
    ("limit", "n", "max_tokens"),
    [(0, 1, 16), (MAX_LIMIT + 1, 1, 16), (-5, 1, 16), (10, 0, 16), (10, MAX_LIST + 1, 16), (10, 1, 0)],
)
def test_check_bounds_rejects_what_no_run_has(run: Run, limit: int, n: int, max_tokens: int) -> None:
    generation = replace(run.manifest.generation, n=n, max_tokens=max_tokens)
    manifest = replace(run.manifest, limit=limit, generation=generation)
    assert rejection(lambda: check_bounds(manifest, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} has a limit, n or max_tokens no run can have."
    )


def test_check_bounds_accepts_the_extremes(run: Run) -> None:
    check_bounds(run.manifest, run.manifest_path)
    generation = replace(run.manifest.generation, n=MAX_LIST, max_tokens=1)
    check_bounds(replace(run.manifest, limit=None, generation=generation), run.manifest_path)
    check_bounds(replace(run.manifest, limit=MAX_LIMIT), run.manifest_path)


def test_registered_suite(run: Run) -> None:
    suite, judge = registered_suite(run.manifest, run.manifest_path)
    assert (suite.name, suite.version, judge) == ("gsm8k", run.manifest.suite_version, SuiteOptions().judge)
    unknown = replace(run.manifest, suite="gsm9k" + "k" * 100)
    assert rejection(lambda: registered_suite(unknown, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} names suite '{unknown.suite[:80]}', which is not registered here."
    )
    bad_judge = replace(run.manifest, suite="safety", suite_settings={"judge": "nonsense"})
    assert rejection(lambda: registered_suite(bad_judge, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path}: Unknown judge 'nonsense'."
    )


def test_check_suite_version(run: Run) -> None:
    check_suite_version(run.manifest, run.suite, run.manifest_path)
    older = replace(run.manifest, suite_version="0.9")
    assert rejection(lambda: check_suite_version(older, run.suite, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} has gsm8k version 0.9, but the pinned version is "
        f"{run.suite.version}."
    )


def test_check_filed_under(run: Run) -> None:
    check_filed_under(run.base, run.suite)
    parts = run.base.split("/")
    elsewhere = "/".join([*parts[:2], "ifeval@1.0", parts[3]])
    assert rejection(lambda: check_filed_under(elsewhere, run.suite)) == (
        f"Bundle rejected: run {elsewhere} is filed under 'ifeval@1.0', not 'gsm8k@{run.suite.version}'."
    )


def test_check_pinned_settings(run: Run) -> None:
    check_pinned_settings(run.manifest, run.suite, run.manifest_path)
    settings = dict(run.manifest.suite_settings)
    name = sorted(settings)[0]
    changed = replace(run.manifest, suite_settings={**settings, name: "changed", "extra": 1})
    pinned = json.loads(json.dumps(dict(run.suite.pinned_settings())))
    assert rejection(lambda: check_pinned_settings(changed, run.suite, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} has suite settings that differ from the pinned ones "
        f"(extra: 1 vs pinned None; {name}: 'changed' vs pinned {pinned[name]!r})."
    )


@pytest.mark.parametrize("where", ["manifest", "folder"])
def test_check_settings_hash(run: Run, where: str) -> None:
    check_settings_hash(run.manifest, run.suite, run.base, run.manifest_path)
    parts = run.base.split("/")
    right = run.manifest.settings_hash
    record = str(run.manifest.generation.as_record())
    manifest, base, folder = (
        (replace(run.manifest, settings_hash="0" * 12), run.base, parts[3])
        if where == "manifest"
        else (run.manifest, "/".join([*parts[:3], "0" * 12]), "0" * 12)
    )
    assert rejection(lambda: check_settings_hash(manifest, run.suite, base, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} has settings hash {manifest.settings_hash} (folder {folder}), "
        f"but its suite, version, pinned settings, generation settings ({record}) and limit ({LIMIT}) "
        f"hash to {right}."
    )


def test_check_settings_hash_rejects_settings_no_run_writes(run: Run) -> None:
    odd = replace(run.manifest, generation=replace(run.manifest.generation, stop=({1, 2},)))  # type: ignore[arg-type]
    assert rejection(lambda: check_settings_hash(odd, run.suite, run.base, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} has generation settings that cannot be hashed "
        "(Object of type set is not JSON serializable)."
    )


def test_load_suite_data_blames_this_machine_not_the_bundle(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [s.id for s in run.loaded.samples] == [json.loads(line)["id"] for line in run.lines]
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))  # holds no gsm8k data
    with pytest.raises(DataError) as caught:
        load_suite_data(run.suite, LIMIT, f"run {run.base}")
    assert caught.value.problem.startswith(
        f"Cannot verify run {run.base}: the gsm8k data cannot be loaded here ("
    )
    assert caught.value.fix == (
        "Set HARNESS_DATA_DIR to the upstream data files (or give this machine hub access) and add again."
    )


def test_check_data_hash(run: Run) -> None:
    check_data_hash(run.manifest, run.loaded, run.suite, run.manifest_path)
    other = replace(run.manifest, data_sha256="f" * 64)
    assert rejection(lambda: check_data_hash(other, run.loaded, run.suite, run.manifest_path)) == (
        f"Bundle rejected: {run.manifest_path} was run on data with sha256 {'f' * 12}, but the gsm8k data "
        f"here hashes to {run.loaded.sha256[:12]} ({run.loaded.source})."
    )


# ------------------------------------------------------------------------------------------- samples.jsonl


def test_check_ids_accepts_each_sample_once(run: Run) -> None:
    _check_ids(run.files[run.samples_path], run.samples_path, run.manifest, run.samples, LIMIT)


def test_check_ids_rejects_a_repeated_sample(run: Run, tmp_path: Path) -> None:
    file = write_lines(tmp_path, [*run.lines, run.lines[2]])
    first = json.loads(run.lines[2])["id"]
    assert rejection(lambda: _check_ids(file, "s.jsonl", run.manifest, run.samples, LIMIT)) == (
        f"Bundle rejected: s.jsonl has a duplicated sample set: sample {first} appears at lines 3 and 11."
    )


def test_check_ids_rejects_more_records_than_samples(run: Run, tmp_path: Path) -> None:
    file = write_lines(tmp_path, [*run.lines, edit_line(run.lines[0], id="stranger")])
    assert rejection(lambda: _check_ids(file, "s.jsonl", run.manifest, run.samples, LIMIT)) == (
        f"Bundle rejected: s.jsonl has more records than the {LIMIT} samples the suite has for limit {LIMIT} "
        "(at line 11); unexpected ids ['stranger']."
    )


def test_check_ids_rejects_an_incomplete_sample_set(run: Run, tmp_path: Path) -> None:
    first = json.loads(run.lines[0])["id"]

    def problem(lines: list[str], manifest: Manifest = run.manifest) -> str:
        file = write_lines(tmp_path, lines)
        return rejection(lambda: _check_ids(file, "s.jsonl", manifest, run.samples, LIMIT))

    head = "Bundle rejected: s.jsonl has an incomplete sample set: "
    assert problem(run.lines[1:]) == (
        f"{head}9 records, the manifest says 10, the suite has 10 for limit 10; missing ids ['{first}'], "
        "unexpected ids []."
    )
    assert problem([edit_line(run.lines[0], id="stranger"), *run.lines[1:]]) == (
        f"{head}10 records, the manifest says 10, the suite has 10 for limit 10; missing ids ['{first}'], "
        "unexpected ids ['stranger']."
    )
    assert problem(run.lines, replace(run.manifest, n_samples=9)) == (
        f"{head}10 records, the manifest says 9, the suite has 10 for limit 10; missing ids [], unexpected ids []."
    )


def _stored(run: Run, file: Path) -> list[Any]:
    keys = _request_keys(run.suite, run.loaded.samples, run.manifest.generation)
    return _stored_scores(file, "s.jsonl", keys, run.samples)


def test_stored_scores_are_the_records_scores_in_file_order(run: Run) -> None:
    scores = _stored(run, run.files[run.samples_path])
    assert [s.values for s in scores] == [json.loads(line)["scores"] for line in run.lines]


def test_stored_scores_reject_responses_to_other_prompts(run: Run, tmp_path: Path) -> None:
    first = json.loads(run.lines[0])["id"]
    file = write_lines(tmp_path, [edit_line(run.lines[0], request_keys=["0" * 64]), *run.lines[1:]])
    assert rejection(lambda: _stored(run, file)) == (
        f"Bundle rejected: s.jsonl: the responses of samples ['{first}'] were not generated from the pinned "
        "prompts and generation settings (request keys differ)."
    )


def test_stored_scores_reject_an_edited_prompt_or_target(run: Run, tmp_path: Path) -> None:
    ids = [json.loads(line)["id"] for line in run.lines[:2]]
    lines = [
        edit_line(run.lines[0], prompt="<b>hi</b>"),
        edit_line(run.lines[1], target="42"),
        *run.lines[2:],
    ]
    file = write_lines(tmp_path, lines)
    assert rejection(lambda: _stored(run, file)) == (
        f"Bundle rejected: s.jsonl: the stored prompt or target of samples {ids} differ from the suite's."
    )


def test_stored_scores_bound_the_extracted_values(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "MAX_EXTRACTED_CHARS", 3)
    lines = [edit_line(line, extracted={"answer": "1234"}) for line in run.lines]
    assert rejection(lambda: _stored(run, write_lines(tmp_path, lines))) == (
        "Bundle rejected: s.jsonl: the extracted values total more than 3 characters."
    )


# -------------------------------------------------------------------------------------------- metrics.json


@pytest.mark.parametrize("payload", [{}, {"metrics": [1]}, {"metrics": None}])
def test_claimed_metrics_wants_the_metrics_object(run: Run, payload: dict[str, Any]) -> None:
    assert claimed_metrics({"metrics": run.metrics, "primary": "accuracy"}, "m.json") == run.metrics
    assert rejection(lambda: claimed_metrics(payload, "m.json")) == (
        "Bundle rejected: m.json lacks the object 'metrics'."
    )


def test_check_bundle_claims(run: Run) -> None:
    check_bundle_claims(run.metrics, copy.deepcopy(run.metrics), "run r")
    name = sorted(run.metrics)[0]
    other = copy.deepcopy(run.metrics)
    other[name]["value"] = 1.0 if other[name]["value"] != 1.0 else 0.0
    assert rejection(lambda: check_bundle_claims(run.metrics, other, "run r")) == (
        "Bundle rejected: bundle.json claims other metrics for run r than its metrics.json."
    )


HOW = "recomputed from the per-sample scores in samples.jsonl"


def test_compare_metrics_accepts_agreement_within_tolerance(run: Run) -> None:
    claimed = copy.deepcopy(run.metrics)
    for record in claimed.values():
        if isinstance(record["value"], float):
            record["value"] += 1e-12
    _compare_metrics("m.json", claimed, run.metrics, HOW)


def test_compare_metrics_rejects_another_metric_set(run: Run) -> None:
    name = sorted(run.metrics)[0]
    claimed = {k: v for k, v in run.metrics.items() if k != name} | {"bogus": run.metrics[name]}
    assert rejection(lambda: _compare_metrics("m.json", claimed, run.metrics, HOW)) == (
        f"Bundle rejected: m.json claims metrics ['bogus'] and lacks ['{name}'] compared with the metrics {HOW}."
    )


def test_compare_metrics_rejects_a_metric_that_is_not_an_object(run: Run) -> None:
    name = sorted(run.metrics)[0]
    claimed = {**run.metrics, name: 0.5}
    assert rejection(lambda: _compare_metrics("m.json", claimed, run.metrics, HOW)) == (
        f"Bundle rejected: m.json: metric {name} is not an object."
    )


@pytest.mark.parametrize("change", [{"value": 0.123}, {"value": None}, {"n": 999}])
def test_compare_metrics_rejects_another_value_or_n(run: Run, change: dict[str, Any]) -> None:
    name = sorted(run.metrics)[0]
    true = run.metrics[name]
    shown = {**true, **change}
    claimed = {**run.metrics, name: shown}
    assert rejection(lambda: _compare_metrics("m.json", claimed, run.metrics, HOW)) == (
        f"Bundle rejected: m.json: metric {name} claims {shown['value']} (n={shown['n']}) but {HOW} it is "
        f"{true['value']} (n={true['n']})."
    )


@pytest.mark.parametrize("change", [{"stderr": 0.5}, {"ci95": [0.0, 1.0]}, {"ci95": [0.0]}, {"ci95": "wide"}])
def test_compare_metrics_rejects_another_stderr_or_interval(run: Run, change: dict[str, Any]) -> None:
    name = sorted(run.metrics)[0]
    true = run.metrics[name]
    shown = {**true, **change}
    claimed = {**run.metrics, name: shown}
    assert rejection(lambda: _compare_metrics("m.json", claimed, run.metrics, HOW)) == (
        f"Bundle rejected: m.json: metric {name} claims stderr {shown['stderr']} and 95% CI {shown['ci95']} "
        f"but {HOW} they are {true['stderr']} and {true['ci95']}."
    )
