"""Shared fixtures: the shared data folder, the CLI as a subprocess, free ports, a real llama.cpp server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()


class BackgroundCheck:
    """A slow single-core check (mypy) started when collection ends, so it runs beside the tests that
    wait on I/O or on one core; its test then only collects the result."""

    def __init__(self, *command: str) -> None:
        import tempfile

        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, *command], stdout=self.output, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def result(self, timeout: float = 900) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.output.seek(0)
        return code, self.output.read().decode(errors="replace")


BACKGROUND: dict[str, BackgroundCheck] = {}


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if any(item.name == "test_mypy_strict_passes" for item in items):
        BACKGROUND["mypy"] = BackgroundCheck("-m", "mypy")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env.update(
        HARNESS_DATA_DIR=str(DATA_DIR), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1"
    )
    env.update(extra)
    return env


def harness(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, env=env or cli_env(), timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def harness_popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or cli_env(), cwd=ROOT,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_samples(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def texts_by_id(run_dir: Path) -> dict[str, str]:
    return {str(r["id"]): r["completions"][0]["texts"][0] for r in read_samples(run_dir)}  # type: ignore[index]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "gsm8k" / "test.jsonl").is_file():
        pytest.fail(f"the shared data folder is missing: {DATA_DIR} (set HARNESS_DATA_DIR)")
    return DATA_DIR


@dataclass(frozen=True)
class EvalResult:
    run_dir: Path
    payload: dict[str, object]
    metrics: dict[str, dict[str, object]]
    seconds: float


def eval_json(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> EvalResult:
    start = time.perf_counter()
    proc = harness("eval", "--json", "--quiet", *args, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)[0]
    return EvalResult(Path(payload["run_dir"]), payload, payload["metrics"], time.perf_counter() - start)


# The embedded model's reference GSM8K run: first 20 problems, greedy, 128 new tokens instead of the pinned
# 512 (the 135M model rambles to the limit: 512 tokens cost ~80 s on 2 cores, 128 ~40 s). The in-process
# run, the same run behind the real server, a SIGKILLed-and-resumed run and transformers on the exported
# weights (tests/integration/test_three_paths.py) all use these arguments, so each run is made once.
EMBEDDED_GSM8K = ("--suite", "gsm8k", "--limit", "20", "--max-tokens", "128")


@pytest.fixture(scope="session")
def embedded_gsm8k_20(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> EvalResult:
    """The reference in-process run (llama.cpp): the embedded model on EMBEDDED_GSM8K."""
    out = tmp_path_factory.mktemp("runs-embedded")
    return eval_json("--checkpoint", "embedded", *EMBEDDED_GSM8K, "--runs", str(out))


@pytest.fixture(scope="session")
def server_gsm8k_20(llama_server: Server, tmp_path_factory: pytest.TempPathFactory) -> EvalResult:
    """The same run behind the real llama.cpp server (`harness serve`), two requests in flight."""
    out = tmp_path_factory.mktemp("runs-server")
    return eval_json("--checkpoint", llama_server.checkpoint(), *EMBEDDED_GSM8K, "--concurrency", "2",
                     "--runs", str(out))  # fmt: skip


@dataclass(frozen=True)
class Server:
    base_url: str
    process: subprocess.Popen[str]

    def checkpoint(self, model: str = "embedded", query: str = "") -> str:
        return f"{self.base_url}#{model}{query}"


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real OpenAI-compatible server process on loopback: `harness serve` (llama.cpp) with the embedded model."""
    port = free_port()
    logs = tmp_path_factory.mktemp("server-logs")
    out_path, err_path = logs / "stdout.log", logs / "stderr.log"
    with out_path.open("w") as out, err_path.open("w") as err:  # files, not pipes: a full pipe would block it
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "serve", "--checkpoint", "embedded", "--port", str(port)],
            stdout=out, stderr=err, text=True, env=cli_env(), cwd=ROOT,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if "ready:" in out_path.read_text():
            break
        time.sleep(0.2)
    if "ready:" not in out_path.read_text():
        process.kill()
        pytest.fail(f"harness serve did not start:\n{out_path.read_text()}\n{err_path.read_text()[-2000:]}")
    yield Server(f"http://127.0.0.1:{port}/v1", process)
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def exported_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`harness export-hf embedded DIR`, once per session: the embedded GGUF as float32 safetensors."""
    pytest.importorskip("transformers", reason="the hf extra is not installed")
    out = tmp_path_factory.mktemp("hf-export") / "smollm2-135m-instruct"
    proc = harness("export-hf", "embedded", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
