"""The class leaderboard ranks like with like: a class config pins the columns and says which rows
qualify (naming every differing setting of the others); without one, ranks never compare averages over
different sets of suites; ties follow a stated rule; lineage registered after evaluating is shown."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.lineage import CheckpointRegistry, registry_path
from harness.runner import settings_hash
from harness.runs.catalog import build_catalog, load_runs
from harness.runs.manifest import Manifest
from harness.types import GenerationSettings
from leaderboard.class_config import class_eval, expected_columns, load_class_config, rank_rows
from leaderboard.site_data import build_index
from suites import get_suite
from tests.support.synthetic_runs import SyntheticCheckpoint, _Writer


def _checkpoint(team: str, name: str, quality: float = 0.5) -> SyntheticCheckpoint:
    return SyntheticCheckpoint(
        team,
        name,
        "sft",
        None,
        "meta-llama/Llama-3.2-1B",
        f"tinker://{team}-{name}/sampler_weights/final",
        quality,
    )


def _board(
    root: Path, rows: dict[str, tuple[str, ...]], quality: dict[str, float] | None = None
) -> list[Path]:
    """One team per row name, each with complete synthetic runs (20 samples, pinned settings) of its suites."""
    writer = _Writer(20, 0)
    roots = []
    for name, suites in rows.items():
        team_root = root / f"team-{name}"
        team_root.mkdir(parents=True)
        (team_root / "submission.json").write_text(json.dumps({"team": f"team-{name}"}))
        for suite in suites:
            writer.write(
                team_root, _checkpoint(f"team-{name}", name, (quality or {}).get(name, 0.5)), suite, False
            )
        roots.append(team_root)
    return roots


def _rerun_with(run_dir: Path, **generation: Any) -> Path:
    """The same run as if made with other decoding: its manifest, hash and folder name say so."""
    manifest = Manifest.from_record(
        json.loads((run_dir / "manifest.json").read_text()), run_dir / "manifest.json"
    )
    settings = replace(manifest.generation, **generation)
    digest = settings_hash(get_suite(manifest.suite), settings, manifest.limit)
    moved = run_dir.with_name(digest)
    shutil.move(run_dir, moved)
    record = replace(manifest, generation=settings, settings_hash=digest).to_record()
    (moved / "manifest.json").write_text(json.dumps(record))
    return moved


def _config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _index(roots: list[Path], config_path: Path | None = None) -> dict[str, Any]:
    config = load_class_config(config_path) if config_path else None
    pinned = {s: c.key for s, c in expected_columns(config).items()} if config else None
    return build_index(build_catalog(load_runs(roots), pinned), [], config).payload


def _rows(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["label"]: row for row in index["rows"]}


def test_a_class_config_ranks_only_rows_that_cover_its_suites_under_its_settings(tmp_path: Path) -> None:
    roots = _board(
        tmp_path / "runs", {"a": ("ifeval", "gsm8k"), "b": ("mbpp", "safety"), "c": ("ifeval", "gsm8k")}
    )
    config = _config(tmp_path / "leaderboard.yaml", "name: CSE 5525\nsuites: [ifeval, gsm8k]\nlimit: 20\n")
    index = _index(roots, config)
    rows = _rows(index)
    assert rows["a"]["rank"] is not None and rows["c"]["rank"] is not None
    assert rows["b"]["rank"] is None and rows["b"]["qualified"] is False
    assert rows["b"]["unranked_reasons"] == ["ifeval: no run", "gsm8k: no run"]
    assert index["class_config"]["name"] == "CSE 5525" and index["ranked_suite_names"] == ["ifeval", "gsm8k"]
    assert [c["suite"] for c in index["suites"]][:2] == ["ifeval", "gsm8k"]  # the class's columns first
    assert "1, 1, 3" in index["tie_rule"]


def test_a_differing_setting_is_named_with_both_values(tmp_path: Path) -> None:
    roots = _board(tmp_path / "runs", {"a": ("gsm8k",), "b": ("gsm8k",)})
    run_b = next((roots[1]).rglob("manifest.json")).parent
    _rerun_with(run_b, max_tokens=32, temperature=0.7)
    config = _config(tmp_path / "leaderboard.yaml", "name: x\nsuites: [gsm8k]\nlimit: 20\n")
    rows = _rows(_index(roots, config))
    assert rows["a"]["rank"] == 1
    (reason,) = rows["b"]["unranked_reasons"]
    pinned = get_suite("gsm8k").default_settings().max_tokens
    assert reason == (
        f"gsm8k: run under other settings: max_tokens 32 (class: {pinned}); temperature 0.7 (class: 0.0)"
    )
    # Without a config the column's settings are the majority's, and the cell says the same (no more "other
    # generation settings"): here it is a tie of one run each, so the larger, then either, is the column.
    cell = _rows(_index(roots))["b"]["cells"]["gsm8k"]
    other = _rows(_index(roots))["a"]["cells"]["gsm8k"]
    unranked = cell if cell["reason"] else other
    assert "max_tokens" in unranked["reason"] and "temperature" in unranked["reason"]


def test_without_a_config_rows_over_different_suite_sets_are_never_ranked_against_each_other(
    tmp_path: Path,
) -> None:
    roots = _board(
        tmp_path / "runs", {"a": ("ifeval", "gsm8k"), "b": ("mbpp", "safety")}, {"a": 0.2, "b": 0.9}
    )
    index = _index(roots)
    rows = _rows(index)
    assert rows["a"]["rank"] is None and rows["b"]["rank"] is None
    assert "different sets of suites" in index["unranked_note"]
    # A third row over a's suites makes {ifeval, gsm8k} the set that ranks the most cells: b stays apart.
    roots += _board(tmp_path / "more", {"c": ("ifeval", "gsm8k", "alice-synth")})
    index = _index(roots)
    rows = _rows(index)
    assert index["ranked_suite_names"] == ["ifeval", "gsm8k"] and index["unranked_note"] is None
    assert {rows["a"]["rank"], rows["c"]["rank"]} <= {1, 2} and rows["b"]["rank"] is None
    assert rows["b"]["unranked_reasons"][0].startswith("ifeval: no run (ranked rows cover ifeval, gsm8k)")
    # c's ranked average is over the ranked suites only, not over its extra alice-synth run.
    c = rows["c"]
    assert c["average"] == pytest.approx((c["cells"]["ifeval"]["value"] + c["cells"]["gsm8k"]["value"]) / 2)


def test_tie_rules() -> None:
    scores = [("a", 0.5, "t3"), ("b", 0.50004, "t1"), ("c", 0.4, "t2"), ("d", 0.3, "t0")]
    assert rank_rows(scores, "competition") == {"b": 1, "a": 1, "c": 3, "d": 4}  # equal to 0.1 points
    assert rank_rows(scores, "dense") == {"b": 1, "a": 1, "c": 2, "d": 3}
    assert rank_rows(scores, "earliest") == {"b": 1, "a": 2, "c": 3, "d": 4}  # b finished first


def test_class_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    cases = {
        "suites: [gsm8k]\nlimt: 5\n": "'limt' is not a key",
        "suites: [gsm8k, nope]\n": "Unknown suite 'nope'",
        "suites: [gsm8k]\nversions: {gsm8k: '0.1'}\n": "pins gsm8k@0.1, but this harness has gsm8k@",
        "suites: [gsm8k]\ngeneration: {max_tokens: 0}\n": "'generation.max_tokens' must be a positive integer",
        "suites: [gsm8k]\ntie_rule: coin\n": "'tie_rule' must be one of competition, dense, earliest",
        "suites: []\n": "'suites' must be a non-empty list",
    }
    for text, needle in cases.items():
        path = _config(tmp_path / "c.yaml", text)
        with pytest.raises(UsageError) as caught:
            load_class_config(path)
        assert needle.lower() in caught.value.message.lower(), (text, caught.value.message)
        assert str(path) in caught.value.message


def test_evaluating_under_the_class_config_qualifies_and_a_conflicting_flag_is_refused(
    tmp_path: Path,
) -> None:
    config = load_class_config(
        _config(tmp_path / "c.yaml", "name: x\nsuites: [gsm8k]\nlimit: 3\ngeneration: {max_tokens: 64}\n")
    )
    with pytest.raises(UsageError, match=r"--max-tokens 32 differs from the class config"):
        class_eval(config, None, None, {"max_tokens": 32}, None)
    with pytest.raises(UsageError, match=r"--limit 5 differs"):
        class_eval(config, None, 5, {}, None)
    chosen = class_eval(config, None, 3, {"seed": None, "max_tokens": 64}, "refusal-heuristic")
    assert chosen.suites == ("gsm8k",) and chosen.limit == 3 and chosen.generation == {"max_tokens": 64}
    column = expected_columns(config)["gsm8k"]
    assert column.generation == replace(get_suite("gsm8k").default_settings(), max_tokens=64)
    assert isinstance(column.generation, GenerationSettings)


def test_an_eval_under_the_class_config_lands_in_the_qualifying_folder(
    tmp_path: Path, data_dir: Path
) -> None:
    from harness.api.evaluate import Generation, evaluate
    from tests.support.cli_runs import write_gold_replay

    replay = write_gold_replay(data_dir, tmp_path / "gold.jsonl", 5)
    config = load_class_config(
        _config(tmp_path / "c.yaml", "name: x\nsuites: [gsm8k]\nlimit: 3\ngeneration: {max_tokens: 64}\n")
    )
    plan = class_eval(config, None, None, {}, None)
    result = evaluate(
        f"replay:{replay}", list(plan.suites), limit=plan.limit, runs=tmp_path / "runs", data_dir=data_dir,
        generation=Generation(**plan.generation),
    )  # fmt: skip
    assert result.runs[0].run_dir.name == expected_columns(config)["gsm8k"].settings_hash
    rows = _rows(_index([tmp_path / "runs"], tmp_path / "c.yaml"))
    assert rows[f"replay:{replay}"]["rank"] == 1


def test_lineage_registered_after_evaluating_is_read_at_read_time(tmp_path: Path, data_dir: Path) -> None:
    from harness.api.evaluate import evaluate
    from reports.report import build_report
    from tests.support.cli_runs import write_gold_replay

    runs = tmp_path / "runs"
    base = write_gold_replay(data_dir, tmp_path / "base.jsonl", 3)
    sft = write_gold_replay(data_dir, tmp_path / "sft.jsonl", 3)
    for replay in (base, sft):
        evaluate(f"replay:{replay}", ["gsm8k"], limit=3, runs=runs, data_dir=data_dir)
    registry = CheckpointRegistry(registry_path(runs))
    registry.add("base-1", f"replay:{base}", "base")
    registry.add("sft-1", f"replay:{sft}", "sft", parent="base-1")

    catalog = build_catalog(load_runs([runs]))
    by_label = {c.label: c for c in catalog.checkpoints}
    assert set(by_label) == {"base-1", "sft-1"}
    assert by_label["sft-1"].parent == "base-1" and by_label["sft-1"].stage == "sft"
    index = build_index(catalog, []).payload
    sft_row = next(r for r in index["rows"] if r["label"] == "sft-1")
    assert sft_row["parent_id"] == by_label["base-1"].id  # a link, not text
    assert [step["label"] for step in sft_row["lineage"]] == ["base-1", "sft-1"]

    summary = build_report(["sft-1"], tmp_path / "report", runs)
    assert summary.checkpoints == ("sft-1",)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Lineage: base-1 -> sft-1" in markdown

    # Re-evaluating through the registry reference refreshes the manifest's copy (what a bundle carries).
    evaluate("sft:latest", ["gsm8k"], limit=3, runs=runs, data_dir=data_dir)
    manifest = json.loads(next(p for p in runs.rglob("manifest.json") if "sft" in str(p)).read_text())
    assert manifest["lineage"]["name"] == "sft-1" and manifest["lineage"]["parent"] == "base-1"


def test_the_cli_builds_a_class_site_where_different_suite_sets_are_not_ranked_against_each_other(
    tmp_path: Path,
) -> None:
    from tests.conftest import harness
    from tests.unit.test_site import read_global

    roots = _board(
        tmp_path / "runs", {"a": ("ifeval", "gsm8k"), "b": ("mbpp", "safety")}, {"a": 0.2, "b": 0.9}
    )
    config = _config(
        tmp_path / "leaderboard.yaml", "name: CSE 5525\nsuites: [ifeval, gsm8k, mbpp, safety]\nlimit: 20\n"
    )
    site = tmp_path / "site"
    proc = harness("leaderboard", "build", *map(str, roots), "--out", str(site), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    index = read_global(site / "data" / "index.js")
    rows = _rows(index)
    assert rows["a"]["rank"] is None and rows["b"]["rank"] is None  # neither ranked above the other
    assert rows["a"]["unranked_reasons"] == ["mbpp: no run", "safety: no run"]
    assert rows["b"]["unranked_reasons"] == ["ifeval: no run", "gsm8k: no run"]
    assert index["class_config"]["suites"] == ["ifeval", "gsm8k", "mbpp", "safety"]
    bad = _config(tmp_path / "bad.yaml", "suites: [gsm8k]\nlimt: 3\n")
    proc = harness(
        "leaderboard", "build", *map(str, roots), "--out", str(tmp_path / "s2"), "--config", str(bad)
    )
    assert proc.returncode == 2 and "'limt' is not a key" in proc.stderr and "Traceback" not in proc.stderr
