"""Three CLI fixes from issue 18: `harness doctor` fails on a missing or incomplete HARNESS_DATA_DIR, and
a reader that closes the pipe early (`harness ... | head`) ends the command quietly with exit 141."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import BROKEN_PIPE_EXIT, doctor_cmd
from tests.conftest import ROOT, cli_env


@pytest.fixture
def quick_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's slow probes (sandbox calibration, llama.cpp) pass at once; the data check is real."""
    monkeypatch.setattr(doctor_cmd, "sandbox_report", lambda: True)
    monkeypatch.setattr(doctor_cmd, "_llama_cpp_report", lambda: 0)


def run_doctor(monkeypatch: pytest.MonkeyPatch, data_dir: str | None) -> int:
    if data_dir is None:
        monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("HARNESS_DATA_DIR", data_dir)
    return doctor_cmd.run(argparse.Namespace())


def test_doctor_fails_on_a_data_dir_that_does_not_exist(
    quick_doctor: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-data"
    assert run_doctor(monkeypatch, str(missing)) == 4
    out = capsys.readouterr().out
    assert f"  FAILED    {missing} does not exist or is not a folder\n" in out
    assert "  fix       point HARNESS_DATA_DIR at the folder holding the upstream files" in out


def test_doctor_fails_on_a_data_dir_without_the_benchmark_files(
    quick_doctor: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("{}\n")
    assert run_doctor(monkeypatch, str(tmp_path)) == 4
    out = capsys.readouterr().out
    assert "  missing   ifeval/input_data.jsonl  (ifeval)\n" in out
    assert "  missing   gsm8k/test.jsonl" not in out
    assert "  FAILED    5 of 6 benchmark files are missing" in out and "  fix       " in out


def test_doctor_passes_with_the_shared_data_and_with_the_hub(
    quick_doctor: None, monkeypatch: pytest.MonkeyPatch, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_doctor(monkeypatch, str(data_dir)) == 0
    assert "  ok        all 6 benchmark files are there\n" in capsys.readouterr().out
    assert run_doctor(monkeypatch, None) == 0
    out = capsys.readouterr().out
    assert "data:  the Hugging Face hub (no HARNESS_DATA_DIR)\n" in out and "FAILED" not in out


def test_doctor_still_fails_on_a_failed_sandbox(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor_cmd, "sandbox_report", lambda: False)
    monkeypatch.setattr(doctor_cmd, "_llama_cpp_report", lambda: 0)
    assert run_doctor(monkeypatch, str(data_dir)) == 1


def test_doctor_token_line_never_shows_the_token(
    quick_doctor: None, monkeypatch: pytest.MonkeyPatch, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_DoctorMustNotPrintThis")
    run_doctor(monkeypatch, str(data_dir))
    out = capsys.readouterr().out
    assert "a token is set" in out and "hf_DoctorMustNotPrintThis" not in out


def test_doctor_lists_the_files_the_suites_read() -> None:
    from suites import alice, ifeval, mbpp, safety

    names = {name for _, name in doctor_cmd.BENCHMARK_FILES}
    assert names == {
        "gsm8k/test.jsonl", ifeval.DATA_FILE, mbpp.MBPP.data_file, mbpp.MBPPSanitized.data_file,
        safety.HARMBENCH_FILE, safety.XSTEST_FILE,
    }  # fmt: skip
    assert {name for _, name in doctor_cmd.OPTIONAL_FILES} == {alice.TRAIN_FILE}
    gsm8k_source = (ROOT / "suites" / "gsm8k.py").read_text(encoding="utf-8")
    assert 'jsonl_or_hub(source, "gsm8k/test.jsonl"' in gsm8k_source


@pytest.mark.parametrize(
    "args", [("suites",), ("checkpoints", "--runs", "{tmp}", "--json"), ("runs", "--runs", "{tmp}")]
)
def test_a_pipe_closed_early_ends_quietly_with_141(args: tuple[str, ...], tmp_path: Path) -> None:
    """`harness ... | head -1` with the reader gone before the first write: no BrokenPipe traceback."""
    argv = [a.replace("{tmp}", str(tmp_path / "runs")) for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes anything
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == BROKEN_PIPE_EXIT, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "Exception ignored" not in stderr


def test_head_in_a_shell_pipeline_gets_the_first_line_and_no_traceback() -> None:
    script = f"'{sys.executable}' -m harness suites | head -1"
    proc = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.startswith("suite ")
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
