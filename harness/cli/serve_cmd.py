"""`harness serve`: expose a local GGUF checkpoint as an OpenAI-compatible server (llama.cpp's server).

Peers (lm-eval's local-chat-completions, inspect-ai's openai-api provider) and this harness's own
`http://HOST:PORT/v1#MODEL` form can then all hit the very same model. Prints one "ready" line with the
URL once the server answers /v1/models; stops the server on Ctrl-C or SIGTERM (SIGKILL after a grace
period, since llama.cpp's server can ignore SIGTERM for seconds). Before the server starts, the llama.cpp
guard (adapters/llama_guard.py) probes the build in a child process; the server loads the model on the path
that survived, and a build that cannot run on this CPU is an error (exit 5) instead of a dead server.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

GRACE_S = 3.0


def register(commands: Any) -> None:
    p = commands.add_parser(
        "serve", help="serve embedded/gguf:PATH over an OpenAI-compatible API", description=__doc__
    )
    p.add_argument("--checkpoint", default="embedded", metavar="REF", help="embedded (default) or gguf:PATH")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument(
        "--alias", metavar="NAME", help="model name clients send (default: embedded / the file's stem)"
    )
    p.add_argument("--ready-timeout", type=float, default=120.0, metavar="S")
    p.set_defaults(func=run)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from adapters.llama_cpp import embedded_gguf_path, resolve_gguf, server_command, server_threads
    from adapters.llama_guard import native_verdict
    from harness.checkpoints import EmbeddedRef, GgufRef, parse_checkpoint
    from harness.errors import MissingExtraError, UsageError

    ref = parse_checkpoint(args.checkpoint)
    if not isinstance(ref, EmbeddedRef | GgufRef):
        raise UsageError(
            f"harness serve runs llama.cpp models only (embedded, gguf:PATH), not '{ref.raw}'.",
            "Other backends ship their own server (e.g. vllm serve MODEL --enable-lora).",
        )
    for module in (
        "llama_cpp",
        "uvicorn",
        "fastapi",
        "sse_starlette",
        "starlette_context",
        "pydantic_settings",
    ):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(
                f"harness serve needs llama-cpp-python's server parts ('{module}' is missing).",
                "Install the local extra: pip install -e '.[local]'",
            )
    path = embedded_gguf_path() if isinstance(ref, EmbeddedRef) else resolve_gguf(ref.path)
    alias = args.alias or ("embedded" if isinstance(ref, EmbeddedRef) else path.stem)
    base = f"http://{args.host}:{args.port}/v1"
    # The probe runs before the server: a build that dies on this CPU is a clear error (exit 5) here,
    # not a server that crashes on its first long prompt.
    verdict = native_verdict(path, server_threads())
    # The server's own logs (uvicorn writes access lines to stdout) go to stderr: stdout carries only
    # the "ready:" line and the hint, so scripts can wait for it.
    process = subprocess.Popen(
        server_command(path, args.host, args.port, alias, verdict.extra_buffers),
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
    )

    def on_signal(signum: int, _frame: object) -> None:
        # Only raise here: stopping the child inside the handler would re-enter Popen.wait(), whose
        # lock the interrupted wait still holds. The finally clause below stops it.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        deadline = time.monotonic() + args.ready_timeout
        while True:
            if process.poll() is not None:
                print(
                    f"harness: error: the llama.cpp server exited with code {process.returncode} "
                    f"before it was ready (is port {args.port} free?).",
                    file=sys.stderr,
                )
                return 3
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                _stop(process)
                print(
                    f"harness: error: the server did not answer {base}/models within {args.ready_timeout:.0f}s.",
                    file=sys.stderr,
                )
                return 3
            time.sleep(0.25)
        print(f"ready: serving {ref.raw} at {base} as model '{alias}'", flush=True)
        print(f"evaluate it with: harness eval --checkpoint {base}#{alias}", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(process)
