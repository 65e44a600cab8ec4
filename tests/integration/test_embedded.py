"""The embedded model end to end, offline: a run, a free re-run, and a resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.conftest import (
    EMBEDDED_GSM8K,
    EvalResult,
    eval_json,
    harness,
    harness_popen,
    read_samples,
    texts_by_id,
)

ARGS = ("--checkpoint", "embedded", *EMBEDDED_GSM8K)


def test_embedded_gsm8k_run_writes_the_run_folder(embedded_gsm8k_20: EvalResult) -> None:
    run = embedded_gsm8k_20
    assert run.payload["n_samples"] == 20
    assert run.payload["invocation"]["generated"] == 20
    for name in ("exact_match_flex", "exact_match_strict"):
        metric = run.metrics[name]
        assert metric["n"] == 20 and metric["ci_method"] == "wilson"
        low, high = metric["ci95"]
        assert 0.0 <= low <= metric["value"] <= high <= 1.0 and high > 0.0
    # runs/<checkpoint>/<suite>@<version>/<settings-hash>/
    assert run.run_dir.parent.name == "gsm8k@1.0" and run.run_dir.parent.parent.name == "embedded"
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["generation"] == {
        "max_tokens": 128,  # the override is recorded (the pinned 512: tests/unit/test_gsm8k.py)
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": [],
        "n": 1,
        "seed": 0,
    }
    assert manifest["suite_settings"]["num_fewshot"] == 8
    assert manifest["adapter"].startswith("llama_cpp-") and ":embedded:" in manifest["adapter"]
    assert manifest["status"] == "complete" and manifest["usage"]["completion_tokens"] > 0
    records = read_samples(run.run_dir)
    assert [r["id"] for r in records] == [f"gsm8k-test-{i:04d}" for i in range(20)]
    assert all(r["completions"][0]["texts"][0].strip() for r in records)  # type: ignore[index]


def test_table_printed_for_humans(embedded_gsm8k_20: EvalResult) -> None:
    out = embedded_gsm8k_20.run_dir.parents[2]
    proc = harness("eval", *ARGS, "--runs", str(out), "--quiet")
    assert proc.returncode == 0
    assert (
        "exact_match_flex*" in proc.stdout and "exact_match_strict" in proc.stdout and "95% CI" in proc.stdout
    )
    assert "this run generated 0" in proc.stdout


def test_rerun_makes_zero_generations(embedded_gsm8k_20: EvalResult) -> None:
    out = embedded_gsm8k_20.run_dir.parents[2]
    again = eval_json(*ARGS, "--runs", str(out))
    assert again.payload["invocation"]["generated"] == 0
    assert again.payload["invocation"]["resumed"] == 20
    assert again.metrics == embedded_gsm8k_20.metrics
    assert again.seconds < 10  # "a few seconds": no model load, no generation


def test_sigkill_midway_then_resume_equals_an_uninterrupted_run(
    embedded_gsm8k_20: EvalResult, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    process = harness_popen("eval", *ARGS, "--runs", str(out), "--quiet")
    deadline = time.monotonic() + 300
    samples: Path | None = None
    while time.monotonic() < deadline:
        found = list(out.rglob("samples.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 5:
            samples = found[0]
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert samples is not None, "the run never reached 5 samples"
    killed_at = len(samples.read_text().splitlines())
    assert 5 <= killed_at < 20
    with samples.open("a") as handle:
        handle.write('{"id": "gsm8k-test-0019", "prompt": "torn')  # what a kill mid-write leaves
    resumed = eval_json(*ARGS, "--runs", str(out))
    invocation = resumed.payload["invocation"]
    assert invocation["resumed"] == killed_at and invocation["repaired_bytes"] > 0
    assert invocation["generated"] + invocation["cache_hits"] == 20 - killed_at
    ids = [r["id"] for r in read_samples(resumed.run_dir)]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert resumed.metrics == embedded_gsm8k_20.metrics
    assert texts_by_id(resumed.run_dir) == texts_by_id(
        embedded_gsm8k_20.run_dir
    )  # greedy: same text, sample by sample
