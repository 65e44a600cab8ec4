"""`harness runs` tells runs apart (limit, max_tokens, temperature, judge, reasoning; --json, --csv,
filters), and a larger `--limit` builds on the finished samples of a smaller run of the same settings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.runs.listing import FIELDS, list_runs
from suites import SUITES, get_suite
from tests.conftest import DATA_DIR, eval_json, harness, read_samples
from tests.support.cli_runs import replay_args, write_gold_replay
from tests.support.synthetic_runs import write_runs


@pytest.fixture(scope="module")
def gold_replay(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gold_replay(data_dir, tmp_path_factory.mktemp("replay") / "gold.jsonl", 10)


def _manifest(run_dir: Path) -> dict[str, object]:
    payload = json.loads((run_dir / "manifest.json").read_text())
    assert isinstance(payload, dict)
    return payload


def _last_invocation(run_dir: Path) -> dict[str, object]:
    invocations = _manifest(run_dir)["invocations"]
    assert isinstance(invocations, list)
    last = invocations[-1]
    assert isinstance(last, dict)
    return last


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------- the listing


def test_the_listing_shows_limit_max_tokens_and_temperature(gold_replay: Path, tmp_path: Path) -> None:
    greedy = eval_json(*replay_args(gold_replay, 2, tmp_path))
    warm = eval_json(*replay_args(gold_replay, 3, tmp_path), "--temperature", "0.7", "--max-tokens", "64")
    listing = harness("runs", "--runs", str(tmp_path))
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[1].split() == [
        "run", "status", "samples", "limit", "max_tokens", "temp", "judge", "primary", "metric", "(%)",
        "created", "(UTC)",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    greedy_row = rows[str(greedy.run_dir.relative_to(tmp_path))]
    warm_row = rows[str(warm.run_dir.relative_to(tmp_path))]
    assert greedy_row[1:7] == ["complete", "2/2", "2", "512", "0", "-"]
    assert warm_row[1:7] == ["complete", "3/3", "3", "64", "0.7", "-"]
    assert warm_row[7:9] == ["exact_match_flex", "100.0"]

    records = json.loads(harness("runs", "--runs", str(tmp_path), "--json").stdout)
    assert [list(r) for r in records] == [list(FIELDS)] * 2
    by_limit = {r["limit"]: r for r in records}
    assert by_limit[3] | {"created_at": "-"} == {
        "run": str(warm.run_dir.relative_to(tmp_path)), "checkpoint": f"replay:{gold_replay}",
        "suite": "gsm8k", "suite_version": "1.0", "status": "complete", "samples_done": 3,
        "samples_total": 3, "primary_metric": "exact_match_flex", "primary_value": 1.0, "limit": 3,
        "max_tokens": 64, "temperature": 0.7, "top_p": 1.0, "samples_per_prompt": 1, "seed": 0,
        "judge": "-", "reasoning": "-", "created_at": "-",
    }  # fmt: skip
    assert by_limit[2]["temperature"] == 0.0 and by_limit[2]["max_tokens"] == 512

    table = list(csv.reader(io.StringIO(harness("runs", "--runs", str(tmp_path), "--csv").stdout)))
    assert table[0] == list(FIELDS) and len(table) == 3
    assert sorted(row[FIELDS.index("temperature")] for row in table[1:]) == ["0.0", "0.7"]


def test_the_listing_filters_by_checkpoint_suite_and_status(gold_replay: Path, tmp_path: Path) -> None:
    done = eval_json(*replay_args(gold_replay, 2, tmp_path))
    manifest = _manifest(done.run_dir)
    broken = tmp_path / "other" / "gsm8k@1.0" / "0123456789ab"
    broken.mkdir(parents=True)
    manifest |= {"checkpoint": "http://127.0.0.1:9/v1#other", "status": "failed"}
    (broken / "manifest.json").write_text(json.dumps(manifest))

    def listed(*flags: str) -> list[str]:
        proc = harness("runs", "--runs", str(tmp_path), "--json", *flags)
        assert proc.returncode == 0, proc.stderr
        return [r["run"] for r in json.loads(proc.stdout)]

    own, other = str(done.run_dir.relative_to(tmp_path)), "other/gsm8k@1.0/0123456789ab"
    assert listed() == [other, own]  # in folder order
    assert listed("--checkpoint", "replay:") == [own]
    assert listed("--checkpoint", "127.0.0.1") == [other]
    assert listed("--status", "complete") == [own]
    assert listed("--status", "failed", "--checkpoint", "replay:") == []
    assert listed("--suite", "gsm8k") == [other, own]
    assert listed("--suite", "ifeval") == []
    none = harness("runs", "--runs", str(tmp_path), "--suite", "ifeval")
    assert none.returncode == 0 and "No runs under" in none.stdout and "match the filters" in none.stdout
    wrong = harness("runs", "--runs", str(tmp_path), "--status", "done")
    assert wrong.returncode == 2 and "invalid choice: 'done'" in wrong.stderr
    both = harness("runs", "--runs", str(tmp_path), "--json", "--csv")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_judge_and_reasoning_columns_and_credentials(tmp_path: Path) -> None:
    runs = write_runs(tmp_path, 2, samples_per_run=3, suites=("gsm8k", "safety"))
    root = runs.roots[0]
    judges = {(r.suite, r.judge) for r in list_runs(root)}
    assert judges == {("gsm8k", "-"), ("safety", "refusal-heuristic"), ("safety", "wildguard")}
    plain = harness("runs", "--runs", str(root))
    assert "wildguard" in plain.stdout and "reasoning" not in plain.stdout.splitlines()[1]

    # A reasoning mode (a later suite setting) and a reference with credentials, as a hand-edited manifest.
    safety_run = next(d for (_, suite), d in runs.run_dirs.items() if suite == "safety")
    manifest = _manifest(safety_run)
    settings = manifest["suite_settings"]
    assert isinstance(settings, dict)
    manifest |= {"suite_settings": settings | {"reasoning": "high"}}
    manifest["checkpoint"] = "https://alice:s3cret@api.example.com/v1#m?token=abc"
    (safety_run / "manifest.json").write_text(json.dumps(manifest))
    shown = harness("runs", "--runs", str(root))
    assert shown.returncode == 0, shown.stderr
    header = shown.stdout.splitlines()[1].split()
    assert header[header.index("judge") + 1] == "reasoning"
    modes = {
        line.split()[0]: line.split()[header.index("reasoning")] for line in shown.stdout.splitlines()[3:]
    }
    assert modes[str(safety_run.relative_to(root))] == "high" and set(modes.values()) == {"high", "-"}
    dumped = harness("runs", "--runs", str(root), "--json", "--checkpoint", "api.example.com")
    (record,) = json.loads(dumped.stdout)
    assert record["checkpoint"] == "https://api.example.com/v1#m?token=***" and record["reasoning"] == "high"
    assert "s3cret" not in dumped.stdout and "abc" not in record["checkpoint"]
    assert harness("runs", "--runs", str(root), "--checkpoint", "s3cret", "--json").stdout.strip() == "[]"


def test_the_python_api_lists_runs(gold_replay: Path, tmp_path: Path) -> None:
    import harness as api

    eval_json(*replay_args(gold_replay, 2, tmp_path))
    (row,) = api.list_runs(tmp_path, suite="gsm8k", status="complete")
    assert isinstance(row, api.RunListing)
    assert (row.limit, row.samples_done, row.samples_total, row.primary_value) == (2, 2, 2, 1.0)
    assert api.list_runs(tmp_path, checkpoint="no-such") == ()


# ---------------------------------------------------------------------------------- extending --limit


@pytest.mark.parametrize("name", SUITES.names())
def test_a_smaller_limit_selects_the_first_samples_of_a_larger_one(name: str) -> None:
    """What the extension relies on (its copy checks ids and request keys anyway): in every suite,
    `--limit N` picks the first N samples of one order, and the data hash does not depend on the limit."""
    suite, source = get_suite(name), DataSource(DATA_DIR)
    whole, first = suite.load(source, None), suite.load(source, 5)
    assert [s.id for s in first.samples] == [s.id for s in whole.samples[:5]]
    assert first.sha256 == whole.sha256 and first.total == whole.total


def test_a_larger_limit_reuses_the_smaller_runs_samples(gold_replay: Path, tmp_path: Path) -> None:
    small = eval_json(*replay_args(gold_replay, 3, tmp_path))
    before = _snapshot(small.run_dir)
    proc = harness("eval", "--quiet", *replay_args(gold_replay, 5, tmp_path))
    assert proc.returncode == 0, proc.stderr
    small_name = str(small.run_dir.relative_to(tmp_path))
    assert f"extended from {small_name} (3 samples reused)" in proc.stdout
    assert "this run generated 2, cache hits 0, resumed 3" in proc.stdout
    (large_dir,) = {p.parent for p in tmp_path.rglob("manifest.json")} - {small.run_dir}
    assert f"-> {large_dir}, extended from" in proc.stdout
    invocation = _last_invocation(large_dir)
    assert invocation["extended_from"] == small_name and invocation["status"] == "complete"
    assert (invocation["generated"], invocation["cache_hits"], invocation["resumed"]) == (2, 0, 3)
    records = read_samples(large_dir)
    assert [r["id"] for r in records] == [f"gsm8k-test-{i:04d}" for i in range(5)]
    small_lines = (small.run_dir / "samples.jsonl").read_text().splitlines()
    assert (large_dir / "samples.jsonl").read_text().splitlines()[:3] == small_lines  # copied as is
    assert _snapshot(small.run_dir) == before  # the smaller run is only read
    metrics = json.loads((large_dir / "metrics.json").read_text())["metrics"]
    assert metrics["exact_match_flex"]["n"] == 5 and metrics["exact_match_flex"]["value"] == 1.0

    # Resuming the extended run copies nothing again; `runs` lists both runs, each complete.
    again = eval_json(*replay_args(gold_replay, 5, tmp_path))
    assert again.payload["invocation"]["resumed"] == 5 and again.payload["invocation"]["generated"] == 0
    assert _last_invocation(large_dir)["extended_from"] is None
    listed = {r.limit: r for r in list_runs(tmp_path)}
    assert {k: (r.status, r.samples_done) for k, r in listed.items()} == {
        3: ("complete", 3),
        5: ("complete", 5),
    }


def test_a_larger_limit_picks_the_sibling_covering_most(gold_replay: Path, tmp_path: Path) -> None:
    eval_json(*replay_args(gold_replay, 2, tmp_path))
    four = eval_json(*replay_args(gold_replay, 4, tmp_path))  # itself extended from the run of 2
    assert four.payload["invocation"]["resumed"] == 2
    six = eval_json(*replay_args(gold_replay, 6, tmp_path))
    assert six.payload["invocation"]["resumed"] == 4 and six.payload["invocation"]["generated"] == 2
    assert _last_invocation(six.run_dir)["extended_from"] == str(four.run_dir.relative_to(tmp_path))


def test_a_smaller_limit_reuses_nothing(gold_replay: Path, tmp_path: Path) -> None:
    """Only upward: a smaller limit is a run of its own (its requests come from the response cache)."""
    eval_json(*replay_args(gold_replay, 5, tmp_path))
    smaller = eval_json(*replay_args(gold_replay, 3, tmp_path))
    assert smaller.payload["invocation"] == {
        "generated": 0, "cache_hits": 3, "resumed": 0, "retries": 0, "repaired_bytes": 0, "extended_from": None,
    }  # fmt: skip
    assert _last_invocation(smaller.run_dir)["extended_from"] is None
    assert [r["id"] for r in read_samples(smaller.run_dir)] == [f"gsm8k-test-{i:04d}" for i in range(3)]


@pytest.mark.parametrize(
    "changed",
    [("--temperature", "0.5"), ("--max-tokens", "64"), ("--seed", "7")],
    ids=["temperature", "max_tokens", "seed"],
)
def test_other_settings_reuse_nothing(gold_replay: Path, tmp_path: Path, changed: tuple[str, str]) -> None:
    eval_json(*replay_args(gold_replay, 3, tmp_path))
    other = eval_json(*replay_args(gold_replay, 5, tmp_path), *changed, "--no-cache")
    assert (other.payload["invocation"]["resumed"], other.payload["invocation"]["generated"]) == (0, 5)
    assert _last_invocation(other.run_dir)["extended_from"] is None


def test_a_changed_model_or_fresh_reuses_nothing(gold_replay: Path, tmp_path: Path) -> None:
    replay = tmp_path / "answers.jsonl"
    replay.write_text(gold_replay.read_text())
    runs = tmp_path / "runs"
    eval_json(*replay_args(replay, 3, runs))
    fresh = eval_json(*replay_args(replay, 5, runs), "--fresh")
    assert fresh.payload["invocation"]["resumed"] == 0 and fresh.payload["invocation"]["cache_hits"] == 3
    # The same reference, another model behind it: its responses are not the old ones.
    replay.write_text(gold_replay.read_text().replace("####", "# # # #"))
    changed = eval_json(*replay_args(replay, 4, runs))
    assert changed.payload["invocation"]["resumed"] == 0 and changed.payload["invocation"]["generated"] == 4
    assert changed.metrics["exact_match_strict"]["value"] == 0.0


def test_only_records_the_new_run_would_ask_for_are_copied(gold_replay: Path, tmp_path: Path) -> None:
    """The safety net: a record whose request keys differ from the new run's is generated again."""
    small = eval_json(*replay_args(gold_replay, 3, tmp_path))
    samples = small.run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines()
    tampered = json.loads(lines[1])
    tampered["request_keys"] = ["not-this-request"]
    samples.write_text("\n".join([lines[0], json.dumps(tampered), lines[2]]) + "\n")
    large = eval_json(*replay_args(gold_replay, 5, tmp_path), "--no-cache")
    assert (large.payload["invocation"]["resumed"], large.payload["invocation"]["generated"]) == (2, 3)
    assert sorted(r["id"] for r in read_samples(large.run_dir)) == [f"gsm8k-test-{i:04d}" for i in range(5)]
