"""Our runs in inspect-ai's own viewer, in a real headless Chromium: `harness export inspect` writes the
logs, `inspect view bundle` makes the static viewer, and the page served over loopback lists the log
with its headline score, and its samples with our ids, targets, answers and scores."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import WatchedPage
from tests.conftest import cli_env, harness

pytestmark = pytest.mark.browser

TEXTS = ("The answer is 18.", "<think>2 + 1 = 3</think>The answer is 3.", "The answer is 12.")
# The viewer looks for these optional files of an eval set and reports their 404s as console errors.
OPTIONAL_FILES = ("eval-set.json", "flow.yaml")


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that answers byte-range requests (206), as static hosts do: the viewer reads
    the members of a `.eval` zip by range."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        path = self.translate_path(self.path)
        if match is None or not os.path.isfile(path) or match.group(0) == "bytes=-":
            return super().send_head()
        size = os.path.getsize(path)
        first, last = match.groups()
        start, end = (int(first), int(last or size - 1)) if first else (max(0, size - int(last)), size - 1)
        end = min(end, size - 1)
        with open(path, "rb") as file:
            file.seek(start)
            body = file.read(max(0, end - start + 1))
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


COLUMNS = ("Target", "Answer", "exact_match_flex", "exact_match_strict")


def sample_rows(page: Any, ids: list[str]) -> dict[str, tuple[str, ...]]:
    """The viewer's sample grid (ARIA rows of gridcells, headers by aria-colindex): per id, COLUMNS."""
    titles = page.get_by_role("columnheader").evaluate_all(
        "hs => Object.fromEntries(hs.filter(h => h.getAttribute('aria-colindex'))"
        ".map(h => [h.getAttribute('aria-colindex'), h.title]))"
    )
    rows = {}
    for sample_id in ids:
        cells = (
            page.get_by_role("row")
            .filter(has_text=sample_id)
            .first.evaluate(
                "r => Object.fromEntries(Array.from(r.querySelectorAll('[role=gridcell]'))"
                ".map(c => [c.getAttribute('aria-colindex'), c.innerText.trim()]))"
            )
        )
        by_title = {titles.get(index): value for index, value in cells.items()}
        rows[sample_id] = tuple(by_title.get(column) for column in COLUMNS)
    return rows


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """served(folder) -> its http://127.0.0.1:PORT/ URL, until the test ends."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(folder: Path) -> str:
        handler = functools.partial(RangeRequestHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_inspect_view_shows_our_samples_and_scores(
    tmp_path: Path, data_dir: Path, open_page: Any, served: Any
) -> None:
    from harness.data import DataSource
    from suites import get_suite

    ids = [s.id for s in get_suite("gsm8k").load(DataSource(data_dir), 3).samples]
    replay = tmp_path / "r.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": i, "text": t}) + "\n" for i, t in zip(ids, TEXTS, strict=True))
    )
    # Subprocesses: Playwright keeps an event loop running in this process (harness.evaluate would refuse).
    runs, logs, site = tmp_path / "runs", tmp_path / "logs", tmp_path / "site"
    proc = harness("eval", "--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", "3",
                   "--reasoning", "think-tags", "--runs", str(runs), "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = harness("export", "inspect", f"replay:{replay}", "--runs", str(runs), "--out", str(logs))
    assert proc.returncode == 0, proc.stderr
    (log_file,) = logs.glob("*.eval")
    inspect_cli = Path(sys.executable).with_name("inspect")
    bundle = subprocess.run(
        [str(inspect_cli), "view", "bundle", "--log-dir", str(logs), "--output-dir", str(site)],
        capture_output=True, text=True, env=cli_env(), timeout=300,
    )  # fmt: skip
    assert bundle.returncode == 0, bundle.stderr
    assert (site / "index.html").is_file() and (site / "logs" / log_file.name).is_file()

    watched: WatchedPage = open_page(served(site))
    page = watched.page
    # The log listing: our task and model, and the headline score (2 of 3 right: 0.667).
    listing = page.locator("body")
    page.get_by_text(f"harness/replay:{replay}").first.wait_for(timeout=30_000)
    assert "gsm8k" in (listing.inner_text() or "")
    page.get_by_text("0.667").first.wait_for(timeout=30_000)
    page.get_by_text("gsm8k", exact=True).first.click()
    # The samples of the log: one row per sample, with our id, target, extracted answer and both scores.
    for sample_id in ids:
        page.get_by_text(sample_id, exact=True).first.wait_for(timeout=30_000)
    assert sample_rows(page, ids) == {
        ids[0]: ("18", "18", "1", "1"),
        ids[1]: ("3", "3", "1", "1"),  # the answer after the thinking
        ids[2]: ("70000", "12", "0", "0"),
    }
    text = page.inner_text("body")
    assert "Scorer\texact_match_flex\tstderr" in text and "0.333" in text  # the metric and its stderr
    # One sample: its header shows the target, the answer our scorer extracted and both scores.
    page.get_by_text(ids[1], exact=True).first.click()
    page.get_by_text(f"Sample {ids[1]}").first.wait_for(timeout=30_000)
    header = page.inner_text("body")
    assert "TARGET" in header and "ANSWER" in header and "EXACT_MATCH_STRICT" in header.upper()
    problems = [p for p in watched.watch.problems() if not any(name in p for name in OPTIONAL_FILES)]
    assert problems == []
