"""docs/python-api.md is executable: every ```python block runs, in order, in one namespace, against an
empty runs folder (the embedded model, IFEval, 20 prompts at 32 and 8 tokens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "python-api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


@pytest.mark.model
def test_every_example_in_the_python_api_doc_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 5, "the page lost its examples"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
    namespace: dict[str, object] = {"__name__": "python_api_doc"}
    for index, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {index}", "exec"), namespace)
    assert (tmp_path / "runs").is_dir()


def test_import_harness_stays_cheap_and_the_api_is_there() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, harness; before = set(sys.modules); "
        "assert not any(m.startswith(('adapters', 'suites', 'harness.api')) for m in before), sorted(before); "
        "assert callable(harness.evaluate) and callable(harness.gate) and callable(harness.load_runs); "
        "import harness.gating.collect, harness.runs.catalog; "  # a subpackage import must not shadow them
        "assert callable(harness.gate) and callable(harness.load_runs) and callable(harness.rescore); "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
