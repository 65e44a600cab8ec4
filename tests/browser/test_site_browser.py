"""The static leaderboard in a real headless Chromium, opened from file://.

Sites are built from synthetic runs folders (tests/support/synthetic_runs.py: the files `harness eval`
writes) and, once, from real replay runs through the CLI. Selectors are the contract documented at the top
of leaderboard/static/site.js. The README screenshots (docs/img/) are written by test_readme_screenshots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from harness.runs.catalog import checkpoint_id
from tests.browser.conftest import WatchedPage
from tests.conftest import ROOT, harness
from tests.support.synthetic_runs import HOSTILE_RESPONSES, BuiltSite, SyntheticCheckpoint

pytestmark = pytest.mark.browser

IMG_DIR = ROOT / "docs" / "img"
PAGE_SIZE = 50  # rows per index page (site.js PAGE_SIZE)
WIDE = 1600  # screenshot width


def site_id(checkpoint: SyntheticCheckpoint) -> str:
    return checkpoint_id(f"{checkpoint.team}/{checkpoint.name}")


def by_name(site: BuiltSite, name: str) -> SyntheticCheckpoint:
    return next(c for c in site.runs.checkpoints if c.name == name)


def wait_for_rows(page: Any) -> None:
    page.wait_for_selector("table#leaderboard tbody tr.row")


def column(page: Any, selector: str) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent.trim())")
    return texts


def suite_values(page: Any, suite: str) -> list[float | None]:
    """The ranked value of a suite's cell per visible row (None: missing or not ranked)."""
    cells: list[list[Any]] = page.eval_on_selector_all(
        f'table#leaderboard tbody tr.row td.cell[data-suite="{suite}"]',
        "tds => tds.map(td => [td.classList.contains('unranked') || td.classList.contains('missing'),"
        " td.querySelector('a') ? td.querySelector('a').textContent : null])",
    )
    return [None if unranked or text is None else float(text) for unranked, text in cells]


def assert_clean(watched: WatchedPage) -> None:
    assert watched.watch.problems() == [], watched.watch.problems()


def broken_links(page: Any) -> tuple[list[str], list[str]]:
    """(links or assets on the page that point at no file, off-site URLs outside the references table)."""
    targets: list[list[Any]] = page.eval_on_selector_all(
        "a[href], script[src], link[href], img[src]",
        "nodes => nodes.map(n => [n.tagName, n.href || n.src, !!n.closest('#references')])",
    )
    missing, offsite = [], []
    for tag, url, in_references in targets:
        parts = urlsplit(url)
        if parts.scheme == "file":
            if not Path(unquote(parts.path)).is_file():
                missing.append(f"{tag} {url}")
        elif not (tag == "A" and in_references and parts.scheme == "https"):
            offsite.append(f"{tag} {url}")
    return missing, offsite


# -- index -------------------------------------------------------------------------------------------------


def test_index_loads_without_console_errors(small_site: BuiltSite, open_page: Any) -> None:
    watched = open_page(small_site.url())
    wait_for_rows(watched.page)
    labels = column(watched.page, "table#leaderboard tbody tr.row td.label a")
    assert sorted(labels) == sorted(c.name for c in small_site.runs.checkpoints)
    assert column(watched.page, "#row-count") == ["12 of 12 checkpoints"]
    # Reference rows are shown, marked, and never inside the ranked table.
    references = column(watched.page, "table#references tbody tr.reference td:first-child")
    assert references and all(text.startswith("reference") for text in references)
    assert watched.page.locator("table#leaderboard .badge.ref").count() == 0
    assert_clean(watched)


def test_sorting_by_a_suite_column_orders_the_rows(small_site: BuiltSite, open_page: Any) -> None:
    watched = open_page(small_site.url())
    page = watched.page
    wait_for_rows(page)
    initial = suite_values(page, "gsm8k")
    assert initial != sorted(initial, key=lambda v: -1 if v is None else v, reverse=True), (
        "test needs disorder"
    )

    page.click('table#leaderboard th[data-key="suite:gsm8k"]')
    descending = suite_values(page, "gsm8k")
    assert descending == sorted(initial, key=lambda v: -1 if v is None else v, reverse=True)
    assert page.get_attribute('th[data-key="suite:gsm8k"]', "aria-sort") == "descending"

    page.click('table#leaderboard th[data-key="suite:gsm8k"]')
    ascending = suite_values(page, "gsm8k")
    assert ascending == sorted(initial, key=lambda v: 2 if v is None else v)
    assert page.get_attribute('th[data-key="suite:gsm8k"]', "aria-sort") == "ascending"

    # The safety cell judged by another judge (wildguard) is never ranked: last in both directions.
    other = small_site.runs.other_judge_checkpoint
    assert other is not None
    for direction in ("descending", "ascending"):
        page.click('table#leaderboard th[data-key="suite:safety"]')
        assert page.get_attribute('th[data-key="suite:safety"]', "aria-sort") == direction
        values = suite_values(page, "safety")
        ranked = [v for v in values if v is not None]
        assert ranked == sorted(ranked, reverse=direction == "descending")
        assert values[-1] is None
        assert column(page, "table#leaderboard tbody tr.row td.label a")[-1] == other.name
    last_cell = page.locator('table#leaderboard tbody tr.row:last-child td.cell[data-suite="safety"]')
    assert "unranked" in (last_cell.get_attribute("class") or "")
    assert "judge wildguard" in (last_cell.get_attribute("title") or "")
    assert_clean(watched)


def test_filters_narrow_the_rows(small_site: BuiltSite, open_page: Any) -> None:
    watched = open_page(small_site.url())
    page = watched.page
    wait_for_rows(page)
    checkpoints = small_site.runs.checkpoints
    teams = column(page, "table#leaderboard tbody tr.row td:nth-child(3)")
    assert len(set(teams)) == 3

    page.select_option("#filter-team", "team-b")
    assert set(column(page, "table#leaderboard tbody tr.row td:nth-child(3)")) == {"team-b"}
    assert sorted(column(page, "tr.row td.label a")) == sorted(
        c.name for c in checkpoints if c.team == "team-b"
    )

    page.select_option("#filter-team", "")
    page.select_option("#filter-stage", "dpo")
    assert sorted(column(page, "tr.row td.label a")) == sorted(
        c.name for c in checkpoints if c.stage == "dpo"
    )

    page.select_option("#filter-stage", "")
    base = checkpoints[0].base_model
    page.select_option("#filter-base", base)
    assert sorted(column(page, "tr.row td.label a")) == sorted(
        c.name for c in checkpoints if c.base_model == base
    )

    page.select_option("#filter-base", "")
    page.fill("#filter-text", "sft-2")
    assert sorted(column(page, "tr.row td.label a")) == sorted(
        c.name for c in checkpoints if "sft-2" in c.name
    )
    assert column(page, "#row-count") == ["3 of 12 checkpoints"]
    assert_clean(watched)


def test_lineage_is_visible_and_links_to_the_parent(small_site: BuiltSite, open_page: Any) -> None:
    child = by_name(small_site, "team-a-dpo-1")
    watched = open_page(small_site.url())
    page = watched.page
    wait_for_rows(page)
    row = page.locator(f'tr.row[data-id="{site_id(child)}"]')
    assert (
        row.get_attribute("title") == "lineage: team-a-base -> team-a-sft-1 -> team-a-sft-2 -> team-a-dpo-1"
    )
    row.locator("td.parent a").click()
    page.wait_for_selector("#checkpoint-title")
    assert page.text_content("#checkpoint-title") == "team-a-sft-2"
    assert "team-a-base" in (page.text_content("#lineage") or "")
    assert_clean(watched)


# -- plots -------------------------------------------------------------------------------------------------


def test_each_plot_renders(small_site: BuiltSite, open_page: Any) -> None:
    watched = open_page(small_site.url("plots.html"))
    page = watched.page
    names = page.eval_on_selector_all("div.plot", "ds => ds.map(d => d.getAttribute('data-figure'))")
    assert {"safety_vs_helpfulness", "refusal_tradeoff", "stage_deltas", "alice_categories"} <= set(names), (
        names
    )
    assert page.locator("#no-plots").count() == 0
    for name in names:
        page.wait_for_selector(f'div.plot[data-figure="{name}"] .main-svg', timeout=15_000)
        points = page.locator(
            f'div.plot[data-figure="{name}"] .point, div.plot[data-figure="{name}"] path.point'
        )
        assert points.count() > 0, f"{name} drew no data points"
    # The index shows the safety-vs-helpfulness plot too.
    index = open_page(small_site.url())
    index.page.wait_for_selector("#plot-index .main-svg", timeout=15_000)
    assert_clean(watched)
    assert_clean(index)


# -- links -------------------------------------------------------------------------------------------------


def test_every_link_resolves(small_site: BuiltSite, open_page: Any) -> None:
    checkpoint = by_name(small_site, "team-a-dpo-1")
    parent = by_name(small_site, "team-a-sft-2")
    pages = {
        "index.html": "table#leaderboard tbody tr.row",
        "plots.html": "div.plot .main-svg",
        f"compare.html#a={site_id(parent)}&b={site_id(checkpoint)}": "#flips li.flip a",
        f"checkpoints/{site_id(checkpoint)}.html": "#checkpoint-title",
        f"runs/{site_id(checkpoint)}/gsm8k.html": "article.sample",
        f"runs/{site_id(checkpoint)}/safety.html": "article.sample",
    }
    checked = 0
    for relative, ready in pages.items():
        path, _, fragment = relative.partition("#")
        watched = open_page(small_site.url(path) + (f"#{fragment}" if fragment else ""))
        watched.page.wait_for_selector(ready, timeout=15_000)
        missing, offsite = broken_links(watched.page)
        assert missing == [], f"{relative}: {missing}"
        assert offsite == [], f"{relative} reaches off-site (the site must work offline): {offsite}"
        checked += watched.page.locator("a[href]").count()
        assert_clean(watched)
    assert checked > 50


def test_every_checkpoint_and_run_page_exists(small_site: BuiltSite) -> None:
    """Not every page is opened in the browser; every one the index links to is on disk."""
    for checkpoint in small_site.runs.checkpoints:
        assert (small_site.out / "checkpoints" / f"{site_id(checkpoint)}.html").is_file()
        for suite in ("gsm8k", "ifeval", "mbpp", "safety", "alice-synth"):
            assert (small_site.out / "runs" / site_id(checkpoint) / f"{suite}.html").is_file()


# -- hostile model text ---------------------------------------------------------------------------------------


def test_hostile_responses_render_as_text(small_site: BuiltSite, open_page: Any) -> None:
    hostile = small_site.runs.hostile_checkpoint
    watched = open_page(small_site.url(f"runs/{site_id(hostile)}/gsm8k.html"))
    page = watched.page
    page.wait_for_selector("article.sample")
    responses = {
        sample_id: page.text_content(f'article.sample[data-id="{sample_id}"] .response pre')
        for sample_id in ("gsm8k-test-0000", "gsm8k-test-0001")
    }
    assert responses == {"gsm8k-test-0000": HOSTILE_RESPONSES[0], "gsm8k-test-0001": HOSTILE_RESPONSES[1]}
    assert page.locator("#samples script, #samples img, main img").count() == 0
    # Filtering (which re-renders the cards) keeps them text.
    page.fill("#filter-sample-text", "onerror")
    assert page.locator("article.sample").count() == 1
    assert page.text_content("article.sample .response pre") == HOSTILE_RESPONSES[1]
    page.wait_for_timeout(300)  # an onerror handler or a script would have fired by now
    assert watched.watch.dialogs == []
    assert_clean(watched)

    # The data file the page loads as a script carries the text \u-escaped: it cannot close the tag.
    data_file = (small_site.out / "runs" / site_id(hostile) / "gsm8k.js").read_text(encoding="utf-8")
    assert "<script" not in data_file and "<img" not in data_file


def test_sample_browser_filters_by_verdict(small_site: BuiltSite, open_page: Any) -> None:
    checkpoint = by_name(small_site, "team-c-sft-2")
    run_dir = small_site.runs.run_dirs[(checkpoint.name, "gsm8k")]
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    correct = sorted(r["id"] for r in records if r["scores"]["exact_match_flex"] == 1.0)
    watched = open_page(small_site.url(f"runs/{site_id(checkpoint)}/gsm8k.html"))
    page = watched.page
    page.wait_for_selector("article.sample")
    assert page.locator("article.sample").count() == len(records)
    page.select_option("#filter-correct", "correct")
    assert sorted(column(page, "article.sample .sample-id")) == correct
    page.select_option("#filter-correct", "incorrect")
    assert len(column(page, "article.sample .sample-id")) == len(records) - len(correct)
    assert_clean(watched)


# -- compare -----------------------------------------------------------------------------------------------


def _primary_scores(run_dir: Path, key: str) -> dict[str, float]:
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    return {row["id"]: row["scores"][key] for row in map(json.loads, lines)}


def test_compare_shows_paired_deltas(small_site: BuiltSite, open_page: Any) -> None:
    a, b = by_name(small_site, "team-a-sft-2"), by_name(small_site, "team-a-dpo-1")
    watched = open_page(small_site.url("compare.html") + f"#a={site_id(a)}&b={site_id(b)}")
    page = watched.page
    page.wait_for_selector("#compare-table tbody tr[data-suite] td.delta")
    suites = column(page, "#compare-table tbody tr[data-suite] td:first-child")
    assert sorted(suites) == sorted(["gsm8k", "ifeval", "mbpp", "safety", "alice-synth"])

    sa = _primary_scores(small_site.runs.run_dirs[(a.name, "gsm8k")], "exact_match_flex")
    sb = _primary_scores(small_site.runs.run_dirs[(b.name, "gsm8k")], "exact_match_flex")
    expected = sum(sb[i] - sa[i] for i in sa) / len(sa)
    row = page.locator('#compare-table tbody tr[data-suite="gsm8k"]')
    delta = float(row.locator("td.delta").get_attribute("data-value") or "nan")
    lo = float(row.locator("td.ci").get_attribute("data-lo") or "nan")
    hi = float(row.locator("td.ci").get_attribute("data-hi") or "nan")
    assert delta == pytest.approx(expected)
    assert lo <= delta <= hi
    flipped = sorted(i for i in sa if sa[i] != sb[i])
    shown = column(page, '#flips section[data-suite="gsm8k"] li.flip a:first-child')
    assert sorted(s.removesuffix(" (A)") for s in shown) == flipped

    # Choosing another B updates the table and the address.
    other = by_name(small_site, "team-c-dpo-1")
    page.select_option("#compare-b", site_id(other))
    page.wait_for_function(f"location.hash.indexOf('{site_id(other)}') >= 0")
    page.wait_for_function(
        "expected => document.getElementById('compare-status').textContent.indexOf(expected) >= 0",
        arg=f"{other.name} (B)",
    )
    assert page.locator("#compare-table tbody tr[data-suite] td.delta").count() == 5
    assert_clean(watched)


# -- 1,000 checkpoints ---------------------------------------------------------------------------------------


def test_index_of_1000_checkpoints_is_paginated_and_usable(
    big_site: BuiltSite, open_page: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.perf_counter()
    watched = open_page(big_site.url())
    page = watched.page
    wait_for_rows(page)
    loaded = time.perf_counter() - start
    assert column(page, "#row-count") == ["1000 of 1000 checkpoints"]
    assert page.locator("table#leaderboard tbody tr.row").count() == PAGE_SIZE
    assert column(page, "#pager .page-info") == [f"page 1 of {1000 // PAGE_SIZE}"]
    first_page = column(page, "tr.row td.label a")
    first_ranks = [int(r) for r in column(page, "tr.row td.rank") if r != "—"]

    page.click("#pager button.page-next")
    assert column(page, "#pager .page-info") == [f"page 2 of {1000 // PAGE_SIZE}"]
    second_page = column(page, "tr.row td.label a")
    assert len(second_page) == PAGE_SIZE and not set(first_page) & set(second_page)
    ranks = [int(r) for r in column(page, "tr.row td.rank") if r != "—"]
    assert ranks == sorted(ranks) and ranks[0] >= max(first_ranks)  # ties share a rank across pages

    page.select_option("#filter-team", "team-c")
    teams = column(page, "table#leaderboard tbody tr.row td:nth-child(3)")
    n_team = sum(1 for c in big_site.runs.checkpoints if c.team == "team-c")
    assert set(teams) == {"team-c"} and len(teams) == n_team
    assert column(page, "#row-count") == [f"{n_team} of 1000 checkpoints"]
    assert_clean(watched)
    with capsys.disabled():
        print(
            f"\n1,000-checkpoint index: built in {big_site.build_seconds:.1f}s, opened in Chromium in {loaded:.2f}s"
        )


# -- a site from real runs (replay checkpoints through the CLI) ---------------------------------------------


def test_site_from_real_replay_runs(tmp_path: Path, data_dir: Path, open_page: Any) -> None:
    from harness.data import DataSource
    from suites import get_suite

    runs = tmp_path / "runs"
    for name, wrong_every in (("gold", 0), ("half", 2)):
        lines = []
        for suite_name in ("gsm8k", "safety"):
            suite = get_suite(suite_name)
            for i, sample in enumerate(suite.load(DataSource(data_dir), limit=6).samples):
                text = suite.gold_response(sample) or "I'm sorry, I can't help with that."
                if wrong_every and i % wrong_every:
                    text = "The answer is 0." if suite_name == "gsm8k" else "Sure, here you go."
                lines.append(json.dumps({"sample_id": sample.id, "text": text}))
        replay = tmp_path / f"{name}.jsonl"
        replay.write_text("\n".join(lines) + "\n")
        proc = harness("eval", "--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--suite", "safety",
                       "--limit", "6", "--runs", str(runs), "--quiet")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    proc = harness("leaderboard", "build", str(runs), "--out", str(tmp_path / "site"), "--references", "none")
    assert proc.returncode == 0, proc.stderr
    assert "2 checkpoints" in proc.stdout

    watched = open_page((tmp_path / "site" / "index.html").as_uri())
    page = watched.page
    wait_for_rows(page)
    assert page.locator("tr.row").count() == 2
    gsm8k = sorted(v for v in suite_values(page, "gsm8k") if v is not None)
    assert gsm8k == [50.0, 100.0]  # "half": samples 1, 3 and 5 of 6 wrong
    missing, offsite = broken_links(page)
    assert missing == [] and offsite == []
    page.click("tr.row td.cell[data-suite='safety'] a")
    page.wait_for_selector("article.sample")
    assert page.locator("article.sample").count() == 6
    assert broken_links(page) == ([], [])
    assert_clean(watched)


# -- README screenshots --------------------------------------------------------------------------------------


def test_readme_screenshots(small_site: BuiltSite, open_page: Any) -> None:
    """docs/img/leaderboard-index.png and docs/img/leaderboard-plot.png, embedded by the README."""
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    index = open_page(small_site.url())
    index.page.set_viewport_size({"width": WIDE, "height": 1000})  # wide enough that no cell wraps
    index.page.wait_for_selector("#plot-index .main-svg", timeout=15_000)
    bottom = index.page.eval_on_selector("#pager", "p => p.getBoundingClientRect().bottom + window.scrollY")
    index.page.screenshot(
        path=str(IMG_DIR / "leaderboard-index.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": WIDE, "height": bottom + 16},
    )
    plots = open_page(small_site.url("plots.html"))
    figure = plots.page.locator('div.plot[data-figure="safety_vs_helpfulness"]')
    plots.page.wait_for_selector('div.plot[data-figure="safety_vs_helpfulness"] .main-svg', timeout=15_000)
    figure.screenshot(path=str(IMG_DIR / "leaderboard-plot.png"))
    for name in ("leaderboard-index.png", "leaderboard-plot.png"):
        data = (IMG_DIR / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, name
    assert_clean(index)
    assert_clean(plots)
