"""`harness doctor` runs a program through the sandbox and says what it applied and which limits hold."""

from __future__ import annotations

import os

import pytest

from harness.cli.doctor_cmd import sandbox_report


def test_doctor_reports_the_sandbox_and_its_scaled_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert sandbox_report() is True
    out = capsys.readouterr().out
    assert out.startswith("sandbox: works; tests run in a trusted process apart from the solution\n")
    if os.geteuid() == 0:
        assert "network yes, own uid yes, other processes hidden yes" in out
    assert "of a core free: MBPP limits " in out and "(pinned 5 s, 10 s)" in out
