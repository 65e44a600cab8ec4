"""`harness package CHECKPOINT... --repro OUT.zip` and `harness reproduce PACKAGE`, without a model.

Runs are real `harness eval` runs of replayed responses (gsm8k, 10 samples, a third of them wrong): replay
is deterministic, so a re-run reproduces them exactly. Each tampering test edits a copy of one honest
package and checks the error names the file.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.errors import DataError, ExitCode, UsageError
from harness.runs.store import MANIFEST, read_json
from harness.version import __version__
from reports.repro_check import open_package, verify_runs
from reports.repro_code import check_no_secrets, snapshot_code
from reports.repro_package import MANIFEST_FILE, write_repro_package
from reports.repro_rerun import DIFFERS, NOT_HERE, REPRODUCED, reproduce
from suites import get_suite
from tests.conftest import cli_env, eval_json, harness

LIMIT = 10
# A fake API key, built here so that its value is not in this file (which goes into every package).
PLANTED = "sk-pl4nted-" + "repro-9d2e71"
UNRELATED = "sk-unrelated-" + "secret-123"


def write_replay(path: Path, data_dir: Path) -> Path:
    """Replayed gsm8k responses: the gold answer, except every third sample's."""
    suite = get_suite("gsm8k")
    samples = suite.load(DataSource(data_dir), LIMIT).samples
    lines = [
        json.dumps({"sample_id": s.id, "text": "I do not know." if i % 3 == 0 else suite.gold_response(s)})
        for i, s in enumerate(samples)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Packaged:
    root: Path  # runs folder
    run_dir: Path
    replay: Path
    zip: Path  # built through the CLI, --subset-limit 3


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Packaged:
    tmp = tmp_path_factory.mktemp("repro")
    root = tmp / "runs"
    replay = write_replay(tmp / "gsm8k.jsonl", data_dir)
    run = eval_json(
        "--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", str(LIMIT), "--runs", str(root)
    )
    out = tmp / "pkg.zip"
    proc = harness(
        "package", f"replay:{replay}", "--repro", str(out), "--subset-limit", "3", "--runs", str(root),
        env=cli_env(OTHER_API_KEY=UNRELATED),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "gsm8k" in proc.stdout
    return Packaged(root, run.run_dir, replay, out)


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}


def rezip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def run_path(files: dict[str, bytes], name: str) -> str:
    return next(p for p in files if p.startswith("runs/") and p.endswith(f"/{name}"))


def test_contents_and_hashes(packaged: Packaged) -> None:
    files = entries(packaged.zip)
    manifest = json.loads(files[MANIFEST_FILE])
    for name in ("MODEL_CARD.md", "metrics.md", "examples.md", "commands.sh", "seeds.json", "environment.json",
                 "reproduce.sh", "registry/registry.jsonl", "code/harness/cli/package_cmd.py",
                 "code/reports/repro_package.py", "code/pyproject.toml"):  # fmt: skip
        assert name in files, name
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert set(listed) == set(files) - {MANIFEST_FILE}
    assert all(hashlib.sha256(files[p]).hexdigest() == sha for p, sha in listed.items())
    relative = "runs/" + "/".join(packaged.run_dir.parts[-3:])
    for name in ("manifest.json", "metrics.json", "samples.jsonl"):
        assert files[f"{relative}/{name}"] == (packaged.run_dir / name).read_bytes()
    (checkpoint,) = manifest["checkpoints"]
    assert [r["path"] for r in checkpoint["runs"]] == [relative]
    assert manifest["subset"] == ["gsm8k:3"] and manifest["format_version"] == 1
    assert manifest["code"]["source"] == "git" and len(manifest["code"]["git_revision"]) == 40
    assert "--subset gsm8k:3" in files["reproduce.sh"].decode()
    assert json.loads(files["seeds.json"])["evaluation"] == [
        {"checkpoint": checkpoint["label"], "seed": 0, "suite": "gsm8k"}
    ]
    env = json.loads(files["environment.json"])
    assert env["python"] and env["cpu"] and any(p.startswith("pytest==") for p in env["pip_freeze"])
    assert (
        "Model card" in files["MODEL_CARD.md"].decode() and "exact_match_flex" in files["metrics.md"].decode()
    )
    assert "gsm8k-test-0000" in files["examples.md"].decode()
    assert UNRELATED.encode() not in b"".join(files.values())


def test_zip_bytes_are_deterministic(packaged: Packaged) -> None:
    with zipfile.ZipFile(packaged.zip) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
    assert modes["reproduce.sh"] == 0o755 and modes[MANIFEST_FILE] == 0o644


def test_commands_rebuilt_from_the_manifests_run_as_is(packaged: Packaged, tmp_path: Path) -> None:
    """The eval line of commands.sh re-made with its own flags gives a run of the same settings hash."""
    files = entries(packaged.zip)
    lines = [ln for ln in files["commands.sh"].decode().splitlines() if ln.startswith("harness eval")]
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    manifest = json.loads(files[run_path(files, "manifest.json")])
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--checkpoint"] == manifest["checkpoint"] and flags["--suite"] == "gsm8k"
    assert (
        int(flags["--limit"]) == manifest["limit"]
        and int(flags["--max-tokens"]) == manifest["generation"]["max_tokens"]
    )
    assert int(flags["--seed"]) == manifest["generation"]["seed"] and flags["--runs"] == "runs"
    argv[argv.index("--runs") + 1] = str(tmp_path / "again")
    again = eval_json(*argv[2:])
    assert read_json(again.run_dir / MANIFEST, "m")["settings_hash"] == manifest["settings_hash"]


def test_reproduce_a_replay_package(packaged: Packaged, tmp_path: Path) -> None:
    result = reproduce(packaged.zip)
    (check,) = result.checks
    assert (check.verdict, check.n, check.identical, check.compared_by) == (
        REPRODUCED,
        3,
        3,
        "identical responses",
    )
    assert result.exit_code == 0 and "REPRODUCED" in result.table()
    proc = harness("reproduce", str(packaged.zip), "--subset", "gsm8k:2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "2/2" in proc.stdout and "reproduced: all 1" in proc.stdout


def test_a_changed_model_differs_and_a_missing_one_is_not_reproducible(
    packaged: Packaged, tmp_path: Path
) -> None:
    original = packaged.replay.read_text()
    try:
        wrong = [
            json.dumps({"sample_id": json.loads(ln)["sample_id"], "text": "No idea."})
            for ln in original.splitlines()
        ]
        packaged.replay.write_text("\n".join(wrong) + "\n")
        result = reproduce(packaged.zip, ["gsm8k:10"])
        (check,) = result.checks
        assert check.verdict == DIFFERS and check.compared_by == "paired 95% CI" and check.identical == 0
        assert check.ci is not None and check.ci[1] < 0 and result.exit_code == ExitCode.SPOT_CHECK_DISAGREES
        proc = harness("reproduce", str(packaged.zip), "--subset", "gsm8k:10", "--quiet")
        assert proc.returncode == 13 and "differs from the package on: gsm8k" in proc.stderr
        packaged.replay.unlink()
        gone = reproduce(packaged.zip, ["gsm8k:2"])
        assert gone.checks[0].verdict == NOT_HERE and gone.exit_code != 0
        assert (
            gone.checks[0].detail.startswith("not reproducible here:")
            and "not reproducible here: gsm8k" in gone.table()
        )
    finally:
        packaged.replay.write_text(original)


def test_sampled_runs_are_compared_within_the_paired_ci(packaged: Packaged, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    eval_json("--checkpoint", f"replay:{packaged.replay}", "--suite", "gsm8k", "--limit", "6", "--temperature", "0.7",
              "--runs", str(root))  # fmt: skip
    out = write_repro_package(
        [f"replay:{packaged.replay}"], tmp_path / "t.zip", root, subset_limit=6, environ={}
    )
    (check,) = reproduce(out.path).checks
    assert (check.verdict, check.compared_by, check.ci is not None) == (REPRODUCED, "paired 95% CI", True)
    assert "sampled decoding" in check.detail


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("samples", "samples.jsonl was altered"),
        ("metric", "metrics.json was altered"),
        ("metric+manifest", "metric exact_match_flex claims"),
        ("extra", "['runs/extra.txt'] are in"),
        ("missing", "listed in MANIFEST.json but missing"),
        ("traversal", "zip-slip"),
    ],
)
def test_tampered_packages_fail_naming_the_file(
    packaged: Packaged, tmp_path: Path, edit: str, message: str
) -> None:
    files = entries(packaged.zip)
    samples, metrics = run_path(files, "samples.jsonl"), run_path(files, "metrics.json")
    if edit == "samples":
        files[samples] = files[samples].replace(b"I do not know.", b"I do not knew.", 1)
    elif edit.startswith("metric"):
        record = json.loads(files[metrics])
        record["metrics"]["exact_match_flex"]["value"] = 0.9
        files[metrics] = json.dumps(record).encode()
        if edit == "metric+manifest":  # the hash fixed too: re-grading the samples still catches it
            manifest = json.loads(files[MANIFEST_FILE])
            for f in manifest["files"]:
                if f["path"] == metrics:
                    f["sha256"] = hashlib.sha256(files[metrics]).hexdigest()
            files[MANIFEST_FILE] = json.dumps(manifest).encode()
    elif edit == "extra":
        files["runs/extra.txt"] = b"hello"
    elif edit == "missing":
        del files["seeds.json"]
    else:
        files["../evil.txt"] = b"boo"
    bad = rezip(tmp_path / "bad.zip", files)
    with pytest.raises(DataError) as caught:
        verify_runs(open_package(bad, tmp_path / "x"))
    assert message in caught.value.message and caught.value.message.startswith("Package rejected:")
    assert not (tmp_path / "evil.txt").exists()
    if edit == "samples":  # the CLI: exit 4, the file named
        proc = harness("reproduce", str(bad))
        assert proc.returncode == ExitCode.DATA and "samples.jsonl was altered" in proc.stderr


def test_an_extracted_folder_is_verified_too(packaged: Packaged, tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    with zipfile.ZipFile(packaged.zip) as archive:
        archive.extractall(folder)
    (folder / "code" / "harness" / "__pycache__").mkdir(exist_ok=True)
    (folder / "code" / "harness" / "__pycache__" / "x.pyc").write_bytes(b"written by running code/")
    assert open_package(folder, tmp_path / "unused").files == len(entries(packaged.zip)) - 1
    (folder / "metrics.md").write_text("edited")
    with pytest.raises(DataError, match=r"metrics\.md was altered"):
        open_package(folder, tmp_path / "unused")


def _git_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    for command in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(root), *command], check=True, capture_output=True)
    return root


def test_secrets_in_code_or_diff_refuse_the_package(packaged: Packaged, tmp_path: Path) -> None:
    project = _git_project(tmp_path / "p", {"app.py": "x = 1\n"})
    env = {"OPENAI_API_KEY": PLANTED, "HOME": "/root"}
    (project / "notes.txt").write_text(f"key={PLANTED}\n")  # untracked, not ignored: it goes in
    out = tmp_path / "s.zip"
    with pytest.raises(UsageError) as caught:
        write_repro_package([f"replay:{packaged.replay}"], out, packaged.root, environ=env, code_root=project)
    assert "code/notes.txt" in caught.value.message and "OPENAI_API_KEY" in caught.value.message
    assert PLANTED not in caught.value.message and not out.exists()
    (project / "notes.txt").unlink()
    (project / "app.py").write_text(f"x = '{PLANTED}'\n")  # uncommitted: in the file and in the diff
    snapshot = snapshot_code(project)
    assert snapshot.dirty and "UNCOMMITTED.diff" in snapshot.files
    with pytest.raises(UsageError, match=r"code/UNCOMMITTED\.diff, code/app\.py hold"):
        check_no_secrets({f"code/{k}": v for k, v in snapshot.files.items()}, env)
    check_no_secrets({"a": b"x = 1"}, {"OPENAI_API_KEY": PLANTED, "PATH": PLANTED})  # absent: fine
    check_no_secrets({"a": PLANTED.encode()}, {"PATH": PLANTED})  # not a secret's name: fine


def test_a_secret_in_a_run_refuses_the_package_through_the_cli(packaged: Packaged, tmp_path: Path) -> None:
    replay = tmp_path / "leak.jsonl"
    first = json.loads(packaged.replay.read_text().splitlines()[0])
    replay.write_text(json.dumps({"sample_id": first["sample_id"], "text": f"my key is {PLANTED}"}) + "\n")
    root = tmp_path / "runs"
    eval_json("--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", "1", "--runs", str(root))
    out = tmp_path / "leak.zip"
    proc = harness("package", f"replay:{replay}", "--repro", str(out), "--runs", str(root),
                   env=cli_env(PLANTED_TOKEN=PLANTED))  # fmt: skip
    assert proc.returncode == 2 and "PLANTED_TOKEN" in proc.stderr, proc.stderr
    assert "/samples.jsonl" in proc.stderr and "examples.md" in proc.stderr
    assert PLANTED not in proc.stderr + proc.stdout and not out.exists()


def test_outside_git_the_installed_version_stands_in(tmp_path: Path) -> None:
    snapshot = snapshot_code(tmp_path)
    assert snapshot.source == "installed" and snapshot.revision is None
    assert snapshot.files == {"INSTALLED.txt": f"post-train-harness=={__version__}\n".encode()}


def test_inside_another_repository_the_installed_version_stands_in(tmp_path: Path) -> None:
    """Installed into a venv inside a user's own repository: that repository is not the harness's code."""
    outer = _git_project(tmp_path / "user-project", {"train.py": "x = 1\n"})
    site = outer / ".venv" / "site-packages"
    site.mkdir(parents=True)
    snapshot = snapshot_code(site)
    assert snapshot.source == "installed" and "train.py" not in snapshot.files


def test_weights_left_in_the_tree_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.repro_code as repro_code

    project = _git_project(tmp_path / "p", {"app.py": "x = 1\n"})
    (project / "model.safetensors").write_bytes(b"\0" * 2048)  # untracked, not ignored
    monkeypatch.setattr(repro_code, "MAX_CODE_FILE_BYTES", 1024)
    with pytest.raises(UsageError, match=r"model\.safetensors is larger than code should be"):
        snapshot_code(project)
    (project / ".gitignore").write_text("*.safetensors\n")
    assert "model.safetensors" not in snapshot_code(project).files


def test_kaggle_and_repro_are_exclusive(packaged: Packaged, tmp_path: Path) -> None:
    proc = harness("package", "embedded", "--kaggle", "--repro", str(tmp_path / "x.zip"))
    assert proc.returncode == 2 and "different packages" in proc.stderr
    proc = harness("package", "a", "b", "--kaggle")
    assert proc.returncode == 2 and "one LoRA adapter" in proc.stderr


def test_registry_lineage_training_commands_and_configs(packaged: Packaged, tmp_path: Path) -> None:
    """A registered checkpoint brings its ancestors, its training command, seed and config (redacted)."""
    from harness.lineage import CheckpointRegistry, registry_path

    root = tmp_path / "runs"
    eval_json(
        "--checkpoint", f"replay:{packaged.replay}", "--suite", "gsm8k", "--limit", "2", "--runs", str(root)
    )
    out_dir = tmp_path / "sft-1"
    out_dir.mkdir()
    password = "pw-cfg-" + "77"  # built here: this file goes into the package's code/
    config = {"stage": "sft", "base": f"http://alice:{password}@h:1/v1#m"}
    (out_dir / "config.json").write_text(json.dumps(config))
    registry = CheckpointRegistry(registry_path(root))
    registry.add("base-1", "embedded", "base")
    registry.add("sft-1", f"replay:{packaged.replay}", "sft", parent="base-1", config_sha256="c" * 64,
                 data_sha256="d" * 64, seed=7,
                 details={"config_file": "/cfg/sft.yaml", "out_dir": str(out_dir)})  # fmt: skip
    result = write_repro_package(["sft-1"], tmp_path / "r.zip", root, environ={})
    files = entries(result.path)
    lines = [json.loads(ln) for ln in files["registry/registry.jsonl"].decode().splitlines()]
    assert [e["name"] for e in lines] == ["base-1", "sft-1"]
    assert lines[1]["config_sha256"] == "c" * 64 and lines[1]["data_sha256"] == "d" * 64
    assert json.loads(files["registry/sft-1.config.json"])["base"] == "http://h:1/v1#m"
    assert password.encode() not in b"".join(files.values())
    assert "harness train sft --config /cfg/sft.yaml" in files["commands.sh"].decode()
    assert {"checkpoint": "sft-1", "seed": 7} in json.loads(files["seeds.json"])["training"]
    assert json.loads(files[MANIFEST_FILE])["checkpoints"][0]["label"] == "sft-1"
