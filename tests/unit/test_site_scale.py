"""A leaderboard over 1,000 synthetic checkpoints builds, and its index stays usable (paginated).

The build is shared with the browser tests (tests/browser), which load this very index in Chromium,
turn to page 2 and filter it. The time bound is a sanity limit for a stuck build, not a target.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.support.synthetic_runs import SUITES, shared_site, write_runs

N_CHECKPOINTS = 1000
PAGE_SIZE = 50  # rows per index page in leaderboard/static/site.js


def _index_data(site_dir: Path) -> dict[str, object]:
    text = (site_dir / "data" / "index.js").read_text(encoding="utf-8")
    match = re.fullmatch(r"window\.LB_INDEX=(.*);\s*", text, re.S)
    assert match, text[:200]
    payload: dict[str, object] = json.loads(match.group(1))
    return payload


def test_synthetic_runs_generate_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    runs = write_runs(tmp_path, N_CHECKPOINTS)
    seconds = time.perf_counter() - start
    n_runs = sum(1 for _ in tmp_path.rglob("manifest.json"))
    with capsys.disabled():
        print(
            f"\nsynthetic runs: {N_CHECKPOINTS} checkpoints x {len(SUITES)} suites = {n_runs} runs in {seconds:.1f}s"
        )
    assert n_runs == N_CHECKPOINTS * len(SUITES)
    assert len(runs.roots) == 50 and all((root / "submission.json").is_file() for root in runs.roots)
    assert seconds < 120


def test_build_over_1000_checkpoints(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    site = shared_site(N_CHECKPOINTS, None, lambda: tmp_path_factory.mktemp("site-1000"))
    size = site.size_bytes()
    pages = sum(1 for _ in site.out.rglob("*.html"))
    with capsys.disabled():
        print(
            f"\n1,000-checkpoint site: built in {site.build_seconds:.1f}s, {size / 1e6:.1f} MB, {pages} pages"
        )
        print(f"  {site.summary}")
    assert site.build_seconds < 300  # a sanity limit against a stuck build, not a timing target

    index = _index_data(site.out)
    rows = index["rows"]
    assert isinstance(rows, list) and len(rows) == N_CHECKPOINTS
    assert len({row["id"] for row in rows}) == N_CHECKPOINTS
    # Every row links to a checkpoint page that exists, and each of its cells to a run page.
    for row in rows[:: N_CHECKPOINTS // 20]:
        assert (site.out / row["href"]).is_file(), row["href"]
        for cell in row["cells"].values():
            assert (site.out / cell["run"]).is_file(), cell["run"]
    suites = index["suites"]
    assert isinstance(suites, list) and {s["suite"] for s in suites} == set(SUITES)


def test_index_is_paginated(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The index page is a shell: rows come from data/index.js and are drawn PAGE_SIZE at a time."""
    site = shared_site(N_CHECKPOINTS, None, lambda: tmp_path_factory.mktemp("site-1000"))
    html = (site.out / "index.html").read_text(encoding="utf-8")
    # No row is pre-rendered (so the page does not carry 1,000 rows of markup), and a pager is there.
    assert html.count('class="row"') <= PAGE_SIZE
    assert 'id="pager"' in html
    script = (site.out / "assets" / "site.js").read_text(encoding="utf-8")
    assert f"PAGE_SIZE = {PAGE_SIZE}" in script
    assert (site.out / "index.html").stat().st_size < 200_000
