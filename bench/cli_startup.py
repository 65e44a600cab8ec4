"""CLI start-up: `harness --help` vs `lm_eval --help` vs `inspect --help`.

What is measured: the wall time of each command as a fresh subprocess (the venv's own console
scripts, output discarded), run --runs times each in an interleaved order (harness, lm_eval, inspect,
harness, ...) after one untimed warm-up run of each, so the OS file cache is warm for all three and
background load hits them alike. Reported: median, min and max per command, and each peer's median
divided by ours (how many times longer its start-up takes). `--help` is the cheapest thing a CLI can
do: it measures import cost plus argument-parser construction, which every real invocation pays too.

Two bytecode settings, both measured: `env` runs with the environment as it is (this project's machines
set PYTHONDONTWRITEBYTECODE=1, so the editable checkout's own modules have no .pyc and are compiled
from source at every start, while pip wrote .pyc files for the installed peers); `pyc` drops that
variable and points PYTHONPYCACHEPREFIX at a fresh temporary folder, so the warm-up run writes .pyc
files for all three alike (what a normal install sees from its second run on; the repo stays clean).

Reproduce:

    .venv/bin/python bench/cli_startup.py            # --runs 15

Output: one JSON line per command in bench/out/cli_startup.jsonl and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
COMMANDS = {
    "harness": ["harness", "--help"],
    "lm-eval": ["lm_eval", "--help"],
    "inspect": ["inspect", "--help"],
}


def time_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default 15)")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "cli_startup.jsonl")
    args = parser.parse_args()

    argvs = {name: [str(BIN / argv[0]), *argv[1:]] for name, argv in COMMANDS.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyc-") as prefix:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = prefix
        for mode, env in (("env", dict(os.environ)), ("pyc", cached)):
            measure(mode, env, argvs, args.runs, args.out)
    return 0


def measure(mode: str, env: dict[str, str], argvs: dict[str, list[str]], runs: int, out: Path) -> None:
    for argv in argvs.values():
        time_once(argv, env)  # warm-up: file cache (and, in "pyc" mode, the .pyc files)
    times: dict[str, list[float]] = {name: [] for name in argvs}
    load_before = os.getloadavg()
    for _ in range(runs):
        for name, argv in argvs.items():
            times[name].append(time_once(argv, env))
    load_after = os.getloadavg()

    ours = statistics.median(times["harness"])
    rows = []
    with out.open("a", encoding="utf-8") as handle:
        for name, values in times.items():
            median = statistics.median(values)
            row = {
                "command": " ".join(COMMANDS[name]),
                "bytecode": mode,
                "runs": len(values),
                "median_s": round(median, 3),
                "min_s": round(min(values), 3),
                "max_s": round(max(values), 3),
                "ratio_to_harness": round(median / ours, 2),
                "cpus": os.cpu_count(),
                "load_avg_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            }
            rows.append(row)
            handle.write(json.dumps(row) + "\n")
    print(
        f"\nbytecode: {mode}; {runs} runs each, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} -> {load_after[0]:.2f}\n"
    )
    print("| command | median s | min s | max s | x harness (median) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| `{row['command']}` | {row['median_s']:.3f} | {row['min_s']:.3f} | {row['max_s']:.3f} | {row['ratio_to_harness']:.1f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
