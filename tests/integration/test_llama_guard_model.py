"""The llama.cpp guard with the real embedded model, on every machine (not only on a CPU that breaks it).

The "unsafe" verdict is forced by a probe child that dies of a real illegal instruction
(tests/support/fake_llama_probe.py) for the path under test; the other path runs the real probe.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the local extra is not installed")

from adapters import llama_guard
from adapters.llama_cpp import LlamaCppAdapter, embedded_gguf_path
from adapters.llama_guard import run_probe
from harness.cli import main as harness_main
from harness.types import GenerationSettings, Message, Request
from tests.conftest import cli_env, harness, read_samples

pytestmark = pytest.mark.model
FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_llama_probe.py"
PROMPTS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Write a haiku about the sea.",
    "List three prime numbers greater than 20, separated by commas.",
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(llama_guard.MODE_ENV, raising=False)


def crash_when(monkeypatch: pytest.MonkeyPatch, on: str, off: str) -> None:
    """The probe child for each path: `real` (the real probe) or `sigill` (a real illegal instruction)."""

    def command(model_path: Path, extra_buffers: bool, threads: int) -> list[str]:
        return [
            sys.executable, str(FAKE), str(model_path), "--extra-buffers", "on" if extra_buffers else "off",
            "--threads", str(threads), "--on", on, "--off", off,
            "--system-info", "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |",
        ]  # fmt: skip

    monkeypatch.setattr(llama_guard, "probe_command", command)


def answers(adapter: LlamaCppAdapter) -> list[str]:
    settings = GenerationSettings(max_tokens=40, temperature=0.0, seed=0)
    requests = [Request(f"p{i}", settings, messages=(Message("user", p),)) for i, p in enumerate(PROMPTS)]

    async def run() -> list[str]:
        try:
            return [c.text for c in await adapter.generate(requests)]
        finally:
            await adapter.aclose()

    return asyncio.run(run())


def test_the_real_probe_passes_on_both_paths_here() -> None:
    for extra_buffers in (True, False):
        attempt, info = run_probe(embedded_gguf_path(), extra_buffers, threads=2)
        assert attempt.passed and attempt.stage == "decoded", attempt
        assert "CPU" in info and llama_guard.compiled_features(info)


def test_forced_fallback_loads_without_extra_buffers_and_answers_like_the_normal_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    normal = LlamaCppAdapter(embedded_gguf_path(), "embedded")
    expected = answers(normal)
    assert normal.native_verdict is not None and normal.native_verdict.extra_buffers

    crash_when(monkeypatch, on="sigill", off="real")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-cache"))  # not the verdict just cached
    guarded = LlamaCppAdapter(embedded_gguf_path(), "embedded")
    guarded._load()
    assert guarded.native_verdict is not None and not guarded.native_verdict.extra_buffers
    assert guarded._llm.model_params.use_extra_bufts is False  # the fallback really reached llama.cpp
    assert guarded.native_verdict.attempts[0].detail == "killed by SIGILL (illegal instruction)"
    got = answers(guarded)
    assert all(text.strip() for text in got)
    if "AMX_INT8" in llama_guard.compiled_features(normal.native_verdict.system_info):
        return  # a native AMX build: its Q4_1 tile kernels round differently from the fallback's
    # No extra-buffer kernel exists for Q4_1 outside AMX (llama.cpp repacks Q4_0, Q4_K, IQ4_NL, ...), so
    # both paths run the same kernels and must agree token for token. (Measured on a Q4_0 requantization,
    # where repacking applies: 1/10 greedy texts identical, the fallback 10-21% slower on AVX2.)
    assert got == expected


def test_eval_with_an_unusable_library_exits_5_with_one_paragraph_and_keeps_finished_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in cli_env().items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "runs"
    args = ["eval", "--checkpoint", "embedded", "--suite", "gsm8k", "--max-tokens", "16", "--runs", str(out)]
    assert harness_main([*args, "--limit", "2", "--quiet"]) == 0
    (samples,) = out.rglob("samples.jsonl")
    before = samples.read_bytes()
    assert len(read_samples(samples.parent)) == 2
    capsys.readouterr()

    crash_when(monkeypatch, on="sigill", off="sigill")
    monkeypatch.setattr(llama_guard, "cpu_flags", lambda: frozenset({"pni", "ssse3", "avx", "avx2", "fma"}))
    assert harness_main([*args, "--limit", "4", "--quiet"]) == 5
    err = capsys.readouterr().err
    assert "Illegal instruction" not in err and "Traceback" not in err
    (paragraph,) = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert "compiled for CPU features this CPU" in paragraph and "AVX512, AMX_INT8" in paragraph
    assert (
        'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"' in paragraph
        and "--force-reinstall --no-cache-dir" in paragraph
    )
    assert samples.read_bytes() == before  # the two finished samples, untouched


def test_doctor_reports_the_build_and_a_fresh_probe(tmp_path: Path) -> None:
    proc = harness("doctor", env=cli_env(XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert "llama.cpp: llama-cpp-python" in proc.stdout
    assert "AVX2" in lines["compiled"] or "NEON" in lines["compiled"]
    assert lines["probe"].split(":", 1)[1].startswith(" passed")
    assert "extra buffer types on" in lines["path"] and "HARNESS_LLAMA_EXTRA_BUFFERS=auto" in lines["path"]
    assert lines["portable"].split()[1] in ("yes:", "no:")


def test_serve_checks_the_guard_setting_before_it_starts_a_server(tmp_path: Path) -> None:
    env = cli_env(XDG_CACHE_HOME=str(tmp_path / "cache"), HARNESS_LLAMA_EXTRA_BUFFERS="sometimes")
    proc = harness("serve", "--checkpoint", "embedded", "--port", "9", env=env, timeout=120)
    assert proc.returncode == 2 and "HARNESS_LLAMA_EXTRA_BUFFERS='sometimes'" in proc.stderr
