"""Leaderboard writes that survive concurrency and SIGKILL, and never touch what the harness did not make.

- `leaderboard build` never leaves a half site: a full build is made next to the site and swapped in; a
  rebuild rewrites changed pages in place, each under a temporary name renamed over the old one, the index
  data after them. A build killed midway leaves a complete site whose every page is old or new, with the
  previous index data, and the next build repairs it; a non-empty folder the harness did not make is
  refused; files a user added to a harness site are kept.
- Concurrent `leaderboard add --site` take turns on a lock: all succeed, the site lists every team.
- Accepted team folders have normal permissions (the umask), not 0700.
- A run whose samples.jsonl repeats a sample id is refused by `leaderboard build` and by the catalog.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import DataError, ExitCode
from harness.runs.catalog import catalog_from_folders
from leaderboard.bundle import write_bundle
from leaderboard.site import build_site
from leaderboard.submissions import accepted_roots
from tests.conftest import ROOT, cli_env, harness, harness_popen
from tests.support.bundles import Honest, make_honest
from tests.support.synthetic_runs import write_runs

TEAMS = [f"team-{i}" for i in range(6)]


def _listing(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _work_folders(site: Path) -> list[Path]:
    return sorted(site.parent.glob(f".{site.name}.*"))


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Honest:
    return make_honest(tmp_path_factory.mktemp("honest"), data_dir)


def test_a_killed_build_leaves_a_complete_site_and_the_next_build_repairs_it(tmp_path: Path) -> None:
    small = write_runs(tmp_path / "small", 3)
    big = write_runs(tmp_path / "big", 40)
    site = tmp_path / "site"
    build_site(list(small.roots), site, Path("none"))
    before = _listing(site)
    index_before = (site / "data" / "index.js").read_bytes()

    process = harness_popen(
        "leaderboard", "build", *map(str, big.roots), "--out", str(site), "--references", "none"
    )
    deadline = time.monotonic() + 240
    written = 0
    while time.monotonic() < deadline and process.poll() is None:
        # Pages of the new build: in its work folder (a full build), or in the site itself (a rebuild).
        written = sum(1 for w in _work_folders(site) for _ in w.glob("runs/*/*.html"))
        written += sum(1 for _ in site.glob("runs/*/*.html")) - sum(
            1 for k in before if k.startswith("runs/") and k.endswith(".html")
        )
        if written >= 20:
            break
        time.sleep(0.01)
    if process.poll() is not None:
        pytest.fail(
            f"the build ended before it could be killed ({written} pages seen): {process.communicate()}"
        )
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    killed = _listing(site)
    assert set(before) <= set(killed)  # every page of the previous site is still there ...
    assert (site / "data" / "index.js").read_bytes() == index_before  # ... and the index it links from
    for name in killed:  # every page whole (old or new; a page being written is a temporary file)
        if name.endswith(".html"):
            assert (site / name).read_text().rstrip().endswith("</html>"), name

    summary = build_site(list(small.roots), site, Path("none"))
    assert summary.checkpoints == 3 and _work_folders(site) == []
    pages = {k: v for k, v in _listing(site).items() if not k.startswith(".site-build/")}
    assert pages == {k: v for k, v in before.items() if not k.startswith(".site-build/")}  # repaired


def test_build_never_deletes_what_the_harness_did_not_make(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs", 2)
    foreign = tmp_path / "foreign"
    (foreign / "data").mkdir(parents=True)
    (foreign / "index.html").write_text("my own page")
    proc = harness("leaderboard", "build", str(runs.roots[0]), "--out", str(foreign), "--references", "none")
    assert proc.returncode == ExitCode.USAGE and "not made by `harness leaderboard build`" in proc.stderr
    assert (foreign / "index.html").read_text() == "my own page" and _work_folders(foreign) == []

    empty = tmp_path / "empty"
    empty.mkdir()
    # The current folder is never swapped away (a shell in it would be left in a deleted folder) ...
    here = subprocess.run(
        [sys.executable, "-m", "harness", "leaderboard", "build", str(runs.roots[0]), "--out", "."],
        capture_output=True, text=True, env={**cli_env(), "PYTHONPATH": str(ROOT)}, cwd=empty, timeout=300,
    )  # fmt: skip
    assert here.returncode == ExitCode.USAGE and "is the current folder" in here.stderr
    assert list(empty.iterdir()) == []
    build_site(list(runs.roots), empty, Path("none"))  # ... but an empty folder may become the site
    assert (empty / "index.html").is_file()

    # A site an earlier harness made (its old marker file): rebuilt; what a user added to it is kept.
    legacy = tmp_path / "legacy"
    (legacy / "checkpoints").mkdir(parents=True)
    (legacy / ".leaderboard-site").write_text("made by harness leaderboard build\n")
    (legacy / "checkpoints" / "stale.html").write_text("old page")
    (legacy / "CNAME").write_text("board.example.org\n")
    (legacy / "extra").mkdir()
    (legacy / "extra" / "notes.txt").write_text("mine")
    build_site(list(runs.roots), legacy, Path("none"))
    assert not (legacy / "checkpoints" / "stale.html").exists() and (legacy / "index.html").is_file()
    assert (legacy / "CNAME").read_text() == "board.example.org\n"
    assert (legacy / "extra" / "notes.txt").read_text() == "mine"
    assert _work_folders(legacy) == []


def test_concurrent_adds_take_turns_and_the_site_lists_every_team(honest: Honest, tmp_path: Path) -> None:
    bundles = [
        write_bundle([honest.root], team, tmp_path / f"{team}.zip", allow_replay=True) for team in TEAMS
    ]
    site_data, site = tmp_path / "site-data", tmp_path / "site"
    processes = [
        harness_popen(
            "leaderboard", "add", str(b), "--site-data", str(site_data), "--site", str(site), "--allow-replay"
        )
        for b in bundles
    ]
    results = [(p.wait(300), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "accepted bundle" in out and "site: " in out
    assert [p.name for p in accepted_roots(site_data)] == TEAMS
    index = json.loads((site / "data" / "index.js").read_text().split("=", 1)[1].rstrip().rstrip(";"))
    assert sorted({row["team"] for row in index["rows"]}) == TEAMS
    assert sorted(p.name for p in site_data.iterdir()) == [".lock", *TEAMS]
    assert _work_folders(site) == []


def test_an_accepted_team_folder_has_normal_permissions(honest: Honest, tmp_path: Path) -> None:
    site_data = tmp_path / "site-data"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "leaderboard", "add", str(honest.bundle), "--site-data", str(site_data),
         "--allow-replay"],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    team = site_data / "owls"
    paths = [team, *team.rglob("*")]
    assert len(paths) > 5
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_a_repeated_sample_id_is_refused_not_counted(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs", 2, suites=("gsm8k",))
    run_dir = next(iter(runs.run_dirs.values()))
    samples = run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    repeated = json.loads(lines[3])["id"]
    samples.write_text("".join([*lines, lines[3]]))
    proc = harness("leaderboard", "build", *map(str, runs.roots), "--out", str(tmp_path / "site"))
    assert proc.returncode == ExitCode.DATA, proc.stderr
    assert f"{samples} line {len(lines) + 1} repeats sample {repeated} (first at line 4)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "site").exists()

    catalog = catalog_from_folders(list(runs.roots))
    run = next(r for c in catalog.checkpoints for r in c.runs.values() if r.run_dir == run_dir)
    with pytest.raises(DataError, match=f"line {len(lines) + 1} repeats sample {repeated}"):
        run.samples()


def test_invalid_utf8_in_a_samples_file_is_refused_not_replaced(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs", 2, suites=("gsm8k",))
    run_dir = next(iter(runs.run_dirs.values()))
    samples = run_dir / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"id"', b'"\xff\xfeid"', 1)
    samples.write_bytes(b"".join(lines))
    proc = harness("leaderboard", "build", *map(str, runs.roots), "--out", str(tmp_path / "site"))
    assert proc.returncode == ExitCode.DATA, proc.stderr
    assert f"{samples} line 3 is not valid UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "site").exists()
