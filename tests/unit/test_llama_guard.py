"""The llama.cpp guard's decisions, on every machine: probe children that pass, die of a real SIGILL, or
fail in Python (tests/support/fake_llama_probe.py); the cache; the error paragraph and its exit code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from adapters import llama_guard
from adapters.llama_guard import (
    NativeLibraryError,
    compiled_features,
    fix_command,
    missing_features,
    native_verdict,
)
from harness.errors import ExitCode, UsageError

FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_llama_probe.py"
AVX512_BUILD = (
    "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | LLAMAFILE = 1 | REPACK = 1 |"
)
ZEN3_FLAGS = frozenset({"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"})


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(64))
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(llama_guard.MODE_ENV, raising=False)


def use_fake(monkeypatch: pytest.MonkeyPatch, count: Path, on: str, off: str, info: str = "") -> None:
    def command(model_path: Path, extra_buffers: bool, threads: int) -> list[str]:
        return [
            sys.executable, str(FAKE), str(model_path), "--extra-buffers", "on" if extra_buffers else "off",
            "--on", on, "--off", off, "--count", str(count), *(["--system-info", info] if info else []),
        ]  # fmt: skip

    monkeypatch.setattr(llama_guard, "probe_command", command)


def starts(count: Path) -> list[str]:
    return count.read_text().split() if count.exists() else []


def test_feature_parsing_and_what_this_cpu_lacks() -> None:
    assert compiled_features(AVX512_BUILD) == [
        "SSE3", "AVX", "AVX2", "F16C", "FMA", "AVX512", "LLAMAFILE", "REPACK"
    ]  # fmt: skip
    assert compiled_features("CPU : SSE3 = 1 | AVX512 = 0 | AMX_INT8 = 1 |") == ["SSE3", "AMX_INT8"]
    assert missing_features(AVX512_BUILD, ZEN3_FLAGS) == ["AVX512"]
    assert missing_features(AVX512_BUILD, ZEN3_FLAGS | {"avx512f"}) == []
    assert missing_features(AVX512_BUILD, frozenset()) == []  # flags unknown: claim nothing


def test_a_passing_probe_keeps_the_fast_path_and_is_cached(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="pass", off="pass")
    verdict = native_verdict(model, threads=1)
    assert verdict.extra_buffers and not verdict.from_cache and starts(count) == ["on"]
    again = native_verdict(model, threads=1)
    assert again.extra_buffers and again.from_cache and starts(count) == ["on"]  # no second child
    model.write_bytes(b"GGUF" + bytes(65))  # another model file: probed again
    native_verdict(model, threads=1)
    assert starts(count) == ["on", "on"]


def test_sigill_with_extra_buffers_falls_back_and_says_so(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="sigill", off="pass")
    with caplog.at_level(logging.WARNING, logger="harness"):
        verdict = native_verdict(model, threads=1)
    assert not verdict.extra_buffers and starts(count) == ["on", "off"]
    first, second = verdict.attempts
    assert first.crashed and not first.passed and first.detail == "killed by SIGILL (illegal instruction)"
    assert first.stage == "imported" and second.passed
    assert "running without them" in caplog.text and "SIGILL" in caplog.text
    assert not native_verdict(model, threads=1).extra_buffers and starts(count) == ["on", "off"]  # cached


def test_no_usable_path_is_one_paragraph_naming_the_feature_and_the_fix(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="sigill", off="sigill", info=AVX512_BUILD)
    monkeypatch.setattr(llama_guard, "cpu_flags", lambda: ZEN3_FLAGS)
    with pytest.raises(NativeLibraryError) as caught:
        native_verdict(model, threads=1)
    error = caught.value
    assert error.exit_code == ExitCode.MISSING_EXTRA
    assert "compiled for CPU features this CPU" in error.problem and "AVX512" in error.problem
    assert "killed by SIGILL" in error.problem and "\n" not in error.message
    assert error.fix is not None and fix_command() in error.fix
    assert (
        'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"' in error.fix
        and "--no-cache-dir --no-deps" in error.fix
    )
    assert sys.executable in error.fix
    # nothing cached: after the reinstall the next run probes again
    with pytest.raises(NativeLibraryError):
        native_verdict(model, threads=1)
    assert starts(count) == ["on", "off", "on", "off"]


def test_a_cpu_without_avx2_is_told_to_build_for_itself(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake(monkeypatch, tmp_path / "count", on="sigill", off="sigill")
    monkeypatch.setattr(llama_guard, "cpu_flags", lambda: frozenset({"pni", "ssse3", "avx"}))
    monkeypatch.setattr(llama_guard.platform, "machine", lambda: "x86_64")
    with pytest.raises(NativeLibraryError) as caught:
        native_verdict(model, threads=1)
    assert "AVX2" in caught.value.problem  # the fake build claims AVX2, which this CPU lacks
    assert caught.value.fix is not None and '"-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF"' in caught.value.fix


def test_a_python_error_is_not_blamed_on_the_cpu(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="error", off="pass")
    with pytest.raises(NativeLibraryError) as caught:
        native_verdict(model, threads=1)
    assert starts(count) == ["on"]  # the other path would not fix a broken file
    assert "exit 1: ValueError: gguf_init_from_file" in caught.value.problem
    assert "CPU" not in caught.value.problem


def test_forced_modes_and_a_bad_setting(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="pass", off="pass")
    monkeypatch.setenv(llama_guard.MODE_ENV, "off")
    assert not native_verdict(model, threads=1).extra_buffers and starts(count) == ["off"]
    monkeypatch.setenv(llama_guard.MODE_ENV, "ON")
    assert native_verdict(model, threads=1).extra_buffers and starts(count) == ["off", "on"]
    monkeypatch.setenv(llama_guard.MODE_ENV, "fast")
    with pytest.raises(UsageError, match="auto, on, off"):
        native_verdict(model, threads=1)


def test_an_unwritable_cache_only_costs_a_probe(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="pass", off="pass")
    assert native_verdict(model, threads=1).extra_buffers
    assert native_verdict(model, threads=1).extra_buffers and starts(count) == ["on", "on"]


def test_a_hanging_probe_is_stopped_and_reported(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "count"
    use_fake(monkeypatch, count, on="hang", off="pass")
    monkeypatch.setattr(llama_guard, "PROBE_TIMEOUT_BASE_S", 1.0)
    with pytest.raises(NativeLibraryError, match="timed out after 1 s"):
        native_verdict(model, threads=1)
    assert starts(count) == ["on"]
