"""The type checker and the linter are part of the test suite, so CI runs them with everything else."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import BACKGROUND, ROOT, BackgroundCheck


def test_mypy_strict_passes() -> None:
    check = BACKGROUND.get("mypy") or BackgroundCheck("-m", "mypy")  # started when collection ended
    code, output = check.result()
    assert code == 0, output


def test_ruff_passes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_runs_the_readme_test_command_with_the_portable_llama_cpp_build() -> None:
    """CI must run the README's command 2 verbatim, and every install command that compiles llama.cpp
    must ask for the portable build (a native one dies on other CPUs once pip's cache hands it out)."""
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2, commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert (
            "'.[local" in command
            and 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" .venv/bin/pip install' in command
        )
    assert commands[0].endswith("harness eval --checkpoint embedded --limit 5")
