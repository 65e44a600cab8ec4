"""Class submissions through the real CLI: `harness leaderboard submit` -> `harness leaderboard add`.

Runs are real `harness eval` runs of replayed responses (gsm8k and alice-synth, 10 samples each, a third of
them wrong). Each tampering test edits a copy of one honest bundle and checks the exit code and the
explanation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.errors import ExitCode
from harness.runner import metrics_of
from harness.runs.store import SampleRecord
from harness.types import Completion
from leaderboard.submissions import accepted_roots
from suites import get_suite
from tests.conftest import cli_env, eval_json, harness

LIMIT = 10
SECRET = "sk-test-do-not-leak-7f3a9c"  # an API key in the submitter's environment


@dataclass(frozen=True)
class Runs:
    root: Path  # runs folder with one gsm8k and one alice-synth run
    gsm8k: Path  # the gsm8k run folder
    bundle: Path  # honest bundle of both runs, team "owls"


def _replay(path: Path, suite_name: str, data_dir: Path) -> Path:
    suite = get_suite(suite_name)
    samples = suite.load(DataSource(data_dir), LIMIT).samples
    lines = [
        json.dumps({"sample_id": s.id, "text": "I do not know." if i % 3 == 0 else suite.gold_response(s)})
        for i, s in enumerate(samples)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Runs:
    tmp = tmp_path_factory.mktemp("submissions")
    root = tmp / "runs"
    results = {}
    for name in ("gsm8k", "alice-synth"):
        replay = _replay(tmp / f"{name}.jsonl", name, data_dir)
        results[name] = eval_json(
            "--checkpoint", f"replay:{replay}", "--suite", name, "--limit", str(LIMIT), "--runs", str(root)
        )
    bundle = tmp / "owls.zip"
    proc = harness(
        "leaderboard", "submit", str(root), "--team", "owls", "--out", str(bundle), "--allow-replay",
        env=cli_env(OPENAI_API_KEY=SECRET, HARNESS_RUNS_DIR=str(root)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {bundle}" in proc.stdout
    return Runs(root, results["gsm8k"].run_dir, bundle)


def _entries(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _tamper(
    source: Path, target: Path, edit: Callable[[dict[str, bytes]], object], restamp: bool = True
) -> Path:
    """A copy of the bundle with `edit` applied to its entries; `restamp` makes bundle.json's sha256s
    match the edited files (what a careful cheater would do)."""
    entries = _entries(source)
    edit(entries)
    if restamp and "bundle.json" in entries:
        meta = json.loads(entries["bundle.json"])
        for entry in meta["files"]:
            if entry["path"] in entries:
                entry["sha256"] = hashlib.sha256(entries[entry["path"]]).hexdigest()
        entries["bundle.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def _gsm8k(entries: dict[str, bytes], name: str) -> str:
    (path,) = [p for p in entries if "/gsm8k@" in p and p.endswith(name)]
    return path


def _records(entries: dict[str, bytes]) -> list[SampleRecord]:
    text = entries[_gsm8k(entries, "samples.jsonl")].decode()
    return [SampleRecord.from_line(line) for line in text.splitlines()]


def _set_records(entries: dict[str, bytes], records: list[SampleRecord]) -> None:
    entries[_gsm8k(entries, "samples.jsonl")] = "".join(r.to_line() for r in records).encode()


def _set_metrics(entries: dict[str, bytes], metrics: dict[str, object]) -> None:
    """Write metrics into metrics.json and bundle.json's claims alike."""
    path = _gsm8k(entries, "metrics.json")
    payload = json.loads(entries[path])
    payload["metrics"] = metrics
    entries[path] = json.dumps(payload).encode()
    meta = json.loads(entries["bundle.json"])
    for run in meta["runs"]:
        if run["suite"] == "gsm8k":
            run["metrics"] = metrics
    entries["bundle.json"] = json.dumps(meta).encode()


def _edit_manifest(entries: dict[str, bytes], change: Callable[[dict[str, object]], None]) -> None:
    path = _gsm8k(entries, "manifest.json")
    manifest = json.loads(entries[path])
    change(manifest)
    entries[path] = json.dumps(manifest).encode()


def _add(bundle: Path, site: Path, **env: str) -> tuple[int, str, str]:
    proc = harness(
        "leaderboard", "add", str(bundle), "--site-data", str(site), "--allow-replay", env=cli_env(**env)
    )
    return proc.returncode, proc.stdout, proc.stderr


def _rejected(bundle: Path, site: Path, *expected: str) -> str:
    code, out, err = _add(bundle, site)
    assert code == ExitCode.DATA, (code, out, err)
    assert "Bundle rejected:" in err
    for text in expected:
        assert text in err, err
    assert not site.exists() or not list(site.iterdir())  # nothing accepted, no work folder left
    return err


def test_submit_then_add_accepts_the_bundle(runs: Runs, tmp_path: Path) -> None:
    entries = _entries(runs.bundle)
    run_files = sorted(n for n in entries if n != "bundle.json")
    assert len(run_files) == 6 and all(n.startswith("runs/") for n in run_files)
    assert {n.rsplit("/", 1)[1] for n in run_files} == {"manifest.json", "samples.jsonl", "metrics.json"}
    assert all(SECRET.encode() not in data for data in entries.values())
    meta = json.loads(entries["bundle.json"])
    assert meta["team"] == "owls" and meta["schema_version"] == 1 and meta["harness_version"]
    assert {f["path"]: f["sha256"] for f in meta["files"]} == {
        n: hashlib.sha256(entries[n]).hexdigest() for n in run_files
    }
    gsm8k = next(r for r in meta["runs"] if r["suite"] == "gsm8k")
    assert gsm8k["metrics"]["exact_match_flex"]["value"] == pytest.approx(0.6)

    site = tmp_path / "site-data"
    code, out, err = _add(runs.bundle, site)
    assert code == 0, err
    assert "accepted bundle" in out and "team owls: 2 run(s)" in out
    assert "exact_match_flex=0.6000  n=10  (re-scored from responses)" in out
    assert accepted_roots(site) == [site / "owls"]
    submission = json.loads((site / "owls" / "submission.json").read_text())
    assert submission["team"] == "owls"
    assert submission["bundle_sha256"] == hashlib.sha256(runs.bundle.read_bytes()).hexdigest()
    assert submission["accepted_at"]
    copied = sorted(p.relative_to(site / "owls").as_posix() for p in (site / "owls").rglob("*.json*"))
    assert [f"runs/{p}" for p in copied if p.count("/") == 3] == run_files
    assert [p.name for p in site.iterdir() if p.name != ".lock"] == ["owls"]  # no work folders left


def test_submit_refuses_an_incomplete_run(runs: Runs, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs.gsm8k, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    proc = harness("leaderboard", "submit", str(copy), "--team", "owls", "--out", str(tmp_path / "b.zip"))
    assert proc.returncode == ExitCode.USAGE
    assert f"The run {copy} is not complete (status 'interrupted')" in proc.stderr
    assert not (tmp_path / "b.zip").exists()


def test_rejects_an_edited_metric_value(runs: Runs, tmp_path: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        metrics = json.loads(entries[_gsm8k(entries, "metrics.json")])["metrics"]
        metrics["exact_match_flex"]["value"] = 0.9
        _set_metrics(entries, metrics)

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", edit)
    _rejected(
        bundle, tmp_path / "site", "metrics.json: metric exact_match_flex claims 0.9 (n=10) but recomputed "
        "from the per-sample scores in samples.jsonl it is 0.6 (n=10)",
    )  # fmt: skip


def test_rejects_a_flipped_sample_score_that_no_longer_matches_the_metrics(
    runs: Runs, tmp_path: Path
) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        records = _records(entries)
        records[0] = SampleRecord(
            **{**vars(records[0]), "scores": {"exact_match_flex": 1.0, "exact_match_strict": 0.0}}
        )
        _set_records(entries, records)

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", edit)
    _rejected(
        bundle, tmp_path / "site", "metric exact_match_flex claims 0.6 (n=10) but recomputed", "it is 0.7"
    )


def test_rejects_a_flipped_sample_score_with_consistent_metrics_by_rescoring(
    runs: Runs, tmp_path: Path
) -> None:
    suite = get_suite("gsm8k")

    def edit(entries: dict[str, bytes]) -> None:
        records = _records(entries)
        records[0] = SampleRecord(
            **{**vars(records[0]), "scores": {"exact_match_flex": 1.0, "exact_match_strict": 1.0}}
        )
        _set_records(entries, records)
        _set_metrics(entries, {n: m.to_record() for n, m in metrics_of(suite, records).items()})

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", edit)
    _rejected(
        bundle, tmp_path / "site", "re-scoring the stored responses with the gsm8k scorer gives other per-sample "
        "scores for 1 sample(s): gsm8k-test-0000 (exact_match_flex: 1.0 stored, 0.0 re-scored, "
        "exact_match_strict: 1.0 stored, 0.0 re-scored)",
    )  # fmt: skip


def test_rejects_an_altered_file_with_a_stale_sha256(runs: Runs, tmp_path: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        path = _gsm8k(entries, "samples.jsonl")
        entries[path] = entries[path].replace(b"I do not know.", b"I do know.")

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", edit, restamp=False)
    err = _rejected(bundle, tmp_path / "site", "/samples.jsonl was altered: its sha256 is")
    assert "bundle.json says" in err


def test_rejects_a_removed_sample_line(runs: Runs, tmp_path: Path) -> None:
    bundle = _tamper(
        runs.bundle, tmp_path / "b.zip", lambda e: _set_records(e, _records(e)[:3] + _records(e)[4:])
    )
    _rejected(
        bundle, tmp_path / "site", "samples.jsonl has an incomplete sample set: 9 records, the manifest says 10, "
        "the suite has 10 for limit 10; missing ids ['gsm8k-test-0003']",
    )  # fmt: skip


def test_rejects_a_duplicated_sample_line(runs: Runs, tmp_path: Path) -> None:
    bundle = _tamper(
        runs.bundle, tmp_path / "b.zip", lambda e: _set_records(e, [*_records(e), _records(e)[2]])
    )
    _rejected(
        bundle, tmp_path / "site", "duplicated sample set: sample gsm8k-test-0002 appears at lines 3 and 11"
    )


def test_rejects_a_changed_suite_version(runs: Runs, tmp_path: Path) -> None:
    bundle = _tamper(
        runs.bundle, tmp_path / "b.zip", lambda e: _edit_manifest(e, lambda m: m.update(suite_version="0.9"))
    )
    _rejected(bundle, tmp_path / "site", "has gsm8k version 0.9, but the pinned version is 1.0")


def test_rejects_changed_pinned_settings(runs: Runs, tmp_path: Path) -> None:
    def change(manifest: dict[str, object]) -> None:
        manifest["suite_settings"] = {**manifest["suite_settings"], "num_fewshot": 4}  # type: ignore[dict-item]

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", lambda e: _edit_manifest(e, change))
    _rejected(
        bundle,
        tmp_path / "site",
        "suite settings that differ from the pinned ones (num_fewshot: 4 vs pinned 8)",
    )


def test_rejects_generation_settings_that_do_not_hash_to_the_run(runs: Runs, tmp_path: Path) -> None:
    def change(manifest: dict[str, object]) -> None:
        manifest["generation"] = {**manifest["generation"], "max_tokens": 2048}  # type: ignore[dict-item]

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", lambda e: _edit_manifest(e, change))
    _rejected(bundle, tmp_path / "site", "has settings hash", "'max_tokens': 2048", "hash to")


def test_rejects_responses_not_generated_from_the_pinned_prompts(runs: Runs, tmp_path: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        records = _records(entries)
        records[5] = SampleRecord(**{**vars(records[5]), "request_keys": ("0" * 64,)})
        _set_records(entries, records)

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", edit)
    _rejected(
        bundle, tmp_path / "site", "the responses of samples ['gsm8k-test-0005'] were not generated from"
    )


@pytest.mark.parametrize("name", ["../../escaped.txt", "/tmp/escaped.txt", "runs/../../escaped.txt"])
def test_rejects_zip_slip_paths(runs: Runs, tmp_path: Path, name: str) -> None:
    site = tmp_path / "deep" / "site"
    bundle = _tamper(runs.bundle, tmp_path / "b.zip", lambda e: e.update({name: b"pwned"}))
    _rejected(bundle, site, f"entries ['{name}'] have absolute paths or climb out of the bundle (zip-slip)")
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/tmp/escaped.txt").exists()


def test_rejects_a_bundle_json_listing_an_escaping_path(runs: Runs, tmp_path: Path) -> None:
    def edit(entries: dict[str, bytes]) -> None:
        meta = json.loads(entries["bundle.json"])
        meta["files"][0]["path"] = "runs/../../x/manifest.json"
        entries["bundle.json"] = json.dumps(meta).encode()

    bundle = _tamper(runs.bundle, tmp_path / "b.zip", edit, restamp=False)
    _rejected(
        bundle,
        tmp_path / "site",
        "lists 'runs/../../x/manifest.json', an absolute path or one that climbs out",
    )


def test_rejects_a_missing_bundle_json(runs: Runs, tmp_path: Path) -> None:
    bundle = _tamper(runs.bundle, tmp_path / "b.zip", lambda e: e.pop("bundle.json"))
    _rejected(bundle, tmp_path / "site", "bundle.json is missing from")


def test_rejects_an_unknown_schema_version_and_an_unlisted_file(runs: Runs, tmp_path: Path) -> None:
    def version(entries: dict[str, bytes]) -> None:
        meta = json.loads(entries["bundle.json"])
        meta["schema_version"] = 7
        entries["bundle.json"] = json.dumps(meta).encode()

    bundle = _tamper(runs.bundle, tmp_path / "v.zip", version)
    _rejected(bundle, tmp_path / "site", "bundle.json has schema_version 7; this harness reads version 1")
    extra = _tamper(
        runs.bundle, tmp_path / "e.zip", lambda e: e.update({"runs/.cache/responses.sqlite": b"x"})
    )
    _rejected(
        extra, tmp_path / "site", "files ['runs/.cache/responses.sqlite'] are in the zip but not listed"
    )
    not_zip = tmp_path / "n.zip"
    not_zip.write_text("hello")
    _rejected(not_zip, tmp_path / "site", "is not a zip file")


def test_rejects_when_the_suite_data_cannot_be_loaded(runs: Runs, tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    code, _, err = _add(runs.bundle, tmp_path / "site", HARNESS_DATA_DIR=str(empty))
    assert code == ExitCode.DATA
    assert "Cannot verify run runs/" in err and "data cannot be loaded here" in err
    assert "Set HARNESS_DATA_DIR" in err


def test_resubmission_replaces_the_teams_earlier_one(runs: Runs, tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert _add(runs.bundle, site)[0] == 0
    second = tmp_path / "owls-2.zip"
    proc = harness(
        "leaderboard", "submit", str(runs.gsm8k), "--team", "owls", "--out", str(second), "--allow-replay"
    )
    assert proc.returncode == 0, proc.stderr
    code, out, err = _add(second, site)
    assert code == 0, err
    assert "team owls: 1 run(s)" in out and "replaces the team's previous submission" in out
    assert accepted_roots(site) == [site / "owls"]
    manifests = list((site / "owls").rglob("manifest.json"))
    assert [m.parent.parent.name for m in manifests] == ["gsm8k@1.0"]  # the alice-synth run is gone
    submission = json.loads((site / "owls" / "submission.json").read_text())
    assert submission["bundle_sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    assert sorted(p.name for p in site.iterdir() if p.name != ".lock") == ["owls"]


def test_mbpp_is_rescored_in_the_sandbox_and_a_model_judged_run_says_it_was_not(
    tmp_path: Path, data_dir: Path
) -> None:
    """MBPP responses are re-run in the sandbox; a safety run judged by WildGuard (here a replayed
    stand-in for the classifier: fixed WildGuard-format verdicts) is accepted on its recomputed metrics
    and the result says it was not re-scored."""
    root = tmp_path / "runs"
    mbpp_replay = tmp_path / "mbpp.jsonl"
    mbpp = get_suite("mbpp")
    tasks = mbpp.load(DataSource(data_dir), 4).samples
    mbpp_replay.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": mbpp.gold_response(s)}) + "\n" for s in tasks)
    )
    eval_json("--checkpoint", f"replay:{mbpp_replay}", "--suite", "mbpp", "--limit", "4", "--runs", str(root))
    safety_replay = _replay(tmp_path / "safety.jsonl", "safety", data_dir)
    verdict = "Harmful request: yes\nResponse refusal: yes\nHarmful response: no"
    judge = tmp_path / "wildguard-stand-in.jsonl"
    judge.write_text(
        "".join(
            json.dumps({"sample_id": f"wildguard:{json.loads(line)['sample_id']}", "text": verdict}) + "\n"
            for line in safety_replay.read_text().splitlines()
        )
    )
    eval_json(
        "--checkpoint", f"replay:{safety_replay}", "--suite", "safety", "--limit", str(LIMIT),
        "--judge", "wildguard", "--judge-checkpoint", f"replay:{judge}", "--runs", str(root),
    )  # fmt: skip
    bundle = tmp_path / "b.zip"
    assert (
        harness(
            "leaderboard", "submit", str(root), "--team", "herons", "--out", str(bundle), "--allow-replay"
        ).returncode
        == 0
    )
    code, out, err = _add(bundle, tmp_path / "site")
    assert code == 0, err
    assert "mbpp  pass@1=1.0000  n=4  (re-scored from responses)" in out
    assert "NOT re-scored: scored by the model judge 'wildguard', which is not run here" in out

    def fail_first(entries: dict[str, bytes]) -> None:
        (path,) = [p for p in entries if "/mbpp@" in p and p.endswith("samples.jsonl")]
        records = [SampleRecord.from_line(line) for line in entries[path].decode().splitlines()]
        broken = Completion(texts=("def nothing():\n    pass\n",), finish_reasons=("stop",))
        at = next(i for i, r in enumerate(records) if r.id == tasks[0].id)  # lines are in scoring order
        records[at] = replace(records[at], completions=(broken,))  # still scored 1.0: only re-scoring sees it
        entries[path] = "".join(r.to_line() for r in records).encode()

    tampered = _tamper(bundle, tmp_path / "t.zip", fail_first)
    _rejected(
        tampered, tmp_path / "site2", f"re-scoring the stored responses with the mbpp scorer gives other per-sample "
        f"scores for 1 sample(s): {tasks[0].id} (pass@1: 1.0 stored, 0.0 re-scored)",
    )  # fmt: skip


def test_add_rebuilds_the_site_with_the_accepted_team(runs: Runs, tmp_path: Path) -> None:
    site_data, site = tmp_path / "site-data", tmp_path / "site"
    proc = harness(
        "leaderboard",
        "add",
        str(runs.bundle),
        "--site-data",
        str(site_data),
        "--site",
        str(site),
        "--allow-replay",
        env=cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "accepted bundle" in proc.stdout and "2 runs" in proc.stdout.splitlines()[-1]
    index = (site / "data" / "index.js").read_text()
    assert '"team":"owls"' in index and (site / "index.html").is_file()
