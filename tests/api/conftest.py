"""Fixtures of the API room's browser tests: a headless Chromium page and where screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"]


@pytest.fixture
def screenshots(tmp_path: Path, repo_root: Path) -> Path:
    """Where the browser tests save their screenshots: DISPATCHER_SCREENSHOTS_DIR (relative to the repository
    root) when set, else a temporary folder, so a run never rewrites tracked files unasked."""
    chosen = os.environ.get("DISPATCHER_SCREENSHOTS_DIR")
    folder = repo_root / chosen if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page() -> Iterator[object]:
    """A page of a real headless Chromium (Debian's /usr/bin/chromium; skipped when it is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium) - the browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()
