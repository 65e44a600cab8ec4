"""The compare page's paired interval in a real headless Chromium (issue 18: intervals honest at small n).

site.js's `pairedInterval` (window.LB_pairedInterval) ports harness.gating.paired.paired_delta: it must
pick the same method and give the same closed-form interval (to 1e-9), and where the bootstrap suits the
pairs, the page's own seeded bootstrap with exactly the numbers it gave before issue 18. A compare page
of two checkpoints with identical 5-sample runs then shows a nonzero-width interval, named as small-n.
"""

from __future__ import annotations

import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.gating.paired import paired_delta
from harness.runs.catalog import checkpoint_id
from harness.runs.store import METRICS, SAMPLES
from leaderboard.site import build_site
from tests.browser.conftest import WatchedPage
from tests.support.synthetic_runs import SUITES, write_runs

pytestmark = pytest.mark.browser

Scores = list[float]
Case = tuple[str, Scores, Scores, list[str] | None]


def _large_pairs() -> tuple[Scores, Scores]:
    rng = random.Random(4)
    a = [float(rng.random() < 0.6) for _ in range(400)]
    return a, [x if rng.random() < 0.85 else 1.0 - x for x in a]


LARGE_A, LARGE_B = _large_pairs()
HALVES = ["x" if i % 2 else "y" for i in range(400)]
GRADED = [0.25 * (i % 5) for i in range(40)]
GRADED_SHIFTED = [min(1.0, g + 0.25 * (i % 3 == 0)) for i, g in enumerate(GRADED)]
# pairedBootstrap's (lo, hi) for these before issue 18 (site.js at 3a0f157: mulberry32(0), 1,000 resamples).
OLD_BOOTSTRAP = {
    "large 0/1": (-0.0725, 0.01),
    "large 0/1 in two strata": (-0.0675, 0.015000000000000001),
    "large graded": (0.03125, 0.10625),
}

CLOSED_FORM: list[Case] = [
    ("identical 0/1 pairs at n=5", [1.0, 0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0, 0.0], None),
    ("1 improvement in 5", [0.0, 0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0, 0.0], None),
    (
        "1 improvement, 2 regressions in 7",
        [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0],
        None,
    ),
    (
        "300 identical 0/1 pairs",
        [float(i % 3 == 0) for i in range(300)],
        [float(i % 3 == 0) for i in range(300)],
        None,
    ),
    ("graded, Student-t", [0.25, 0.5, 0.5, 0.25, 0.75, 0.125], [0.75, 0.75, 0.5, 0.375, 0.625, 0.5], None),
    ("graded, t clipped to 1", [0.0, 0.125, 0.25, 0.375, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 0.0], None),
    ("graded without spread", [0.5] * 5, [0.5] * 5, None),
    ("graded, every pair up 0.25", [0.5] * 20, [0.75] * 20, None),
    ("unbounded, no spread", [3.0, 4.0], [5.0, 6.0], None),
    (
        "unbounded, sparse changes at n=40",
        [float(i) for i in range(40)],
        [i + 2.0 * (i < 2) for i in range(40)],
        None,
    ),
    ("stratified, one identical pair each", [1.0, 0.0, 1.0], [1.0, 0.0, 1.0], ["hb", "xs_safe", "xs_unsafe"]),
    ("stratified, one improvement", [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], ["x", "x", "y", "z"]),
    (
        "stratified graded",
        [0.5, 0.25, 1.0, 0.0, 0.75],
        [0.75, 0.25, 0.5, 0.0, 1.0],
        ["x", "x", "y", "y", "z"],
    ),
    ("stratified unbounded", [2.0, 3.0], [2.0, 5.0], ["x", "y"]),
    (  # one stratum suits the bootstrap, the other does not: the whole takes the stratified Tango
        "one stratum too small",
        [*LARGE_A[:60], 1.0, 0.0, 1.0],
        [*LARGE_B[:60], 1.0, 0.0, 1.0],
        [*(["big"] * 60), "small", "small", "small"],
    ),
]
BOOTSTRAP: list[Case] = [
    ("large 0/1", LARGE_A, LARGE_B, None),
    ("large 0/1 in two strata", LARGE_A, LARGE_B, HALVES),
    ("large graded", GRADED, GRADED_SHIFTED, None),
]


@dataclass(frozen=True)
class IdenticalSite:
    out: Path
    a: str  # site id of the first checkpoint
    b: str  # site id of a checkpoint whose runs are copies of a's (5 samples each)

    def url(self, relative: str) -> str:
        return (self.out / relative).resolve().as_uri()


@pytest.fixture(scope="module")
def identical_site(tmp_path_factory: pytest.TempPathFactory) -> IdenticalSite:
    """Three checkpoints with 5-sample runs; the third's runs are copies of the first's (the second's safety
    run is judged by wildguard, so the first and the third share every setting)."""
    root = tmp_path_factory.mktemp("compare-interval")
    runs = write_runs(root / "runs", 3, n_teams=1, samples_per_run=5)
    first, third = runs.checkpoints[0], runs.checkpoints[2]
    for suite in SUITES:
        for name in (SAMPLES, METRICS):
            shutil.copyfile(
                runs.run_dirs[(first.name, suite)] / name, runs.run_dirs[(third.name, suite)] / name
            )
    out = root / "site"
    build_site(list(runs.roots), out, Path("none"))
    return IdenticalSite(
        out, checkpoint_id(f"{first.team}/{first.name}"), checkpoint_id(f"{third.team}/{third.name}")
    )


def _open_compare(site: IdenticalSite, open_page: Any) -> WatchedPage:
    watched: WatchedPage = open_page(site.url("compare.html") + f"#a={site.a}&b={site.b}")
    watched.page.wait_for_selector("#compare-table tbody tr[data-suite] td.delta")
    return watched


def _in_page(page: Any, cases: list[Case], function: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = page.evaluate(
        f"cases => cases.map(c => window.{function}(c[1], c[2], c[3]))", [list(c) for c in cases]
    )
    return results


def _bound(value: float) -> float | None:
    return None if math.isnan(value) else value


def test_small_n_intervals_match_the_python_paired_delta(
    identical_site: IdenticalSite, open_page: Any
) -> None:
    watched = _open_compare(identical_site, open_page)
    got = _in_page(watched.page, CLOSED_FORM, "LB_pairedInterval")
    methods = set()
    for (name, a, b, strata), result in zip(CLOSED_FORM, got, strict=True):
        expected = paired_delta(a, b, strata=strata)
        methods.add(expected.method)
        assert result["method"] == expected.method, name
        assert result["delta"] == pytest.approx(expected.delta, abs=1e-12), name
        for side, bound in (("lo", expected.ci_low), ("hi", expected.ci_high)):
            if _bound(bound) is None:
                assert result[side] is None, (name, side)
            else:
                assert result[side] == pytest.approx(bound, abs=1e-9), (name, side)
    # Every small-n method the Python side has is exercised above.
    assert methods == {"tango", "tango-bounded", "t", "stratified-tango", "stratified-tango-bounded",
                       "stratified-none"}  # fmt: skip
    # The defect fixed: 5 identical pairs were [0, 0]; now +-z^2 / (5 + z^2) = +-0.434482.
    assert (got[0]["lo"], got[0]["hi"]) == pytest.approx((-0.434482, 0.434482), abs=1e-6)
    assert watched.watch.problems() == []


def test_the_bootstrap_is_kept_where_it_suits(identical_site: IdenticalSite, open_page: Any) -> None:
    watched = _open_compare(identical_site, open_page)
    got = _in_page(watched.page, BOOTSTRAP, "LB_pairedInterval")
    diffs = [([y - x for x, y in zip(a, b, strict=True)], strata) for _, a, b, strata in BOOTSTRAP]
    old: list[dict[str, Any]] = watched.page.evaluate(
        "cases => cases.map(c => window.LB_pairedBootstrap(c[0], c[1]))", [list(d) for d in diffs]
    )
    for (name, a, b, strata), result, before in zip(BOOTSTRAP, got, old, strict=True):
        expected = paired_delta(a, b, strata=strata)
        assert result["method"] == expected.method == "bootstrap", name
        assert result["delta"] == pytest.approx(expected.delta, abs=1e-12), name
        assert (result["lo"], result["hi"]) == (before["lo"], before["hi"]) == OLD_BOOTSTRAP[name], name
    assert watched.watch.problems() == []


def test_identical_small_runs_show_a_nonzero_small_n_interval(
    identical_site: IdenticalSite, open_page: Any
) -> None:
    watched = _open_compare(identical_site, open_page)
    page = watched.page
    rows: list[dict[str, Any]] = page.eval_on_selector_all(
        "#compare-table tbody tr[data-suite]",
        """trs => trs.map(tr => {
            const ci = tr.querySelector('td.ci'), note = ci && ci.querySelector('.method-note');
            return {suite: tr.getAttribute('data-suite'), delta: tr.querySelector('td.delta').getAttribute('data-value'),
                    lo: ci.getAttribute('data-lo'), hi: ci.getAttribute('data-hi'), method: ci.getAttribute('data-method'),
                    note: note && note.textContent, title: note && note.title, text: ci.textContent};
        })""",
    )
    assert sorted(r["suite"] for r in rows) == sorted(SUITES)
    scores: dict[str, dict[str, Any]] = page.evaluate(f"window.LB_SCORES[{identical_site.a!r}]")
    for row in rows:
        suite = row["suite"]
        assert float(row["delta"]) == 0.0, suite
        lo, hi = float(row["lo"]), float(row["hi"])
        assert lo < 0.0 < hi, (suite, lo, hi)  # not [0, 0]: 5 identical pairs are not certainty
        assert row["method"] != "bootstrap" and row["note"] == row["method"], suite
        assert row["title"].startswith("small-n interval"), suite
        assert row["text"].startswith(f"[{100 * lo:.1f}, {100 * hi:.1f}]"), suite
        # The same interval the reports and the gate print for these scores.
        run = scores[suite]
        values = [v for v in run["s"] if v is not None]
        expected = paired_delta(values, list(values), strata=run["g"])
        assert row["method"] == expected.method, suite
        assert (lo, hi) == pytest.approx((expected.ci_low, expected.ci_high), abs=1e-9), suite
    safety = next(r for r in rows if r["suite"] == "safety")
    assert safety["method"] == "stratified-tango"
    assert watched.watch.problems() == []
