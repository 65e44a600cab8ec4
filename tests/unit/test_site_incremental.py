"""Incremental site builds (leaderboard.site_state): a rebuild after one team's bundle changed renders only
that team's pages and the index data, in place; every other file is the previous one (the same inode,
byte-identical). Another harness version, templates or a damaged state make a full build; a rebuild that
dies midway leaves every page old or new (never half written) and the next build repairs the rest. The
runs' parsed inputs (leaderboard.site_inputs) and the figure's paired results (reports.paired_cache) kept
between builds are trusted only while their files are unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

import leaderboard.site as site_module
from harness.names import OWNER_MARKER
from harness.runs.catalog import checkpoint_id
from harness.runs.store import find_runs
from leaderboard.site import build_site
from leaderboard.site_inputs import INPUTS_FOLDER, RACY_NS, _Table, run_folders
from leaderboard.site_state import BUILD_FOLDER, PAIRED_FILE, STATE_FILE
from tests.support.synthetic_runs import SyntheticRuns, write_runs

N, TEAMS = 12, 3
GLOBAL_FILES = ("data/index.js", "data/ranks.js", "data/plots.js", "index.html", "compare.html", "plots.html")


def _files(site: Path) -> dict[str, tuple[int, bytes]]:
    """Site-relative path -> (inode, bytes) of every file but the build state and the owner marker."""
    return {
        p.relative_to(site).as_posix(): (p.stat().st_ino, p.read_bytes())
        for p in site.rglob("*")
        if p.is_file() and BUILD_FOLDER not in p.parts and p.name != OWNER_MARKER
    }


def _always_written(files: dict[str, tuple[int, bytes]]) -> set[str]:
    return set(GLOBAL_FILES) | {f for f in files if f.startswith("assets/")}


def _team_files(runs: SyntheticRuns, team: str, files: dict[str, tuple[int, bytes]]) -> set[str]:
    ids = {checkpoint_id(f"{c.team}/{c.name}") for c in runs.checkpoints if c.team == team}
    return {f for f in files if any(f"/{i}." in f or f"/{i}/" in f for i in ids)}


def _resubmit(runs: SyntheticRuns, scratch: Path, team: str) -> None:
    """Replace one team's runs folder by one with other scores (a new bundle accepted by `add`)."""
    other = write_runs(scratch, N, n_teams=TEAMS, seed=7)
    source = next(root for root in other.roots if root.name == team)
    target = next(root for root in runs.roots if root.name == team)
    shutil.rmtree(target)
    source.rename(target)


@pytest.fixture
def built(tmp_path: Path) -> tuple[SyntheticRuns, Path]:
    runs = write_runs(tmp_path / "runs", N, n_teams=TEAMS)
    site = tmp_path / "site"
    summary = build_site(list(runs.roots), site, Path("none"))
    assert summary.full and summary.rendered == N and summary.reused == 0
    return runs, site


def test_a_rebuild_after_one_team_changed_rewrites_only_its_pages(built: tuple[SyntheticRuns, Path]) -> None:
    runs, site = built
    before = _files(site)
    team = "team-b"
    changed = _team_files(runs, team, before)
    assert len(changed) == 4 * (2 + 2 * 5)  # 4 checkpoints x (page, scores, 5 x (run page, run data))
    _resubmit(runs, site.parent / "again", team)

    summary = build_site(list(runs.roots), site, Path("none"))
    after = _files(site)
    assert not summary.full and summary.rendered == 4 and summary.reused == N - 4
    assert "rendered 4 checkpoints, 8 unchanged" in summary.describe()
    assert set(after) == set(before)
    rewritten = {f for f in after if after[f][0] != before[f][0]}
    assert rewritten == changed | _always_written(after)
    for name in set(after) - rewritten:  # the previous files themselves, byte for byte
        assert after[name][1] == before[name][1], name
    # The resubmitted team's pages show its new runs (other scores were generated).
    assert any(after[f][1] != before[f][1] for f in changed if f.startswith("runs/") and f.endswith(".js"))


def test_nothing_changed_renders_nothing_and_the_hint_forces_a_team(
    built: tuple[SyntheticRuns, Path],
) -> None:
    runs, site = built
    before = _files(site)
    summary = build_site(list(runs.roots), site, Path("none"))
    assert (summary.rendered, summary.reused, summary.full) == (0, N, False)
    again = _files(site)
    assert {f for f in again if again[f][0] != before[f][0]} == _always_written(again)
    assert all(again[f][1] == before[f][1] for f in again) and set(again) == set(before)

    hinted = build_site(list(runs.roots), site, Path("none"), changed_teams=["team-a"])
    assert hinted.rendered == 4 and hinted.reused == N - 4
    after = _files(site)
    assert {f for f in _team_files(runs, "team-a", after) if after[f][0] == before[f][0]} == set()
    assert all(after[f][1] == before[f][1] for f in after)  # same inputs: the same bytes


def test_another_harness_version_or_a_damaged_state_makes_a_full_build(
    built: tuple[SyntheticRuns, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, site = built
    before = _files(site)
    monkeypatch.setattr("leaderboard.site_state.__version__", "99.0.0")
    summary = build_site(list(runs.roots), site, Path("none"))
    assert summary.full and summary.rendered == N
    after = _files(site)
    assert all(after[f][0] != before[f][0] for f in after)  # every file written anew

    state = site / BUILD_FOLDER / STATE_FILE
    record = json.loads(state.read_text())
    assert record["pages"] and all(len(v["fingerprint"]) == 64 for v in record["pages"].values())
    for damaged in ("{not json", json.dumps({**record, "pages": {"x": {"files": ["../../etc/passwd"]}}})):
        state.write_text(damaged)
        assert build_site(list(runs.roots), site, Path("none")).rendered == N


def test_a_template_change_makes_a_full_build(
    built: tuple[SyntheticRuns, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs, site = built
    templates = tmp_path / "leaderboard"
    shutil.copytree(site_module.HERE, templates, ignore=shutil.ignore_patterns("__pycache__"))
    page = templates / "templates" / "checkpoint.html"
    page.write_text(page.read_text().replace("<h2>Lineage</h2>", "<h2>Lineage (new)</h2>"))
    monkeypatch.setattr("leaderboard.site_state.HERE", templates)
    monkeypatch.setattr("leaderboard.site.HERE", templates)
    summary = build_site(list(runs.roots), site, Path("none"))
    assert summary.full and summary.rendered == N
    assert all("Lineage (new)" in p.read_text() for p in (site / "checkpoints").glob("*.html"))


def test_a_crash_mid_rebuild_leaves_old_or_new_pages_and_the_next_build_repairs_them(
    built: tuple[SyntheticRuns, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs, site = built
    before = _files(site)
    _resubmit(runs, site.parent / "again", "team-c")
    expected = tmp_path / "expected"
    build_site(list(runs.roots), expected, Path("none"))  # what a complete build of the new inputs gives
    new = _files(expected)
    calls = {"n": 0}
    real = site_module.write_checkpoint

    def dies_on_the_second(*args: object, **kwargs: object) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what a Ctrl-C (or a crash) midway looks like to the build
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(site_module, "write_checkpoint", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        build_site(list(runs.roots), site, Path("none"))
    during = _files(site)
    assert set(during) == set(before)  # no page missing, none added, no temporary file left
    assert any(during[f][1] != before[f][1] for f in during)  # the first checkpoint was rewritten ...
    for name, (_, data) in during.items():  # ... and every file is either the old one or the new one
        assert data in (before[name][1], new[name][1]), name
    for name in GLOBAL_FILES:  # the index data come after the pages: still the previous build's
        assert during[name][1] == before[name][1], name
    assert sorted(site.parent.glob(f".{site.name}.*")) == []

    monkeypatch.setattr(site_module, "write_checkpoint", real)
    summary = build_site(list(runs.roots), site, Path("none"))
    assert summary.rendered == 4 and not summary.full  # the unfinished team again, nothing else
    after = _files(site)
    assert {f: d for f, (_, d) in after.items()} == {f: d for f, (_, d) in new.items()}


def test_a_changed_manifest_is_read_again_and_a_lookalike_file_is_not_trusted(
    built: tuple[SyntheticRuns, Path],
) -> None:
    runs, site = built
    run_dir = next(iter(runs.run_dirs.values()))
    manifest = run_dir / "manifest.json"
    record = json.loads(manifest.read_text())
    label = record["lineage"]["name"]
    page = site / "checkpoints" / f"{checkpoint_id(f'{run_dir.parts[-4]}/{label}')}.html"
    assert page.is_file() and "2026-03-01T12:00:00" in page.read_text()
    info = manifest.stat()
    # Another file with the same size and mtime (another inode): its content is read, not the kept one.
    changed = manifest.read_text().replace("2026-03-01T12:00:00", "2026-03-09T12:00:00", 1)
    assert len(changed) == info.st_size
    manifest.unlink()
    manifest.write_text(changed)
    os.utime(manifest, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert (manifest.stat().st_size, manifest.stat().st_mtime_ns) == (info.st_size, info.st_mtime_ns)
    build_site(list(runs.roots), site, Path("none"))
    assert "2026-03-09T12:00:00" in page.read_text()

    record["n_total"] = 777  # an edit in place: size and mtime change
    manifest.write_text(json.dumps(record))
    build_site(list(runs.roots), site, Path("none"))
    assert "777" in page.read_text()


def test_corrupt_or_altered_caches_give_the_same_site_as_a_full_build(
    built: tuple[SyntheticRuns, Path], tmp_path: Path
) -> None:
    runs, site = built
    expected = _files(site)
    paired = site / BUILD_FOLDER / PAIRED_FILE
    inputs = sorted((site / BUILD_FOLDER / INPUTS_FOLDER).iterdir())[0]  # one runs folder's kept inputs
    checksum, _, text = inputs.read_text().partition("\n")
    # A kept manifest value edited without its checksum (a wrong n_total): ignored, the files are read.
    altered = re.sub(r'\["n_total",(\d+)\]', lambda m: f'["n_total",{int(m[1]) + 1}]', text)
    assert altered != text
    for damaged in (f"{checksum}\n{altered}", "{not json", ""):
        inputs.write_text(damaged)
        paired.write_text(damaged)
        summary = build_site(list(runs.roots), site, Path("none"))
        assert summary.rendered == 0  # the inputs as read again fingerprint the same: nothing to render
        assert {f: d for f, (_, d) in _files(site).items() if f not in GLOBAL_FILES} == {
            f: d for f, (_, d) in expected.items() if f not in GLOBAL_FILES
        }
        assert {f: _files(site)[f][1] for f in GLOBAL_FILES} == {f: expected[f][1] for f in GLOBAL_FILES}
    state = site / BUILD_FOLDER / STATE_FILE
    state.write_text("{not json")
    assert build_site(list(runs.roots), site, Path("none")).full


def test_run_folders_finds_what_find_runs_finds(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs", 3)
    root = runs.roots[0]
    hidden = root / ".trash" / "x" / "gsm8k@1.0" / "abc"
    hidden.mkdir(parents=True)
    (hidden / "manifest.json").write_text("{}")
    deep = root / "a" / "b" / "c" / "d" / "e"
    deep.mkdir(parents=True)
    (deep / "manifest.json").write_text("{}")
    (root / "link").symlink_to(next(iter(runs.run_dirs.values())).parent)
    assert run_folders(root) == find_runs(root) and len(run_folders(root)) > 5


def test_a_kept_walk_is_reused_only_while_no_folder_under_the_runs_folder_changed(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs", 3)
    root = runs.roots[0]
    walked = _Table(str(root))
    assert walked.folders(root) == run_folders(root) and walked.rewalked

    def kept(walk_ns: int) -> _Table:  # what the next build loads from the inputs file
        return _Table(str(root), walked=walked.walked, found=walked.found, walk_ns=walk_ns)

    settled = walked.walk_ns + 2 * RACY_NS  # as if walked well after the folders last changed
    table = kept(settled)
    assert table.folders(root) == run_folders(root) and not table.rewalked
    # A folder changed within the racy window of the walk is not trusted (its change could share a tick).
    recent = kept(walked.walk_ns)
    assert recent.folders(root) == run_folders(root) and recent.rewalked
    # A new run folder moves its parent's mtime: walked again, and found.
    run_dir = next(d for d in runs.run_dirs.values() if root in d.parents)
    shutil.copytree(run_dir, run_dir.with_name("copied"))
    table = kept(settled)
    assert run_dir.with_name("copied") in table.folders(root) and table.rewalked
    assert table.folders(root) == run_folders(root)


def test_a_kept_walk_naming_a_folder_outside_its_runs_folder_is_not_used(
    built: tuple[SyntheticRuns, Path], tmp_path: Path
) -> None:
    _, site = built
    path = next((site / BUILD_FOLDER / INPUTS_FOLDER).iterdir())
    record = json.loads(path.read_text().partition("\n")[2])
    outside = tmp_path / "elsewhere"
    record["walk"][2].append(str(outside))  # an edited file, its checksum written to match
    text = json.dumps(record, separators=(",", ":"))
    path.write_text(f"{hashlib.sha256(text.encode()).hexdigest()}\n{text}")
    table = _Table.load(path, record["root"])
    assert table.found == [] and table.walked == [] and table.entries  # the walk dropped, the entries kept
    assert table.folders(Path(record["root"])) == run_folders(Path(record["root"]))


def test_a_rebuild_takes_unchanged_pairs_from_the_store_without_reading_their_samples(
    built: tuple[SyntheticRuns, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, site = built
    figures = (site / "data" / "plots.js").read_bytes()

    def not_read(*args: object) -> None:
        raise AssertionError("a kept pair's samples were read again")

    monkeypatch.setattr("reports.plots.paired_scores", not_read)
    assert build_site(list(runs.roots), site, Path("none")).rendered == 0
    assert (site / "data" / "plots.js").read_bytes() == figures
    run_dir = next(iter(runs.run_dirs.values()))  # one changed samples file: its pairs are compared again
    samples = run_dir / "samples.jsonl"
    samples.write_bytes(samples.read_bytes())
    with pytest.raises(AssertionError, match="samples were read again"):
        build_site(list(runs.roots), site, Path("none"))
