"""Debian's Chromium driven by Playwright, for tests of the pages.

The browser is the system one (/usr/bin/chromium, installed by scripts/setup.sh); Playwright never
downloads its own. Fake media devices stand in for a headset, so the browser softphone sends a
tone and plays what it receives. Screenshots go to tests/artefacts/ for a human to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.support.requirements import require

CHROMIUM = os.environ.get("CITYLINE_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parent.parent / "artefacts"

# Desktop and across-the-room TV sizes for screenshots.
DESKTOP = {"width": 1440, "height": 900}
TV = {"width": 1920, "height": 1080}

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no route out: without these Chromium keeps dialling Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A headset that needs no one to click "allow": a generated tone in, audio out to nowhere.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # WebRTC between the page and Asterisk, both on 127.0.0.1.
    "--allow-loopback-in-peer-connection",
]


def chromium_path() -> str:
    require(shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM}")
    return CHROMIUM


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(
    browser: Browser, *, viewport: dict[str, int] | None = None, locale: str = "pl-PL"
) -> tuple[BrowserContext, Page]:
    """A fresh profile (own storage and cookies) per page, like a second machine."""
    context = await browser.new_context(
        viewport=viewport or DESKTOP,  # type: ignore[arg-type]
        locale=locale,
        permissions=["microphone"],
    )
    page = await context.new_page()
    page.on("console", lambda msg: _console_lines.append(f"{msg.type}: {msg.text}"))
    return context, page


_console_lines: list[str] = []


def console_lines() -> list[str]:
    """What the pages printed to their consoles (useful in a failing test's output)."""
    return list(_console_lines)


async def screenshot(page: Page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path
