"""A stand-in for `adapters.llama_probe` that dies the way a bad llama.cpp build does, on any machine.

    python tests/support/fake_llama_probe.py MODEL --extra-buffers on|off --on BEHAVIOUR --off BEHAVIOUR
        [--system-info TEXT] [--count FILE]

BEHAVIOUR: `pass` (reports every stage, exit 0), `sigill` (reports `imported`, then executes a real illegal
instruction, as an AVX-512 or AMX kernel does on a CPU that cannot run it), `error` (a Python exception,
exit 1), `hang` (sleeps for a minute), `real` (hands over to the real probe). `--count` appends one line per start, so a test can see
whether the guard ran a probe or used its cache.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import signal
import sys
import time
from pathlib import Path

# ud2 (x86-64) / udf #0 (aarch64): instructions defined to be illegal.
ILLEGAL = {
    "x86_64": b"\x0f\x0b",
    "AMD64": b"\x0f\x0b",
    "aarch64": b"\x00\x00\x00\x00",
    "arm64": b"\x00\x00\x00\x00",
}


def execute_illegal_instruction() -> None:
    code = ILLEGAL.get(platform.machine())
    if code is None:  # another architecture: the same signal, sent instead of raised by the CPU
        os.kill(os.getpid(), signal.SIGILL)
        return
    memory = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    memory.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    ctypes.CFUNCTYPE(None)(address)()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--extra-buffers", choices=("on", "off"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--on", default="pass")
    parser.add_argument("--off", default="pass")
    parser.add_argument("--system-info", default="CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 |")
    parser.add_argument("--count")
    args = parser.parse_args()
    if args.count:
        with Path(args.count).open("a") as handle:
            handle.write(f"{args.extra_buffers}\n")
    behaviour = args.on if args.extra_buffers == "on" else args.off
    if behaviour == "real":
        sys.argv = [
            sys.argv[0],
            args.model,
            "--extra-buffers",
            args.extra_buffers,
            "--threads",
            str(args.threads),
        ]
        from adapters.llama_probe import main as real_probe

        return real_probe()
    print(json.dumps({"stage": "start"}), flush=True)
    print(json.dumps({"stage": "imported", "version": "fake", "system_info": args.system_info}), flush=True)
    if behaviour == "sigill":
        execute_illegal_instruction()
    if behaviour == "hang":
        time.sleep(60)
    if behaviour == "error":
        raise ValueError("gguf_init_from_file: failed to read the model (a stand-in error)")
    for stage in ("loaded", "prompt", "decoded"):
        print(json.dumps({"stage": stage}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
