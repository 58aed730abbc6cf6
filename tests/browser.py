"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright (which never
downloads a browser here). Tests that use it skip when it is absent or cannot start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots (gitignored)


def playwright_api():
    """Playwright's sync API, or a skip saying why the browser tests cannot run."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")


@contextmanager
def chromium() -> Iterator:
    """A launched headless Chromium (Playwright `Browser`)."""
    sync_api = playwright_api()
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except sync_api.Error as error:  # e.g. a chromium that cannot start in this container
            pytest.skip(f"headless Chromium did not start: {error}")
        yield browser
        browser.close()
