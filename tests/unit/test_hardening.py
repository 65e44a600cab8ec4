"""Issue 15 (red-team pass): names are never paths and the harness deletes only folders it made; a failed
re-run never downgrades a complete run; every malformed input gets its documented exit code (2 or 4) in
one paragraph, never a traceback, and invalid UTF-8 is an error naming the file, line and byte."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import cli_env, eval_json, harness
from tests.support.cli_runs import assert_clean_error, replay_args, write_gold_replay

BAD = b"caf\xe9"  # Latin-1 bytes: not UTF-8


@pytest.fixture(scope="module")
def gold_replay(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gold_replay(data_dir, tmp_path_factory.mktemp("replay") / "gold.jsonl", 8)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but a run's `.lock` (a writer notes its pid there while it holds the lock)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ------------------------------------------------------------------------------ names and owned folders


def _train_setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A config whose data file is missing: the stage stops (exit 2) right after choosing its folder."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{path: {tmp_path / 'missing.jsonl'}}}\neval: {{suites: []}}\noutput_dir: {tmp_path / 'ck'}\n"
    )
    home = tmp_path / "home"  # `~` of the child: never the real home, even on code that deletes it
    home.mkdir()
    return config, home, cli_env(HARNESS_RUNS_DIR=str(tmp_path / "runs"), HOME=str(home))


@pytest.mark.parametrize("name", ["../victim", "~/victim", "ABSOLUTE", ".", "..", "a b", "latest", "v3"])
def test_train_name_that_is_a_path_or_reserved_is_refused_and_deletes_nothing(
    name: str, tmp_path: Path
) -> None:
    config, home, env = _train_setup(tmp_path)
    name = str(tmp_path / "victim") if name == "ABSOLUTE" else name  # a path no other test or user has
    for victim in (tmp_path / "victim", home / "victim"):
        victim.mkdir()
        (victim / "precious.txt").write_text("keep")
    other = tmp_path / "ck" / "sft-other"  # another checkpoint in the output folder (`--name .` wiped it)
    other.mkdir(parents=True)
    (other / "adapter.bin").write_bytes(b"weights")
    before = tree(tmp_path)
    proc = harness("train", "sft", "--backend", "local", "--config", str(config), "--name", name, env=env)
    assert_clean_error(proc, 2, "checkpoint name")
    assert "unfinished attempt" not in proc.stderr
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("runs/")} == before


def test_config_name_and_tags_follow_the_same_rule(tmp_path: Path) -> None:
    config, _home, env = _train_setup(tmp_path)
    text = config.read_text()
    config.write_text(text + "name: ../victim\n")
    assert_clean_error(
        harness("train", "sft", "--config", str(config), env=env), 2, "'../victim' is not allowed"
    )
    config.write_text(text + "tags: [good, 'bad tag']\n")
    assert_clean_error(harness("train", "sft", "--config", str(config), env=env), 2, "The tag 'bad tag'")
    assert not (tmp_path / "ck").exists()


def test_an_existing_folder_the_harness_did_not_make_is_never_deleted(tmp_path: Path) -> None:
    config, _home, env = _train_setup(tmp_path)
    mine = tmp_path / "ck" / "sft-x"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    proc = harness("train", "sft", "--config", str(config), "--name", "sft-x", env=env)
    assert_clean_error(proc, 2, f"{mine} exists and was not made by the harness", "left untouched")
    assert (mine / "notes.txt").read_text() == "keep" and sorted(p.name for p in mine.iterdir()) == [
        "notes.txt"
    ]


def test_default_name_skips_another_registrys_folder_and_restarts_only_its_own_attempt(
    tmp_path: Path,
) -> None:
    config, _home, env = _train_setup(tmp_path)
    # sft-1 was made by a stage of another registry (same output folder): the default name must skip it.
    theirs = tmp_path / "ck" / "sft-1"
    theirs.mkdir(parents=True)
    marker = {
        "purpose": "training stage",
        "registry": str(tmp_path / "other" / "registry.jsonl"),
        "name": "sft-1",
    }
    (theirs / ".harness-owned.json").write_text(json.dumps(marker))
    (theirs / "adapter.bin").write_bytes(b"their weights")
    first = harness("train", "sft", "--config", str(config), env=env)
    assert_clean_error(first, 2, "missing.jsonl does not exist")  # stopped after making its own folder
    assert (theirs / "adapter.bin").read_bytes() == b"their weights"
    ours = tmp_path / "ck" / "sft-2"
    record = json.loads((ours / ".harness-owned.json").read_text())
    assert (
        record["registry"] == str((tmp_path / "runs" / "registry.jsonl").resolve())
        and record["name"] == "sft-2"
    )
    (ours / "half-written.bin").write_bytes(b"x")
    second = harness("train", "sft", "--config", str(config), env=env)  # the unfinished attempt: started over
    assert_clean_error(second, 2, "missing.jsonl does not exist")
    assert f"{ours} holds an unfinished attempt" in second.stderr
    assert not (ours / "half-written.bin").exists() and (ours / ".harness-owned.json").is_file()
    assert (theirs / "adapter.bin").read_bytes() == b"their weights"


def test_checkpoints_add_checks_name_stage_and_tags(tmp_path: Path) -> None:
    env = cli_env(HARNESS_RUNS_DIR=str(tmp_path / "runs"))
    ok = harness("checkpoints", "add", "base", "embedded", "--stage", "base", env=env)
    assert ok.returncode == 0, ok.stderr
    registry = (tmp_path / "runs" / "registry.jsonl").read_bytes()
    for args, needle in [
        (("../x", "embedded", "--stage", "sft"), "The checkpoint name '../x' is not allowed"),
        (("sft-1", "embedded", "--stage", "../sft"), "The stage name '../sft' is not allowed"),
        (("sft-1", "embedded", "--stage", "sft", "--tag", "any text"), "The tag 'any text' is not allowed"),
        (("sft-1", "embedded", "--stage", "sft", "--tag", "latest"), "The tag 'latest' is reserved"),
        (("v2", "embedded", "--stage", "sft"), "The checkpoint name 'v2' is reserved"),
    ]:
        assert_clean_error(harness("checkpoints", "add", *args, env=env), 2, needle, "letters, digits")
    assert (tmp_path / "runs" / "registry.jsonl").read_bytes() == registry


# ------------------------------------------------------------------------------------------ run status


def test_failed_rerun_of_a_complete_run_keeps_it_complete(gold_replay: Path, tmp_path: Path) -> None:
    args = replay_args(gold_replay, 4, tmp_path)
    run = eval_json(*args)
    cache = tmp_path / ".cache" / "responses.sqlite"
    for extra in (cache.with_name("responses.sqlite-wal"), cache.with_name("responses.sqlite-shm")):
        extra.unlink(missing_ok=True)
    cache.write_bytes(b"this is not a database" * 100)
    metrics = (run.run_dir / "metrics.json").read_bytes()
    proc = harness("eval", *args)
    assert_clean_error(proc, 4, "response cache", "cannot be opened")
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    last = manifest["invocations"][-1]
    assert last["status"] == "failed" and "response cache" in last["error"] and last["finished_at"]
    assert (run.run_dir / "metrics.json").read_bytes() == metrics
    listing = harness("runs", "--runs", str(tmp_path))
    assert listing.returncode == 0 and "complete" in listing.stdout and "4/4" in listing.stdout
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_samples: 1\n")
    gate = harness("gate", "--baseline", str(run.run_dir), "--candidate", str(run.run_dir),
                   "--runs", str(tmp_path), "--policy", str(policy))  # fmt: skip
    assert gate.returncode == 0 and "PASS" in gate.stdout, gate.stderr  # not "no complete run"


def test_failed_first_eval_leaves_no_run_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(json.dumps({"sample_id": "elsewhere", "text": "x"}) + "\n")
    out = tmp_path / "runs"
    proc = harness("eval", *replay_args(elsewhere, 2, out))
    assert_clean_error(proc, 4, "has no response for sample gsm8k-test-0000")
    assert not list(out.rglob("manifest.json")) and [p.name for p in out.iterdir()] == [".cache"]
    listing = harness("runs", "--runs", str(out))
    assert listing.returncode == 0 and "No runs under" in listing.stdout


# --------------------------------------------------------------------------------- errors, not tracebacks


def test_gguf_that_is_not_a_gguf_is_a_usage_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    for path in ("/etc/passwd", str(fake)):
        proc = harness("eval", "--checkpoint", f"gguf:{path}", "--suite", "gsm8k", "--limit", "1",
                       "--runs", str(tmp_path / "runs"))  # fmt: skip
        assert_clean_error(proc, 2, f"{path} is not a GGUF model file")
    assert not list((tmp_path / "runs").rglob("manifest.json")) if (tmp_path / "runs").exists() else True


def _run(gold_replay: Path, tmp_path: Path, limit: int = 3) -> Path:
    return eval_json(*replay_args(gold_replay, limit, tmp_path)).run_dir


def _commands(run_dir: Path, out: Path) -> dict[str, tuple[str, ...]]:
    return {
        "runs": ("runs", "--runs", str(out)),
        "show": ("show", str(run_dir)),
        "rescore": ("rescore", str(run_dir)),
        "gate": ("gate", "--baseline", str(run_dir), "--candidate", str(run_dir), "--runs", str(out)),
    }


@pytest.mark.parametrize("target", ["manifest.json", "metrics.json", "samples.jsonl"])
def test_invalid_utf8_in_a_run_file_is_exit_4_naming_file_and_byte(
    target: str, gold_replay: Path, tmp_path: Path
) -> None:
    run_dir = _run(gold_replay, tmp_path)
    path = run_dir / target
    data = path.read_bytes()
    if target == "samples.jsonl":
        lines = data.splitlines(keepends=True)
        lines[1] = lines[1].replace(b'"prompt": "', b'"prompt": "' + BAD, 1)
        data = b"".join(lines)
        where = f"{path} line 2 is not valid UTF-8 (byte "
    else:
        data = data.replace(b'"suite": "gsm8k"', b'"suite": "gsm8k' + BAD + b'"', 1)
        where = f"{path} is not valid UTF-8 (byte "
    assert BAD in data
    path.write_bytes(data)
    before = tree(tmp_path)
    commands = _commands(run_dir, tmp_path)
    if target == "metrics.json":
        del commands["rescore"], commands["gate"]  # they recompute or never read metrics.json
    for name, argv in commands.items():
        proc = harness(*argv)
        assert_clean_error(proc, 4, where)
        assert tree(tmp_path) == before, name  # never rewritten with U+FFFD
    if target != "metrics.json":  # eval recomputes metrics.json; it reads the other two
        assert_clean_error(harness("eval", *replay_args(gold_replay, 3, tmp_path)), 4, where)
        assert path.read_bytes() == data


def test_invalid_utf8_in_registry_replay_policy_config_and_cache(gold_replay: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    assert harness("checkpoints", "add", "base", "embedded", "--stage", "base", env=env).returncode == 0
    registry = runs / "registry.jsonl"
    registry.write_bytes(registry.read_bytes() + b'{"name": "' + BAD + b'"}\n')
    assert_clean_error(harness("checkpoints", env=env), 4, f"{registry} line 2 is not valid UTF-8 (byte 13")
    registry.unlink()

    replay = tmp_path / "replay.jsonl"
    replay.write_bytes(gold_replay.read_bytes() + b'{"sample_id": "x", "text": "' + BAD + b'"}\n')
    proc = harness("eval", *replay_args(replay, 2, runs))
    assert_clean_error(proc, 4, f"{replay} line 9 is not valid UTF-8")

    run_dir = _run(gold_replay, runs, 2)
    policy = tmp_path / "gate.yaml"
    policy.write_bytes(b"alpha: 0.05\n# " + BAD + b"\n")
    gate = ("gate", "--baseline", str(run_dir), "--candidate", str(run_dir), "--runs", str(runs))
    assert_clean_error(harness(*gate, "--policy", str(policy)), 4, f"{policy} is not valid UTF-8 (byte 17")
    config = tmp_path / "sft.yaml"
    config.write_bytes(b"name: caf\xe9\n")
    assert_clean_error(
        harness("train", "sft", "--config", str(config), env=env), 4, "not valid UTF-8 (byte 9"
    )

    # A stored response whose text is not UTF-8: the rerun reads it from the cache (samples deleted).
    cache = runs / ".cache" / "responses.sqlite"
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE responses SET completion = CAST(? AS TEXT)", (b'{"texts": ["' + BAD + b'"]}',))
    (run_dir / "samples.jsonl").unlink()
    proc = harness("eval", *replay_args(gold_replay, 2, runs))
    assert_clean_error(
        proc, 4, f"The response cache {cache} holds a response that is not valid UTF-8", "byte 15"
    )


def test_rescore_without_samples_is_an_error_and_leaves_the_run_as_it_was(
    gold_replay: Path, tmp_path: Path
) -> None:
    run_dir = _run(gold_replay, tmp_path)
    (run_dir / "samples.jsonl").unlink()
    before = tree(tmp_path)
    proc = harness("rescore", str(run_dir))
    assert_clean_error(proc, 4, "has no stored samples", "samples.jsonl is missing", "left as it was")
    assert tree(tmp_path) == before
    (run_dir / "samples.jsonl").write_text("")  # present, but holding no sample
    assert_clean_error(harness("rescore", str(run_dir)), 4, "has no stored samples")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and [i["status"] for i in manifest["invocations"]] == ["complete"]


def test_runs_refuses_a_repeated_sample_line_instead_of_counting_it(
    gold_replay: Path, tmp_path: Path
) -> None:
    run_dir = _run(gold_replay, tmp_path)
    samples = run_dir / "samples.jsonl"
    first = samples.read_text().splitlines(keepends=True)[0]
    with samples.open("a") as handle:
        handle.write(first)
    proc = harness("runs", "--runs", str(tmp_path))
    assert_clean_error(proc, 4, f"{samples} line 4 repeats sample gsm8k-test-0000 (first at line 1)")
    assert "4/3" not in proc.stdout


def test_a_lone_surrogate_escape_is_corrupt_data_not_a_crash_when_printed_or_rewritten(
    gold_replay: Path, tmp_path: Path
) -> None:
    run_dir = _run(gold_replay, tmp_path)
    samples = run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    record = json.loads(lines[0])
    record["prompt"] = "\ud800 is valid JSON as an escape, but not text"
    lines[0] = json.dumps(record) + "\n"  # ensure_ascii: the file itself is plain ASCII
    samples.write_text("".join(lines))
    before = tree(tmp_path)
    for name, argv in _commands(run_dir, tmp_path).items():
        proc = harness(*argv)
        assert_clean_error(proc, 4, f"{samples} line 1 is corrupt", "lone surrogate")
        assert tree(tmp_path) == before, name


def test_pipeline_names_tags_and_summary_folder_are_checked_before_any_stage(tmp_path: Path) -> None:
    from harness.errors import UsageError
    from training.pipeline import _check_summary_folder, plan

    source = tmp_path / "course.yaml"
    stage = {"stage": "sft", "data": {"path": "d.jsonl"}}
    for raw, needle in [
        ({"name": "../x", "stages": [stage]}, "pipeline name"),
        ({"stages": [{**stage, "name": "~/victim"}]}, "checkpoint name of stage 1"),
        ({"stages": [{**stage, "tags": ["ok", "not ok"]}]}, "The tag 'not ok'"),
        (
            {"stages": [stage], "select": {"suite": "gsm8k", "tag": "latest"}},
            "The select.tag 'latest' is reserved",
        ),
    ]:
        with pytest.raises(UsageError, match=r"not allowed|reserved") as caught:
            plan(raw, source)
        assert needle in caught.value.message
    name, _base, plans, _select = plan({"stages": [stage, stage]}, source)
    assert name == "course" and [p.name for p in plans] == ["course-1-sft", "course-2-sft"]
    with pytest.raises(UsageError, match="pipeline name"):
        plan({"stages": [stage]}, tmp_path / "my course.yaml")  # the default name is the file's stem

    owner = {"registry": str(tmp_path / "registry.jsonl"), "name": "course"}
    theirs = tmp_path / "ck" / "course"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="was not made by this pipeline"):
        _check_summary_folder(theirs, owner)
    (theirs / "notes.txt").unlink()
    (theirs / "pipeline.json").write_text("{}")  # a summary folder from before the owner markers
    _check_summary_folder(theirs, owner)
    _check_summary_folder(tmp_path / "ck" / "new", owner)  # made when the summary is written


def test_gate_reads_a_metric_count_of_infinity_as_corrupt_data(gold_replay: Path, tmp_path: Path) -> None:
    run_dir = _run(gold_replay, tmp_path)
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"n": 3', '"n": Infinity', 1))
    assert_clean_error(harness("show", str(run_dir)), 4, f"The metrics file {metrics} is malformed")
    assert_clean_error(harness(*_commands(run_dir, tmp_path)["gate"]), 4, str(metrics))
