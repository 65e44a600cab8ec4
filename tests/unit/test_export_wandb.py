"""`harness export wandb` and `--wandb`: real harness runs exported to offline W&B runs (WANDB_MODE=offline,
every W&B folder under tmp_path), read back from W&B's own files: the `.wandb` transaction log (framed
as W&B's writer frames it, each record parsed with wandb's protobuf `Record`) and the table file it
points at. wandb 0.31 has no Python reader of its own any more (the old `wandb.sdk.internal.datastore`
went into the Go `wandb-core`), so the framing is read here: a 7-byte `:W&B` header, then 32 KiB blocks
of records, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""

from __future__ import annotations

import inspect
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.cli import main
from harness.lineage import CheckpointRegistry, registry_path
from harness.reasoning import ReasoningSpec
from harness.suite import SuiteOptions
from reports.wandb_rows import STAGE_FILE, clip, redacted_entry

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

FAKE_KEY = "0123456789abcdef0123456789abcdef0123fake"
BLOCK = 32768


def read_records(path: Path) -> list[Any]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer / zero padding
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_runs(wandb_dir: Path) -> dict[str, dict[str, Any]]:
    """display name -> {job_type, group, config, summary, artifacts, uses, folder} of every offline run."""
    wandb.teardown()  # the service writes the transaction logs; stopping it flushes them (as at exit)
    found: dict[str, dict[str, Any]] = {}
    for log in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):
        run: dict[str, Any] = {"config": {}, "summary": {}, "artifacts": [], "uses": [], "folder": log.parent}
        for record in read_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(job_type=record.run.job_type, group=record.run.run_group)
                run["name"] = record.run.display_name
                run["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "summary":
                for update in record.summary.update:
                    key = update.key or "/".join(update.nested_key)
                    run["summary"][key] = json.loads(update.value_json)
            elif kind == "artifact" and record.artifact.type == "model":
                art = record.artifact
                run["artifacts"].append({"name": art.name, "type": art.type, "aliases": list(art.aliases),
                                         "metadata": json.loads(art.metadata),
                                         "files": [c.path for c in art.manifest.contents]})  # fmt: skip
            elif kind == "use_artifact":
                run["uses"].append(record.use_artifact.name)
        found[run["name"]] = run
    return found


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline W&B with every folder under tmp_path, a fake key in the environment and a fresh HOME."""
    for variable, name in (("WANDB_DIR", "wb"), ("WANDB_DATA_DIR", "wb-data"), ("WANDB_CACHE_DIR", "wb-cache"),
                           ("WANDB_CONFIG_DIR", "wb-config"), ("HOME", "home")):  # fmt: skip
        (tmp_path / name).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / name))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    wandb.teardown()  # wandb's process-wide setup read the environment of an earlier test: start afresh
    yield tmp_path / "wb"
    wandb.teardown()


def write_replay(data_dir: Path, path: Path, n: int, think: bool = False) -> Path:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]]
    lines = []
    for i, row in enumerate(rows):
        text = (f"<think>step {i}: " + "ponder " * 40 + "</think>" if think else "") + row["answer"]
        lines.append(json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": text}) + "\n")
    path.write_text("".join(lines))
    return path


def trained_lineage(tmp_path: Path, data_dir: Path) -> Path:
    """base-0 -> sft-1 (a replay of gold answers, tagged best, gated PASS in its stage.json), evaluated."""
    runs = tmp_path / "runs"
    replay = write_replay(data_dir, tmp_path / "sft.jsonl", 3)
    out_dir = tmp_path / "checkpoints" / "sft-1"
    out_dir.mkdir(parents=True)
    (out_dir / STAGE_FILE).write_text(json.dumps({"gate": {"verdict": "PASS", "exit_code": 0, "note": None}}))
    registry = CheckpointRegistry(registry_path(runs))
    registry.add("base-0", "embedded", "base")
    registry.add("sft-1", f"replay:{replay}", "sft", parent="base-0", tags=["best"], seed=7,
                 config_sha256="c" * 64, data_sha256="d" * 64, details={"out_dir": str(out_dir)})  # fmt: skip
    harness.evaluate("sft:latest", "gsm8k", limit=3, runs=runs, progress=False)
    return runs


def files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_export_logs_metrics_table_config_artifacts_and_gate(
    wandb_env: Path, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = trained_lineage(tmp_path, data_dir)
    code = main(["export", "wandb", "sft-1", "--runs", str(runs), "--project", "proj", "--entity", "ent",
                 "--clip", "40"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "checkpoint sft-1 -> ent/proj/sft:sft-1" in printed
        and "eval sft-1 gsm8k uses ent/proj/sft:sft-1" in printed
    )
    found = offline_runs(wandb_env)
    assert sorted(found) == ["base-0 [base]", "sft-1 [sft]", "sft-1 gsm8k"]

    base, sft, ev = found["base-0 [base]"], found["sft-1 [sft]"], found["sft-1 gsm8k"]
    assert (base["job_type"], sft["job_type"], ev["job_type"], ev["group"]) == (
        "checkpoint",
        "checkpoint",
        "eval",
        "sft-1",
    )
    # Model artifacts: one collection per stage, the registry name and tags as aliases, no weights.
    assert [(a["name"], a["type"], sorted(a["aliases"])) for a in base["artifacts"]] == [
        ("base", "model", ["base-0", "latest"])
    ]
    [model] = sft["artifacts"]
    assert (model["name"], model["type"], sorted(model["aliases"])) == (
        "sft",
        "model",
        ["best", "latest", "sft-1"],
    )
    assert model["files"] == ["harness_checkpoint.json"]
    meta = model["metadata"]
    assert meta["harness_reference"] == f"replay:{tmp_path / 'sft.jsonl'}"
    assert (meta["parent"], meta["seed"], meta["config_sha256"], meta["data_sha256"]) == (
        "base-0",
        7,
        "c" * 64,
        "d" * 64,
    )
    assert meta["registry_entry"]["name"] == "sft-1" and meta["gate"]["verdict"] == "PASS"
    # Lineage edges: offline, W&B refuses use_artifact, so each run's config names the artifact it uses.
    assert base["config"]["uses_artifacts"] == []
    assert sft["config"]["uses_artifacts"] == ["ent/proj/base:base-0"]
    assert ev["config"]["uses_artifacts"] == ["ent/proj/sft:sft-1"]
    assert sft["summary"]["gate"] == {"verdict": "PASS", "exit_code": 0, "note": None, "against": "base-0"}

    # Metrics with their intervals, exactly as metrics.json has them.
    [run_dir] = (runs).glob("replay_*/gsm8k@*/*")
    stored = json.loads((run_dir / "metrics.json").read_text())["metrics"]["exact_match_flex"]
    flex = ev["summary"]["exact_match_flex"]
    assert flex["value"] == stored["value"] == 1.0 and flex["n"] == 3 and flex["ci_method"] == "wilson"
    assert [flex["ci_low"], flex["ci_high"]] == stored["ci95"] and flex["stderr"] == stored["stderr"]
    assert (
        ev["summary"]["primary_metric"] == "exact_match_flex" and ev["summary"]["gate"]["verdict"] == "PASS"
    )
    manifest = ev["config"]["manifest"]
    assert manifest["suite"] == "gsm8k" and manifest["limit"] == 3 and manifest["lineage"]["name"] == "sft-1"
    assert manifest["settings_hash"] == run_dir.name and ev["config"]["run_folder"] == str(run_dir)

    # The per-sample table, from the file the summary points at.
    table = json.loads((ev["folder"] / "files" / ev["summary"]["samples/path"]).read_text())
    columns = table["columns"]
    assert columns[:4] == ["sample_id", "prompt", "target", "response"]
    assert {
        "extracted/flex",
        "extracted/strict",
        "score/exact_match_flex",
        "score/exact_match_strict",
    } <= set(columns)
    rows = [dict(zip(columns, row, strict=True)) for row in table["data"]]
    assert [r["sample_id"] for r in rows] == ["gsm8k-test-0000", "gsm8k-test-0001", "gsm8k-test-0002"]
    assert all(r["score/exact_match_flex"] == 1.0 for r in rows)
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["response"] == clip(samples[0]["completions"][0]["texts"][0], 40)
    assert (
        rows[0]["response"].endswith("more characters]")
        and rows[0]["extracted/flex"] == samples[0]["extracted"]["flex"] == "18"
    )

    # The key is written nowhere: not in config, files, logs or W&B's settings; nothing lands in HOME.
    assert files_holding(tmp_path, FAKE_KEY) == []
    assert list((tmp_path / "home").rglob("*")) == []


def test_runs_use_their_model_artifacts(wandb_env: Path, tmp_path: Path, data_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Online, each child's run and each eval run call `use_artifact` on the artifact it builds on. W&B
    refuses that offline, so a recording stand-in with the real method's signature takes its place."""
    real = wandb.Run.use_artifact
    calls: list[tuple[str, str, str | None]] = []

    def recording_use_artifact_stand_in(self: Any, artifact_or_name: Any, type: str | None = None,
                                        aliases: list[str] | None = None, use_as: str | None = None) -> None:  # fmt: skip
        calls.append((self.name, artifact_or_name, type))

    assert (
        inspect.signature(recording_use_artifact_stand_in).parameters.keys()
        == inspect.signature(real).parameters.keys()
    )
    monkeypatch.setattr(wandb.Run, "use_artifact", recording_use_artifact_stand_in)
    runs = trained_lineage(tmp_path, data_dir)
    assert (
        main(["export", "wandb", str(runs), "--runs", str(runs), "--project", "proj", "--entity", "ent"]) == 0
    )
    assert calls == [
        ("sft-1 [sft]", "ent/proj/base:base-0", "model"),
        ("sft-1 gsm8k", "ent/proj/sft:sft-1", "model"),
    ]


def test_reasoning_runs_get_thinking_and_answer_columns(
    wandb_env: Path, tmp_path: Path, data_dir: Path
) -> None:
    replay = write_replay(data_dir, tmp_path / "think.jsonl", 2, think=True)
    runs = tmp_path / "runs"
    harness.evaluate(f"replay:{replay}", "gsm8k", limit=2, runs=runs, progress=False,
                     scoring=SuiteOptions(reasoning=ReasoningSpec("think-tags")))  # fmt: skip
    assert (
        main(["export", "wandb", f"replay:{replay}", "--runs", str(runs), "--project", "p", "--clip", "0"])
        == 0
    )
    [ev] = offline_runs(wandb_env).values()
    assert ev["artifacts"] == [] and ev["config"]["uses_artifacts"] == []  # unregistered: no model artifact
    table = json.loads((ev["folder"] / "files" / ev["summary"]["samples/path"]).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert rows[1]["thinking"] == ("step 1: " + "ponder " * 40).strip()
    assert (
        rows[1]["answer"]
        == json.loads(replay.read_text().splitlines()[1])["text"].split("</think>")[1].strip()
    )
    assert rows[1]["response"].startswith("<think>step 1")  # --clip 0: whole texts
    assert "ended_inside" in json.dumps(ev["summary"]["reasoning"])


def test_wandb_flag_on_eval_exports_the_runs_just_made(wandb_env: Path, tmp_path: Path, data_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    replay = write_replay(data_dir, tmp_path / "r.jsonl", 2)
    runs = tmp_path / "runs"
    code = main(["eval", "--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", "2", "--runs",
                 str(runs), "--quiet", "--json", "--wandb", "--wandb-project", "proj"])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)  # --json stays parseable: the export's lines go to stderr
    assert "wandb: eval " in captured.err
    [ev] = offline_runs(wandb_env).values()
    assert ev["job_type"] == "eval" and ev["summary"]["exact_match_flex"]["n"] == 2


def test_references_are_redacted_in_config_and_metadata() -> None:
    entry = {"reference": "http://h:8000/v1#m?token=s3cret", "base_model": "http://u:pw@h/v1#m"}
    shown = redacted_entry(entry)
    assert "s3cret" not in json.dumps(shown) and "pw" not in shown["base_model"]
