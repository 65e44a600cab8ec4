"""A reasoning run on the leaderboard in a real headless Chromium: the index cell carries the
ended-inside-reasoning share and the mean thinking length, the sample browser shows each response's
answer with its thinking collapsed above it, and one that ended inside its thinking says it had no answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import WatchedPage
from tests.conftest import harness

pytestmark = pytest.mark.browser

CLOSED = "<think>16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.</think>The answer is 18."
UNCLOSED = "<think>Blue 2 bolts, white half of that: 1. Total 3"


def test_reasoning_cells_and_split_samples(tmp_path: Path, data_dir: Path, open_page: Any) -> None:
    from harness.data import DataSource
    from leaderboard.site import build_site
    from suites import get_suite

    ids = [s.id for s in get_suite("gsm8k").load(DataSource(data_dir), 2).samples]
    replay = tmp_path / "r.jsonl"
    replay.write_text(
        "".join(
            json.dumps({"sample_id": i, "text": t}) + "\n"
            for i, t in zip(ids, (CLOSED, UNCLOSED), strict=True)
        )
    )
    # A subprocess: Playwright keeps an event loop running in this one (harness.evaluate would refuse).
    proc = harness("eval", "--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", "2",
                   "--reasoning", "think-tags", "--runs", str(tmp_path / "runs"), "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    build_site([tmp_path / "runs"], tmp_path / "site", Path("none"))

    watched: WatchedPage = open_page((tmp_path / "site" / "index.html").as_uri())
    page = watched.page
    page.wait_for_selector("table#leaderboard tbody tr.row")
    note = page.text_content("td.cell[data-suite='gsm8k'] span.reasoning") or ""
    assert "ended in thinking 50.0%" in note and "characters" in note
    page.click("td.cell[data-suite='gsm8k'] a")
    page.wait_for_selector("article.sample")
    first = page.locator(f"article.sample[data-id='{ids[0]}']")
    thinking = first.locator("details.thinking")
    assert thinking.count() == 1 and thinking.get_attribute("open") is None  # collapsed
    assert first.locator(".answer pre").text_content() == "The answer is 18."
    unanswered = page.locator(f"article.sample[data-id='{ids[1]}']")
    assert unanswered.locator("span.badge.unanswered").count() == 1
    assert "no answer" in (unanswered.locator(".answer pre").text_content() or "")
    assert watched.watch.problems() == []
