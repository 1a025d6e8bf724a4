"""The Dagster UI in a real browser: Playwright driving the system's Chromium.

Playwright's own browser download cannot work offline, so it launches the installed executable
(Debian's `chromium`; `.ci/run` installs it when it runs as root, or set ML_ASSETS_CHROMIUM).
Without Chromium or Playwright a browser test skips with the reason. Screenshots go to
ml_assets_tests/artefacts/ (kept out of git).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ARTEFACTS = Path(__file__).parent / "artefacts"
# the closed network refuses Chromium's own background connections: switch them off
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    return os.environ.get("ML_ASSETS_CHROMIUM") or shutil.which("chromium")


@contextmanager
def browser_page(base_url: str) -> Iterator:
    """A page of a fresh headless Chromium on `base_url`; Dagster's first-visit "Join the Dagster
    community" dialog is skipped whenever it shows."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("SKIPPED LOUDLY: playwright is not installed (make install installs it)")
    executable = chromium_path()
    if not executable:
        pytest.skip(
            "SKIPPED LOUDLY: no Chromium to drive the UI with: `apt-get install chromium` "
            "(.ci/run does it as root) or set ML_ASSETS_CHROMIUM"
        )
    ARTEFACTS.mkdir(exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1100},
            base_url=base_url,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            # no_wait_after: under load the dialog took over the 60 s action timeout to go
            # away after Skip, and the action it interrupted failed; the dialog's own
            # filter (dialog() below) keeps the test off it meanwhile
            page.add_locator_handler(
                page.get_by_text("Join the Dagster community"),
                lambda: page.get_by_role("button", name="Skip").click(),
                no_wait_after=True,
            )
            yield page
        finally:
            browser.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """The page as ARTEFACTS/<name>.png (the viewport only for a dialog, which scrolls itself)."""
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


def open_markdown(page, asset: str, entry: str):
    """The newest materialization's Markdown metadata entry `entry`, opened in its dialog."""
    page.goto(f"/assets/{asset}")
    row = page.locator("tr", has_text=entry).filter(has_text="Show Markdown").first
    row.get_by_text("Show Markdown").click()
    return dialog(page, entry)


def dialog(page, title: str):
    """The open dialog headed `title` (not Dagster's community dialog, which may pop up too)."""
    found = page.get_by_role("dialog").filter(has_text=title)
    found = found.filter(has_not_text="Join the Dagster community").first
    found.wait_for()
    return found


def rendered_images(dialog) -> list[dict]:
    """alt text and decoded size of each image in the dialog, once every one has loaded."""
    dialog.locator("img").first.wait_for()
    return dialog.locator("img").evaluate_all(
        """imgs => Promise.all(imgs.map(img => img.decode().then(
             () => ({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight}),
             () => ({alt: img.alt, width: 0, height: 0}))))"""
    )


def expect(target):
    """Playwright's `expect`, imported when a browser test runs (the module loads without it)."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=TIMEOUT_MS)
    return playwright_expect(target)
