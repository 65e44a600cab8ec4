"""A leaderboard submission made of reward hacks scores 0 end to end: eval, submit, and add's re-score.

A replayed MBPP run answers each of the first 8 tasks (11-18) with one hack of the corpus that works for any
task (tests/support/reward_hacks.py, `GENERIC`), renamed to the task's function. The run must score
pass@1 = 0 when it is made (`harness eval`) and again when `harness leaderboard add` re-runs every stored
response in the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.data import DataSource
from harness.runs.store import SampleRecord
from suites.mbpp import MBPP
from tests.conftest import cli_env, eval_json, harness
from tests.support.reward_hacks import GENERIC, HACKS, adapt, task_function

LIMIT = 8  # tasks 11..18


def _hack_replay(path: Path, data_dir: Path) -> dict[str, str]:
    """Writes the replay file; returns which hack answers each sample."""
    samples = MBPP().load(DataSource(data_dir), LIMIT).samples
    chosen = {s.id: GENERIC[i % len(GENERIC)] for i, s in enumerate(samples)}
    lines = []
    for sample in samples:
        name = task_function(sample.target, sample.metadata["tests"])
        code = adapt(HACKS[chosen[sample.id]], name)
        lines.append(json.dumps({"sample_id": sample.id, "text": f"[BEGIN]\n{code}\n[DONE]"}) + "\n")
    path.write_text("".join(lines))
    return chosen


def test_a_run_of_hacks_scores_zero_when_made_and_when_re_scored(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "runs"
    replay = tmp_path / "hacks.jsonl"
    chosen = _hack_replay(replay, data_dir)
    assert len(set(chosen.values())) == LIMIT  # eight different hacks

    run = eval_json(
        "--checkpoint", f"replay:{replay}", "--suite", "mbpp", "--limit", str(LIMIT), "--runs", str(root)
    )
    lines = (run.run_dir / "samples.jsonl").read_text().splitlines()
    per_sample = {r.id: r.scores["pass@1"] for r in map(SampleRecord.from_line, lines)}
    assert per_sample == dict.fromkeys(chosen, 0.0), {chosen[k]: v for k, v in per_sample.items() if v}
    assert run.metrics["pass@1"]["value"] == 0.0

    bundle = tmp_path / "hacks.zip"
    submit = harness(
        "leaderboard", "submit", str(root), "--team", "hackers", "--out", str(bundle), "--allow-replay"
    )
    assert submit.returncode == 0, submit.stderr
    site = tmp_path / "site"
    add = harness(
        "leaderboard", "add", str(bundle), "--site-data", str(site), "--allow-replay", env=cli_env()
    )
    assert add.returncode == 0, add.stderr
    assert f"mbpp  pass@1=0.0000  n={LIMIT}  (re-scored from responses)" in add.stdout, add.stdout
    (accepted,) = (site / "hackers").rglob("metrics.json")  # what the site publishes for the run
    assert json.loads(accepted.read_text())["metrics"]["pass@1"]["value"] == 0.0
