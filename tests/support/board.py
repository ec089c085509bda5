"""The board in headless Chromium: Debian's browser driven by Playwright, one signed-in context per role."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.async_api import Browser, Page

if TYPE_CHECKING:
    from tests.conftest import Api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SUQIU_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "board"
# As the machine's notes advise for a closed network: no background connections from the browser.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

class Screen:
    """One signed-in browser context at 1366×768, collecting console errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def fits(self, name: str) -> None:
        """No horizontal scroll at 1366×768, and a screenshot kept as an artifact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        width = await self.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1], (name, width)


async def sign_in(browser: Browser, api: Api, who: str) -> Screen:
    context = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN",
                                        timezone_id="Asia/Shanghai")
    screen = Screen(await context.new_page())
    await screen.page.goto(f"{api.base}/board")  # the address as typed, without its slash
    assert screen.page.url.endswith("/board/login")  # no session, no board
    await screen.page.fill("input[name=key]", api.keys[who])
    await screen.page.click("button[type=submit]")
    await screen.page.wait_for_url(f"{api.base}/board/")
    cookie = next(c for c in await context.cookies() if c["name"] == "suqiu_board")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != api.keys[who]
    return screen
