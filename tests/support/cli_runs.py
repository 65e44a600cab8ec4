"""Shared pieces of the CLI tests: a replay of GSM8K's gold answers, its eval arguments, a clean-error check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def write_gold_replay(data_dir: Path, path: Path, limit: int | None = None) -> Path:
    """`replay:` responses that are GSM8K's reference solutions (every one scores 1.0)."""
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:limit]]
    path.write_text(
        "".join(
            json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": r["answer"]}) + "\n"
            for i, r in enumerate(rows)
        )
    )
    return path


def replay_args(replay: Path, limit: int, out: Path) -> tuple[str, ...]:
    return ("--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", str(limit), "--runs", str(out))


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit `code`, exactly one `harness: error:` line, no traceback, and every needle in stderr."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("harness: error:")]
    assert len(error_lines) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
