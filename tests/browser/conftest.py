"""A real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, and leaderboard sites to open.

Playwright drives the system browser through `executable_path`, so nothing is downloaded (CI has no
internet; `.ci/run` installs the `chromium` package). The tests are skipped, with that reason, only
where no chromium binary exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.synthetic_runs import BuiltSite, shared_site

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_binary() -> str | None:
    """$CHROMIUM_PATH, else Debian's chromium, else whatever `chromium` is on PATH."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class PageWatch:
    """What a page reported while it was open: console errors, uncaught exceptions, dialogs."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [*self.console_errors, *self.page_errors, *(f"dialog: {d}" for d in self.dialogs)]


@dataclass
class WatchedPage:
    page: Page
    watch: PageWatch


# Module scope, not session: Playwright's sync API keeps an event loop running on the main thread
# while it is open, and every later test that calls asyncio.run() would then fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "no chromium binary (looked for $CHROMIUM_PATH, /usr/bin/chromium, chromium on PATH); "
            "install Debian's `chromium` package (.ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    """open_page(url) -> WatchedPage: a fresh page (1280x900) whose errors and dialogs are recorded.

    Dialogs are recorded and dismissed, so a script that fires one is seen, and never blocks the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pages: list[WatchedPage] = []

    def opener(url: str) -> WatchedPage:
        page = context.new_page()
        watch = PageWatch()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                watch.console_errors.append(f"console: {message.text} ({message.location})")

        def on_dialog(dialog: Dialog) -> None:
            watch.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: watch.page_errors.append(f"pageerror: {error}"))
        page.on("dialog", on_dialog)
        page.goto(url, wait_until="load")
        watched = WatchedPage(page, watch)
        pages.append(watched)
        return watched

    yield opener
    context.close()


@pytest.fixture(scope="session")
def small_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """12 checkpoints of 3 teams with readable names (the README screenshots come from this site)."""
    return shared_site(12, 3, lambda: tmp_path_factory.mktemp("site-12"))


@pytest.fixture(scope="session")
def big_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """1,000 checkpoints of 50 teams (shared with tests/unit/test_site_scale.py)."""
    return shared_site(1000, None, lambda: tmp_path_factory.mktemp("site-1000"))
