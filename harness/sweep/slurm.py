"""The Slurm executor: a sweep as one array job, one task per (checkpoint, suite, shard).

`submit_sweep` writes, under `<runs>/.slurm/<sweep>-<time>/`:
- `sweep.sbatch`: the array job (`#SBATCH --array=0-K`, partition, account, GPUs, CPUs, memory, time,
  the sweep's extra lines, `--requeue`, logs in `logs/%A_%a.out`);
- `tasks.sh`: the task table, line K+1 for array task K (shell-quoted assignments the script evals).

Each task runs `python -m harness eval --shard I/N ... --quiet` with the interpreter that submitted it,
so a requeued or resubmitted task resumes its shard by sample id, and the last shard to finish merges the
run (harness.shards). Tasks pass `--no-cache`: the response cache is SQLite in WAL mode, which needs
shared memory that NFS and Lustre do not give; resume comes from the shard's samples file instead.

An endpoint checkpoint with `serve:` is served inside its task: `{port}` in the command becomes
`serve_port(reference)`, a port derived from the reference, so every shard of the checkpoint evaluates
`http://127.0.0.1:PORT/v1#MODEL` and lands in one run folder (a port picked at random would give each
shard its own folder and adapter identity, and the shards would never merge). A second task of the same
checkpoint on one node waits for the port. The task waits for `GET /v1/models`, then stops the server's
whole process group on exit. API keys travel as variable names (`api_key_env`), never as values.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.checkpoints import redact_reference
from harness.errors import UsageError
from harness.sweep.spec import SlurmOptions, SweepCheckpoint, SweepSpec, SweepTask

SCRIPT, TABLE, LOGS, SUBMISSIONS = "sweep.sbatch", "tasks.sh", "logs", ".slurm"
SERVE_WAIT_S = 1800  # a large model loads for minutes
_PORTS = (20000, 40000)

_GENERATION_FLAGS = {
    "seed": "--seed", "samples": "--samples", "temperature": "--temperature", "top_p": "--top-p",
    "max_tokens": "--max-tokens", "thinking_budget": "--thinking-budget",
}  # fmt: skip
_BACKEND_FLAGS = {
    "concurrency": "--concurrency", "timeout": "--timeout", "max_attempts": "--max-attempts",
    "batch_size": "--batch-size", "device": "--device", "api_key_env": "--api-key-env",
}  # fmt: skip


@dataclass(frozen=True)
class SlurmSubmission:
    job_id: str | None  # None for a dry run
    script: Path
    tasks: int
    table: Path
    logs: Path


def serve_port(reference: str) -> int:
    """The port a served checkpoint listens on: stable per reference (see the module doc)."""
    digest = int(hashlib.sha256(reference.encode()).hexdigest()[:8], 16)
    return _PORTS[0] + digest % (_PORTS[1] - _PORTS[0])


def served_reference(checkpoint: SweepCheckpoint) -> str:
    """What a task evaluates: the reference itself, or for a served checkpoint the local server."""
    if checkpoint.serve is None:
        return checkpoint.reference
    base, hash_mark, model = checkpoint.reference.partition("#")
    if not hash_mark or not model or not base.startswith(("http://", "https://")):
        raise UsageError(
            f"The sweep checkpoint '{checkpoint.reference}' has 'serve' but is not an endpoint reference.",
            "With serve:, write ref as http://HOST:PORT/v1#MODEL (MODEL is the name the server serves).",
        )
    path = base.split("://", 1)[1].partition("/")[2] or "v1"
    return f"http://127.0.0.1:{serve_port(checkpoint.reference)}/{path}#{model}"


def task_arguments(spec: SweepSpec, task: SweepTask, runs_root: Path) -> list[str]:
    """`harness eval` arguments for one task (after --checkpoint)."""
    args = ["--suite", task.suite, "--shard", f"{task.shard_index}/{task.shard_count}"]
    if spec.limit is not None:
        args += ["--limit", str(spec.limit)]
    args += _flags(spec.generation, _GENERATION_FLAGS)
    if spec.generation.get("logprobs") is True:
        args.append("--logprobs")
    args += _flags(task.checkpoint.backend, _BACKEND_FLAGS)
    for replica in task.checkpoint.replicas:
        args += ["--replica", replica]
    if spec.data_dir is not None:
        args += ["--data-dir", str(spec.data_dir)]
    if spec.judge is not None:
        args += ["--judge", spec.judge]
    return [*args, "--runs", str(runs_root), "--no-cache", "--quiet"]


def _flags(values: Mapping[str, Any], flags: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, flag in flags.items():
        if values.get(key) is not None:
            out += [flag, str(values[key])]
    return out


def table_line(spec: SweepSpec, task: SweepTask, runs_root: Path) -> str:
    serve = task.checkpoint.serve
    command = "" if serve is None else serve.replace("{port}", str(serve_port(task.checkpoint.reference)))
    arguments = " ".join(shlex.quote(a) for a in task_arguments(spec, task, runs_root))
    return (
        f"SERVE={shlex.quote(command)}; CHECKPOINT={shlex.quote(served_reference(task.checkpoint))}; "
        f"ARGS=({arguments})"
    )


def sbatch_header(options: SlurmOptions, tasks: int, logs: Path, name: str) -> list[str]:
    lines = [
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{tasks - 1}",
        f"#SBATCH --output={logs}/%A_%a.out",
        "#SBATCH --open-mode=append",  # a requeued task adds to its log
        "#SBATCH --requeue",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        f"#SBATCH --chdir={Path.cwd()}",
    ]
    for flag, value in (("partition", options.partition), ("account", options.account)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    if options.gpus_per_task:
        lines.append(f"#SBATCH --gres=gpu:{options.gpus_per_task}")  # also where cons_tres is absent
    if options.mem:
        lines.append(f"#SBATCH --mem={options.mem}")
    if options.time:
        lines.append(f"#SBATCH --time={options.time}")
    lines += [line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in options.sbatch_lines]
    return lines


_BODY = r"""
set -euo pipefail
PYTHON={python}
TABLE={table}
TASK=${{SLURM_ARRAY_TASK_ID:?this script runs as a Slurm array task}}
LINE=$(sed -n "$((TASK + 1))p" "$TABLE")
[ -n "$LINE" ] || {{ echo "harness: no task $TASK in $TABLE" >&2; exit 2; }}
eval "$LINE"
echo "harness: task $TASK (job ${{SLURM_JOB_ID:-?}}, restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname): $CHECKPOINT ${{ARGS[*]}}"
SERVER=
stop_server() {{
    [ -n "$SERVER" ] || return 0
    kill -TERM -- "-$SERVER" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVER" 2>/dev/null || return 0; sleep 1; done
    kill -KILL -- "-$SERVER" 2>/dev/null || true
}}
trap stop_server EXIT
trap 'exit 143' TERM INT
if [ -n "$SERVE" ]; then
    "$PYTHON" -c "$WAIT_PORT_FREE" "$CHECKPOINT" {wait}
    setsid bash -c "exec $SERVE" &
    SERVER=$!
    "$PYTHON" -c "$WAIT_MODELS" "$CHECKPOINT" {wait} "$SERVER"
fi
"$PYTHON" -m harness eval --checkpoint "$CHECKPOINT" "${{ARGS[@]}}" &
wait $!
"""

# Python snippets the script runs (the compute node may lack curl): wait for the port to be free (another
# task of this checkpoint on the node), then for the server's model list.
_WAIT_PORT_FREE = """import socket, sys, time
port = int(sys.argv[1].split("#")[0].rsplit(":", 1)[1].split("/")[0]); end = time.time() + float(sys.argv[2])
while True:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
    try:
        s.bind(("127.0.0.1", port)); s.close(); break
    except OSError:
        s.close()
        if time.time() > end: sys.exit(f"harness: port {port} stayed busy")
        time.sleep(5)
"""
_WAIT_MODELS = """import os, sys, time, urllib.request
base = sys.argv[1].split("#")[0].rstrip("/"); end = time.time() + float(sys.argv[2]); pid = int(sys.argv[3])
while True:
    try:
        urllib.request.urlopen(base + "/models", timeout=5).read(); break
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("harness: the serve command exited before it served " + base)
        if time.time() > end: sys.exit("harness: no answer from " + base + "/models")
        time.sleep(2)
"""


def sbatch_script(options: SlurmOptions, tasks: int, folder: Path, name: str) -> str:
    header = sbatch_header(options, tasks, folder / LOGS, name)
    body = _BODY.format(
        python=shlex.quote(sys.executable), table=shlex.quote(str(folder / TABLE)), wait=SERVE_WAIT_S
    )
    snippets = [f"WAIT_PORT_FREE={shlex.quote(_WAIT_PORT_FREE)}", f"WAIT_MODELS={shlex.quote(_WAIT_MODELS)}"]
    return "\n".join(["#!/bin/bash", *header, "", *snippets, body.lstrip("\n")])


def submit_sweep(
    spec: SweepSpec, runs_root: Path, options: SlurmOptions, dry_run: bool = False
) -> SlurmSubmission:
    """Write the array job and its task table; submit it with `sbatch --parsable` unless `dry_run`."""
    tasks = spec.tasks(options.shards)
    for checkpoint in spec.checkpoints:
        served_reference(checkpoint)  # a bad serve entry fails before anything is written
        _refuse_credentials(checkpoint)
    base = runs_root / SUBMISSIONS / f"{spec.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, suffix = base, 1
    while folder.exists():  # a resubmission within the same second
        suffix += 1
        folder = base.with_name(f"{base.name}.{suffix}")
    (folder / LOGS).mkdir(parents=True)
    table = folder / TABLE
    table.write_text("".join(table_line(spec, t, runs_root) + "\n" for t in tasks), encoding="utf-8")
    script = folder / SCRIPT
    script.write_text(
        sbatch_script(options, len(tasks), folder, f"harness-{spec.path.stem}"), encoding="utf-8"
    )
    script.chmod(0o755)
    job_id = None if dry_run else _sbatch(script)
    return SlurmSubmission(job_id, script, len(tasks), table, folder / LOGS)


def _refuse_credentials(checkpoint: SweepCheckpoint) -> None:
    """The task table is a file in the runs folder, read by every task: a password in a URL must not
    go there. Keys travel by name (`api_key_env`), read from each task's environment."""
    for url in (checkpoint.reference, *checkpoint.replicas):
        parts = urlsplit(url) if "://" in url else None
        if parts is not None and (parts.username or parts.password):
            raise UsageError(
                f"A URL in the sweep ({redact_reference(url)}) carries credentials, which the Slurm task "
                "table would hold in plain text.",
                "Drop them from the URL and name the variable that holds the key: backend: {api_key_env: VAR}.",
            )


def _sbatch(script: Path, extra: Sequence[str] = ()) -> str:
    try:
        done = subprocess.run(
            ["sbatch", "--parsable", *extra, str(script)], capture_output=True, text=True, timeout=120
        )
    except FileNotFoundError:
        raise UsageError(
            "sbatch is not on PATH: this machine is not a Slurm submit host.",
            f"Run on a login node, or pass --dry-run and submit {script} there with sbatch.",
        ) from None
    except subprocess.TimeoutExpired:
        raise UsageError("sbatch did not answer in 120 s.", "Is slurmctld up? Try `sinfo`.") from None
    if done.returncode != 0:
        raise UsageError(
            f"sbatch refused {script}: {done.stderr.strip()[:500] or done.stdout.strip()[:500]}",
            "Check the partition, account and limits (sinfo, sacctmgr show assoc), or edit the sweep's slurm: block.",
        )
    return done.stdout.strip().split(";")[0]
