"""Issue 21's "done when": a package built from the embedded model's runs reproduces with `harness
reproduce` from a fresh clone, and a tampered one fails.

The package holds the reference embedded GSM8K run (tests/conftest.py `embedded_gsm8k_20`: 20 problems,
greedy, 128 new tokens) with a declared subset of 3 samples. It is extracted to a folder of its own and its
reproduce.sh runs there with this venv's python and the extracted code/ on PYTHONPATH (what a grader with
the project's dependencies does): llama.cpp in process is deterministic, so the 3 responses must be
identical. Then one byte of the packaged samples.jsonl changes and `harness reproduce` refuses the zip.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from harness.errors import ExitCode
from tests.conftest import EvalResult, cli_env, harness

pytestmark = pytest.mark.model


def test_embedded_package_reproduces_from_a_fresh_clone(
    embedded_gsm8k_20: EvalResult, tmp_path: Path
) -> None:
    runs = embedded_gsm8k_20.run_dir.parents[2]
    package = tmp_path / "embedded-repro.zip"
    made = harness("package", "embedded", "--repro", str(package), "--subset-limit", "3", "--runs", str(runs))
    assert made.returncode == 0, made.stderr
    clone = tmp_path / "clone"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(clone)
    script = clone / "reproduce.sh"
    assert "--subset gsm8k:3" in script.read_text()
    env = cli_env(PYTHON=sys.executable)
    where = subprocess.run(
        [sys.executable, "-c", "import harness, reports; print(harness.__file__); print(reports.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(clone / "code")}, check=True,
    )  # fmt: skip
    assert all(line.startswith(str(clone / "code")) for line in where.stdout.splitlines())
    start = time.perf_counter()
    proc = subprocess.run(
        ["sh", str(script), "--quiet"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("embedded") and "gsm8k" in line)
    assert "3/3" in row and "identical responses" in row and row.rstrip().endswith("REPRODUCED"), proc.stdout
    assert "reproduced: all 1 suite run(s)" in proc.stdout
    print(f"package {package.stat().st_size:,} bytes; reproduce.sh took {seconds:.1f} s")

    with zipfile.ZipFile(package) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    samples = next(name for name in files if name.endswith("/samples.jsonl"))
    at = files[samples].index(b'"texts": ["') + len(b'"texts": ["')
    altered = bytearray(files[samples])
    altered[at] = ord("X") if altered[at] != ord("X") else ord("Y")
    files[samples] = bytes(altered)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    refused = harness("reproduce", str(tampered), "--quiet")
    assert refused.returncode == ExitCode.DATA, refused.stdout + refused.stderr
    assert f"{samples} was altered" in refused.stderr and "REPRODUCED" not in refused.stdout
