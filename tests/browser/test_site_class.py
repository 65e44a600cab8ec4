"""The class leaderboard's marks in a real headless Chromium: ranked rows apart from the rows not ranked
(with their reasons), replay and spot-check badges, the class config and tie rule, numbers formatted in
the sample browser with truncation badges, and the compare page defaulting to a checkpoint's parent.

The site is built from synthetic runs (one response stopped at the token limit and longer than the
browser shows); the row fields a class config and `leaderboard verify` add (qualified,
unranked_reasons, replay, spot_check, class_config, tie_rule) are then written into its index data, as
leaderboard.site_data makes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.runs.catalog import checkpoint_id
from harness.runs.store import SAMPLES
from leaderboard.site import build_site, js_assign
from tests.browser.conftest import WatchedPage
from tests.support.synthetic_runs import SyntheticRuns, write_runs

pytestmark = pytest.mark.browser

THIRD = 1 / 3
LONG = "step " * 5000  # 25,000 characters: more than the sample browser shows (DISPLAY_CHARS)
REASON = "safety: run under other settings than the column: --limit 10 (column: 20): not ranked"


@dataclass(frozen=True)
class ClassSite:
    out: Path
    runs: SyntheticRuns
    sample_run: str  # site-relative run page whose first sample was cut at the token limit
    sample_id: str
    unranked: str  # id of the row made not ranked
    replay: str  # id of the replay row
    child: str  # a row with a parent on the board
    parent: str
    n_ranked: int

    def url(self, relative: str) -> str:
        return (self.out / relative).resolve().as_uri()


def _read_global(path: Path) -> Any:
    text = path.read_text(encoding="utf-8").strip()
    return json.loads(text[text.index("=") + 1 : -1])


def _cut_first_sample(run_dir: Path) -> str:
    lines = (run_dir / SAMPLES).read_text(encoding="utf-8").splitlines(keepends=True)
    record = json.loads(lines[0])
    record["completions"][0]["texts"] = [LONG]
    record["completions"][0]["finish_reasons"] = ["length"]
    record["scores"]["partial_credit"] = THIRD
    lines[0] = json.dumps(record) + "\n"
    (run_dir / SAMPLES).write_text("".join(lines), encoding="utf-8")
    return str(record["id"])


@pytest.fixture(scope="module")
def class_site(tmp_path_factory: pytest.TempPathFactory) -> ClassSite:
    root = tmp_path_factory.mktemp("class-site")
    runs = write_runs(root / "runs", 8, n_teams=2)
    sampled = runs.checkpoints[2]
    sample_id = _cut_first_sample(runs.run_dirs[(sampled.name, "gsm8k")])
    out = root / "site"
    build_site(list(runs.roots), out, Path("none"))

    ids = {c.name: checkpoint_id(f"{c.team}/{c.name}") for c in runs.checkpoints}
    index_file = out / "data" / "index.js"
    index = _read_global(index_file)
    rows = {row["id"]: row for row in index["rows"]}
    child = next(r for r in index["rows"] if r["parent_id"])
    unranked, replay = ids[runs.checkpoints[3].name], ids[runs.checkpoints[4].name]
    for row in index["rows"]:
        row.update(qualified=True, unranked_reasons=[], replay=False, spot_check=None)
    rows[unranked].update(rank=None, qualified=False, unranked_reasons=[REASON, "mbpp: no run"])
    rows[replay].update(replay=True, spot_check={"checked": 5, "agreed": 4, "date": "2026-03-02"})
    index["class_config"] = {"name": "cs-101", "suites": ["gsm8k", "ifeval"], "limit": 20,
                             "generation": {"temperature": 0.0, "max_tokens": 512}, "judge": "heuristic"}  # fmt: skip
    index["tie_rule"] = "equal averages share a rank; the earlier submission is listed first"
    index_file.write_text(js_assign("window.LB_INDEX", index), encoding="utf-8")
    ranks_file = out / "data" / "ranks.js"
    ranks = _read_global(ranks_file)
    ranks[unranked].update(rank=None, qualified=False, unranked_reasons=[REASON, "mbpp: no run"])
    ranks_file.write_text(js_assign("window.LB_RANKS", ranks), encoding="utf-8")
    return ClassSite(out, runs, f"runs/{ids[sampled.name]}/gsm8k.html", sample_id, unranked, replay,
                     child["id"], child["parent_id"], sum(r["rank"] is not None for r in index["rows"]))  # fmt: skip


def _texts(page: Any, selector: str) -> list[str]:
    found: list[str] = page.eval_on_selector_all(selector, "ns => ns.map(n => n.textContent.trim())")
    return found


def _clean(watched: WatchedPage) -> None:
    assert watched.watch.problems() == [], watched.watch.problems()


def test_rows_not_ranked_are_listed_apart_with_their_reasons(class_site: ClassSite, open_page: Any) -> None:
    watched = open_page(class_site.url("index.html"))
    page = watched.page
    page.wait_for_selector("tr.row")
    classes: list[str] = page.eval_on_selector_all(
        "table#leaderboard tbody tr", "trs => trs.map(t => t.id === 'not-ranked-head' ? 'HEAD' : t.className)"
    )
    n = class_site.n_ranked
    assert 0 < n < 7 and classes == ["row ranked"] * n + ["HEAD"] + ["row not-ranked"] * (8 - n)
    assert _texts(page, "#not-ranked-head") == ["Not ranked"]
    row = f'tr.row[data-id="{class_site.unranked}"]'
    assert _texts(page, f"{row} ul.reasons li") == [REASON, "mbpp: no run"]
    assert _texts(page, f"{row} td.rank") == ["—"]
    ranks = [int(t) for t in _texts(page, "tr.row.ranked td.rank")]
    assert ranks == sorted(ranks) and ranks[0] == 1
    # Sorted by another column, all rows sort together (still marked, with their reasons).
    page.click('th[data-key="label"]')
    assert page.locator("#not-ranked-head").count() == 0
    assert _texts(page, "tr.row td.label a") == sorted(_texts(page, "tr.row td.label a"))
    assert _texts(page, f"{row} ul.reasons li") == [REASON, "mbpp: no run"]
    page.click('th[data-key="rank"]')
    assert _texts(page, "#not-ranked-head") == ["Not ranked"]
    assert (
        page.eval_on_selector("table#leaderboard tbody tr:last-child", "t => t.className") == "row not-ranked"
    )
    _clean(watched)


def test_replay_spot_check_class_config_and_tie_rule_are_shown(class_site: ClassSite, open_page: Any) -> None:
    watched = open_page(class_site.url("index.html"))
    page = watched.page
    page.wait_for_selector("tr.row")
    row = f'tr.row[data-id="{class_site.replay}"]'
    assert _texts(page, f"{row} .badge.replay") == ["replay"]
    assert _texts(page, f"{row} .badge.spot-check") == ["spot-checked 4/5"]
    assert page.locator("table#leaderboard .badge.replay").count() == 1
    assert page.locator("table#leaderboard .badge.spot-check").count() == 1
    config = page.text_content("#class-config") or ""
    assert page.is_visible("#class-config")
    for part in ("cs-101", "suites gsm8k, ifeval", "--limit 20", "max_tokens=512", "judge heuristic"):
        assert part in config, config
    assert page.text_content("#tie-rule") == (
        "Ties: equal averages share a rank; the earlier submission is listed first."
    )
    _clean(watched)


def test_a_checkpoint_page_says_why_it_is_not_ranked(class_site: ClassSite, open_page: Any) -> None:
    watched = open_page(class_site.url(f"checkpoints/{class_site.unranked}.html"))
    page = watched.page
    assert page.text_content("#rank") == "not ranked"
    assert _texts(page, "#unranked-reasons li") == [REASON, "mbpp: no run"]
    ranked = open_page(class_site.url(f"checkpoints/{class_site.replay}.html"))
    assert (ranked.page.text_content("#rank") or "").isdigit()
    assert "% over " in (ranked.page.text_content("#average") or "")
    _clean(watched)
    _clean(ranked)


def test_sample_browser_formats_numbers_and_badges_truncation(class_site: ClassSite, open_page: Any) -> None:
    watched = open_page(class_site.url(class_site.sample_run) + f"#sample={class_site.sample_id}")
    page = watched.page
    card = f'article.sample[data-id="{class_site.sample_id}"]'
    page.wait_for_selector(card)
    text = page.text_content(card) or ""
    assert "0.3333333333333333" not in text
    scores = page.eval_on_selector_all(
        f"{card} dl.extracted dt", "dts => dts.map(dt => [dt.textContent, dt.nextElementSibling.textContent])"
    )
    assert ["score partial_credit", "0.333"] in scores
    assert _texts(page, f"{card} header .badge.truncated") == ["truncated"]
    assert _texts(page, f"{card} .response .badge.truncated") == ["truncated: token limit"]
    assert _texts(page, f"{card} .response .badge.clipped") == ["clipped for display"]
    shown = page.text_content(f"{card} .response pre") or ""
    assert 0 < len(shown) < len(LONG)
    # Samples that stopped normally carry no badge.
    assert page.locator("article.sample .badge.truncated").count() == 2
    _clean(watched)


def test_compare_defaults_to_the_parent(class_site: ClassSite, open_page: Any) -> None:
    watched = open_page(class_site.url("compare.html") + f"#b={class_site.child}")
    page = watched.page
    page.wait_for_selector("#compare-table tbody tr")
    assert page.eval_on_selector("#compare-a", "s => s.value") == class_site.parent
    assert page.eval_on_selector("#compare-b", "s => s.value") == class_site.child
    _clean(watched)

    plain = open_page(class_site.url("compare.html"))
    plain.page.wait_for_selector("#compare-table tbody tr")
    a = plain.page.eval_on_selector("#compare-a", "s => s.value")
    b = plain.page.eval_on_selector("#compare-b", "s => s.value")
    index = _read_global(class_site.out / "data" / "index.js")
    first_child = next(r for r in index["rows"] if r["parent_id"])
    assert (a, b) == (first_child["parent_id"], first_child["id"])
    _clean(plain)
