"""`harness leaderboard verify` with a real model: the embedded llama.cpp model's GSM8K run (the session
fixture `embedded_gsm8k_20`, greedy, max_tokens 128) reproduces; the same run with its responses replaced
by other text and re-scored consistently (so `add` accepts it) does not. Three samples are regenerated per
check, at the stored max_tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.api.rescore import rescore
from harness.data import DataSource
from harness.runs.provenance import read_spot_checks
from harness.runs.store import SampleRecord
from harness.types import Completion
from leaderboard.bundle import write_bundle
from leaderboard.spot_check import DISAGREES_EXIT
from suites import get_suite
from tests.conftest import EvalResult, cli_env, harness


def _verify(bundle: Path, *args: str) -> tuple[int, str, str]:
    proc = harness("leaderboard", "verify", str(bundle), "--checkpoint", "embedded", "--sample", "3", *args,
                   env=cli_env(), timeout=600)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_the_embedded_models_own_run_agrees(embedded_gsm8k_20: EvalResult, tmp_path: Path) -> None:
    bundle = write_bundle([embedded_gsm8k_20.run_dir], "llamas", tmp_path / "llamas.zip")
    site = tmp_path / "site-data"
    assert harness("leaderboard", "add", str(bundle), "--site-data", str(site)).returncode == 0
    code, out, err = _verify(bundle, "--site-data", str(site))
    assert code == 0, (out, err)
    assert "PASS: 3/3 samples agree" in out, out
    check = read_spot_checks(site / "llamas")["embedded"]
    assert (check.checked, check.agreed, check.passed, check.regenerated_with) == (3, 3, True, "embedded")


def test_responses_the_model_did_not_write_are_caught(
    embedded_gsm8k_20: EvalResult, tmp_path: Path, data_dir: Path
) -> None:
    forged = tmp_path / "runs" / Path(*embedded_gsm8k_20.run_dir.parts[-3:])
    shutil.copytree(embedded_gsm8k_20.run_dir, forged, ignore=shutil.ignore_patterns(".lock"))
    suite = get_suite("gsm8k")
    gold = {s.id: str(suite.gold_response(s)) for s in suite.load(DataSource(data_dir), 20).samples}
    samples = forged / "samples.jsonl"
    records = [SampleRecord.from_line(line) for line in samples.read_text().splitlines()]
    samples.write_text(
        "".join(
            SampleRecord(
                r.id, r.prompt, r.target, r.request_keys,
                tuple(Completion(texts=(gold[r.id],), finish_reasons=("stop",)) for _ in r.completions),
                r.scores, r.extracted,
            ).to_line()
            for r in records
        )
    )  # fmt: skip
    rescored = rescore(forged, data_dir=data_dir)
    assert rescored.metrics["exact_match_flex"].value == 1.0  # every forged answer is right, and says so
    bundle = write_bundle([forged], "forgers", tmp_path / "forgers.zip")
    added = harness("leaderboard", "add", str(bundle), "--site-data", str(tmp_path / "site-data"))
    assert added.returncode == 0, added.stderr  # the scores follow from the responses

    code, out, err = _verify(bundle)
    assert code == DISAGREES_EXIT, (out, err)
    assert "FAIL: 0/3 samples agree" in out, out
    differing = [line for line in out.splitlines() if "DIFFERS" in line]
    assert len(differing) == 3 and all("sample " in line for line in differing)
    assert all(any(f"sample {sid}:" in line for sid in gold) for line in differing)
    assert out.count("submitted:   ") == 3 and out.count("regenerated: ") == 3
