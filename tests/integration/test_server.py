"""A real OpenAI-compatible server process (llama.cpp, started by `harness serve`) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import EvalResult, Server, eval_json, read_samples, texts_by_id
from tests.support.fault_proxy import FaultProxy


def test_server_results_equal_the_in_process_run(
    server_gsm8k_20: EvalResult, embedded_gsm8k_20: EvalResult
) -> None:
    """Same GGUF, same chat template, greedy: every response and so every score is identical.

    (`harness serve` removes llama-cpp-python's default repeat_penalty=1.1, which the stock server
    applies to every request; with it, these 20 problems scored 5% flex over HTTP and 0% in-process.)
    llama.cpp's Python server decodes one request at a time: a deep queue only adds waiting time that
    counts against each request's timeout, so two are kept in flight.
    """
    served = server_gsm8k_20
    assert served.payload["invocation"]["generated"] == 20
    assert texts_by_id(served.run_dir) == texts_by_id(embedded_gsm8k_20.run_dir)
    assert served.metrics == embedded_gsm8k_20.metrics


def test_faults_between_harness_and_server_do_not_lose_or_duplicate_samples(
    llama_server: Server, tmp_path: Path
) -> None:
    upstream = urlsplit(llama_server.base_url)
    plan = {1: "429", 2: "500", 4: "reset", 6: "slow", 7: "truncate", 9: "hang", 10: "500", 12: "reset"}
    common = ("--suite", "gsm8k", "--limit", "8", "--max-tokens", "48", "--concurrency", "2")
    with FaultProxy(f"http://{upstream.netloc}", plan.get, retry_after_s=1, slow_s=2.0, hang_s=30.0) as proxy:
        faulty = eval_json(
            "--checkpoint",
            f"{proxy.base_url}/v1#embedded",
            *common,
            "--timeout",
            "10",
            "--runs",
            str(tmp_path / "faulty"),
        )
    assert set(proxy.injected) == {"429", "500", "reset", "slow", "truncate", "hang"}
    # Each fault but "slow" costs one retry (more only if the loaded machine pushes a request past --timeout).
    assert faulty.payload["invocation"]["retries"] >= sum(proxy.injected.values()) - proxy.injected["slow"]
    ids = [r["id"] for r in read_samples(faulty.run_dir)]
    assert sorted(ids) == [f"gsm8k-test-{i:04d}" for i in range(8)]
    clean = eval_json("--checkpoint", llama_server.checkpoint(), *common, "--runs", str(tmp_path / "clean"))
    assert texts_by_id(faulty.run_dir) == texts_by_id(clean.run_dir)
    assert faulty.metrics == clean.metrics


def test_serve_stops_cleanly_on_sigterm() -> None:
    """llama.cpp's server can ignore SIGTERM for seconds; `harness serve` must still exit and leave no child."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, cli_env, free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cli_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("ready:")
        children = [
            p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, f"--port\0{port}\0")
        ]
        assert any(_cmdline_has(p, "adapters.llama_server") for p in children)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 128 + signal.SIGTERM
        assert time.monotonic() - start < 15
        assert not any(
            (p / "cmdline").exists() and _cmdline_has(p, "adapters.llama_server") for p in children
        )
    finally:  # a failed assertion must not leave a server behind
        process.kill()
        process.wait()
        for leftover in Path("/proc").iterdir():
            if leftover.name.isdigit() and _cmdline_has(leftover, f"--port\0{port}\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(leftover.name), signal.SIGKILL)


def _cmdline_has(proc_dir: Path, needle: str) -> bool:
    try:
        return needle in (proc_dir / "cmdline").read_text()
    except OSError:
        return False


def test_text_completions_mode(llama_server: Server, tmp_path: Path) -> None:
    """`?api=text` sends the suite's plain-text few-shot prompt to /v1/completions, stopping at "Q:"."""
    run = eval_json(
        "--checkpoint",
        llama_server.checkpoint(query="?api=text"),
        "--suite",
        "gsm8k",
        "--limit",
        "2",
        "--max-tokens",
        "64",
        "--concurrency",
        "2",
        "--runs",
        str(tmp_path),
    )
    records = read_samples(run.run_dir)
    assert len(records) == 2
    for record in records:
        text = record["completions"][0]["texts"][0]  # type: ignore[index]
        assert text.strip() and "Q:" not in text
