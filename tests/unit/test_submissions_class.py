"""Class submissions as a class runs them: `submit STAGE:TAG`, replay runs refused unless allowed, a second
bundle that says which rows it removes (and keeps them with --merge), and the spot check's bookkeeping.

Runs are real `harness eval` runs of replayed responses (GSM8K, 5 samples): checkpoint A answers with the
gold responses, checkpoint B with "I do not know.". Spot checks here regenerate with `replay:` files, so
no model runs (tests/integration/test_spot_check.py regenerates with the embedded model)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.errors import ExitCode
from harness.runs.manifest import Manifest
from harness.runs.provenance import SPOT_CHECK_FILE, is_replay, read_spot_checks
from harness.runs.store import read_json
from leaderboard.bundle import write_bundle
from leaderboard.spot_check import DISAGREES_EXIT
from suites import get_suite
from tests.conftest import cli_env, eval_json, harness

LIMIT = 5


@dataclass(frozen=True)
class Class:
    root: Path  # runs folder: A and B on gsm8k, A also at temperature 0.7; sft-1 = A in its registry
    ref_a: str
    ref_b: str
    other_a: Path  # replay file with other texts for A's samples (a forger's "model")
    both: Path  # bundle of A's greedy run and B's run, team owls
    only_a: Path  # bundle of A's greedy run, team owls


def _replay(path: Path, texts: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sample_id": k, "text": v}) + "\n" for k, v in texts.items()))
    return path


def _bundle_runs(bundle: Path) -> set[str]:
    with zipfile.ZipFile(bundle) as archive:
        return {"/".join(n.split("/")[1:4]) for n in archive.namelist() if n.startswith("runs/")}


@pytest.fixture(scope="module")
def cls(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Class:
    tmp = tmp_path_factory.mktemp("class")
    suite = get_suite("gsm8k")
    samples = suite.load(DataSource(data_dir), LIMIT).samples
    a = _replay(tmp / "a.jsonl", {s.id: suite.gold_response(s) for s in samples})
    b = _replay(tmp / "b.jsonl", {s.id: "I do not know." for s in samples})
    other = _replay(tmp / "other.jsonl", {s.id: f"The answer is {i}." for i, s in enumerate(samples)})
    root = tmp / "runs"
    common = ("--suite", "gsm8k", "--limit", str(LIMIT), "--runs", str(root))
    run_a = eval_json("--checkpoint", f"replay:{a}", *common).run_dir
    run_b = eval_json("--checkpoint", f"replay:{b}", *common).run_dir
    eval_json("--checkpoint", f"replay:{a}", *common, "--temperature", "0.7")
    added = harness("checkpoints", "add", "sft-1", f"replay:{a}", "--stage", "sft", "--runs", str(root))
    assert added.returncode == 0, added.stderr
    both = write_bundle([run_a, run_b], "owls", tmp / "both.zip", allow_replay=True)
    only_a = write_bundle([run_a], "owls", tmp / "only-a.zip", allow_replay=True)
    return Class(root, f"replay:{a}", f"replay:{b}", other, both, only_a)


def _manifest(run_dir: Path) -> Manifest:
    return Manifest.from_record(read_json(run_dir / "manifest.json", "m"), run_dir / "manifest.json")


def test_submit_a_registry_reference_bundles_exactly_that_checkpoints_complete_runs(
    cls: Class, tmp_path: Path
) -> None:
    bundle = tmp_path / "sft.zip"
    proc = harness(
        "leaderboard", "submit", "sft:latest", "--runs", str(cls.root), "--team", "owls",
        "--out", str(bundle), "--allow-replay",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = {
        "/".join(m.parent.relative_to(cls.root).parts)
        for m in cls.root.rglob("manifest.json")
        if _manifest(m.parent).checkpoint == cls.ref_a
    }
    assert len(expected) == 2  # greedy and temperature 0.7
    assert _bundle_runs(bundle) == expected


def test_submit_refuses_replay_runs_naming_them_and_the_flag(cls: Class, tmp_path: Path) -> None:
    proc = harness("leaderboard", "submit", "sft:latest", "--runs", str(cls.root), "--team", "owls",
                   "--out", str(tmp_path / "x.zip"))  # fmt: skip
    assert proc.returncode == ExitCode.USAGE
    assert "2 run(s) hold replayed responses" in proc.stderr and "--allow-replay" in proc.stderr
    assert str(cls.root) in proc.stderr
    assert not (tmp_path / "x.zip").exists()


def test_submit_an_argument_of_no_accepted_form_lists_the_forms(cls: Class, tmp_path: Path) -> None:
    proc = harness(
        "leaderboard", "submit", str(tmp_path / "nowhere"), "--team", "owls", "--runs", str(cls.root)
    )
    assert proc.returncode == ExitCode.USAGE
    assert "is not a run folder, a runs folder or a checkpoint reference" in proc.stderr
    assert "RUNS_FOLDER" in proc.stderr and "STAGE:TAG" in proc.stderr
    missing = harness("leaderboard", "submit", "embedded", "--team", "owls", "--runs", str(cls.root))
    assert missing.returncode == ExitCode.USAGE
    assert "No complete run of the checkpoint 'embedded'" in missing.stderr


def test_add_refuses_replay_runs_unless_allowed_and_then_they_are_recognisable(
    cls: Class, tmp_path: Path
) -> None:
    site = tmp_path / "site-data"
    refused = harness("leaderboard", "add", str(cls.only_a), "--site-data", str(site))
    assert refused.returncode == ExitCode.DATA
    assert "1 run(s) hold replayed responses" in refused.stderr and "--allow-replay" in refused.stderr
    assert "runs/replay_" in refused.stderr  # the run, by its bundle path
    assert not (site / "owls").exists()
    allowed = harness("leaderboard", "add", str(cls.only_a), "--site-data", str(site), "--allow-replay")
    assert allowed.returncode == 0, allowed.stderr
    assert "[replayed responses, not a model's]" in allowed.stdout
    (manifest,) = (site / "owls").rglob("manifest.json")
    assert is_replay(_manifest(manifest.parent))


def _rows_on_disk(team: Path) -> set[str]:
    return {_manifest(m.parent).checkpoint for m in team.rglob("manifest.json")}


def test_add_says_which_rows_a_replacement_removes_and_merge_keeps_them(cls: Class, tmp_path: Path) -> None:
    site = tmp_path / "site-data"
    team = site / "owls"

    def add(bundle: Path, *flags: str) -> str:
        proc = harness("leaderboard", "add", str(bundle), "--site-data", str(site), "--allow-replay", *flags)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    add(cls.both)
    assert _rows_on_disk(team) == {cls.ref_a, cls.ref_b}
    out = add(cls.only_a)
    assert "removed 1 row(s) of the team's previous submission" in out and "--merge" in out
    assert f"  {cls.ref_b} x gsm8k" in out
    assert _rows_on_disk(team) == {cls.ref_a}

    add(cls.both)
    out = add(cls.only_a, "--merge")
    assert "removed" not in out
    assert "keeps 1 other row(s)" in out and f"  {cls.ref_b} x gsm8k" in out
    assert _rows_on_disk(team) == {cls.ref_a, cls.ref_b}
    assert len(list(team.rglob("manifest.json"))) == 2  # A's run replaced, not doubled
    submission = json.loads((team / "submission.json").read_text())
    assert submission["team"] == "owls" and submission["merged_into"]["team"] == "owls"
    assert [p.name for p in site.iterdir() if p.name != ".lock"] == ["owls"]  # no work folders left


def _verify(bundle: Path, *args: str) -> tuple[int, str, str]:
    proc = harness("leaderboard", "verify", str(bundle), *args, env=cli_env())
    return proc.returncode, proc.stdout, proc.stderr


def test_spot_check_agrees_is_written_for_the_badge_and_survives_only_with_its_runs(
    cls: Class, tmp_path: Path
) -> None:
    site = tmp_path / "site-data"
    assert (
        harness("leaderboard", "add", str(cls.both), "--site-data", str(site), "--allow-replay").returncode
        == 0
    )
    code, out, err = _verify(cls.both, "--checkpoint", cls.ref_b, "--sample", "3", "--seed", "7",
                             "--site-data", str(site))  # fmt: skip
    assert code == 0, err
    assert "PASS: 3/3 samples agree" in out and "3 byte-identical" in out
    checks = read_spot_checks(site / "owls")
    assert list(checks) == [cls.ref_b]
    check = checks[cls.ref_b]
    assert (check.checked, check.agreed, check.exact, check.seed, check.passed) == (3, 3, 3, 7, True)
    assert check.date and check.harness_version

    def add(bundle: Path, *flags: str) -> None:
        proc = harness("leaderboard", "add", str(bundle), "--site-data", str(site), "--allow-replay", *flags)
        assert proc.returncode == 0, proc.stderr

    add(cls.only_a, "--merge")  # B's runs stay, and so does its check
    assert list(read_spot_checks(site / "owls")) == [cls.ref_b]
    add(cls.only_a)  # B's runs are gone, and its check with them
    assert read_spot_checks(site / "owls") == {}
    assert not (site / "owls" / SPOT_CHECK_FILE).exists()
    code, _, err = _verify(cls.both, "--checkpoint", cls.ref_b, "--sample", "1", "--site-data", str(site))
    assert code == ExitCode.USAGE and "are not the bundle's" in err  # the badge needs the accepted runs


def test_spot_check_catches_other_responses_and_names_the_samples(cls: Class) -> None:
    code, out, err = _verify(cls.only_a, "--checkpoint", f"replay:{cls.other_a}", "--claimed", cls.ref_a,
                             "--sample", "3")  # fmt: skip
    assert code == DISAGREES_EXIT, (out, err)
    assert "FAIL: 0/3 samples agree" in out
    assert out.count("DIFFERS") == 3 and "regenerated: 'The answer is" in out
    assert "regenerated with" in out


def test_spot_check_of_a_checkpoint_the_bundle_lacks_asks_for_claimed(cls: Class) -> None:
    code, _, err = _verify(cls.only_a, "--checkpoint", f"replay:{cls.other_a}", "--sample", "3")
    assert code == ExitCode.USAGE
    assert "The bundle holds no runs of" in err and "--claimed REF" in err and cls.ref_a in err


def test_spot_check_reports_sampled_runs_as_not_checkable_never_as_failures(
    cls: Class, tmp_path: Path
) -> None:
    run = next(
        m.parent for m in cls.root.rglob("manifest.json") if _manifest(m.parent).generation.temperature > 0
    )
    bundle = write_bundle([run], "owls", tmp_path / "hot.zip", allow_replay=True)
    code, out, err = _verify(bundle, "--checkpoint", cls.ref_a, "--sample", "3")
    assert code == 0, err
    assert "NOT CHECKABLE" in out and "temperature 0.7" in out
    assert "nothing checkable by regeneration: no verdict (not a failure)" in out
