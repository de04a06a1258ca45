"""Headless Debian Chromium driven by Playwright, and a watch on a page's script errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Flags that keep Chromium off the network beyond the tests' own loopback server and let it run
# as root in a container: no sandbox, no GPU, no QUIC, no first-run page, no background updates.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Chromium's console text for a blocked script, style, frame or connection.
CSP_VIOLATION = re.compile(r"Content Security Policy|Refused to (load|execute|apply|connect|frame)")


class ChromiumMissing(RuntimeError):
    """Debian's chromium package is not installed."""


def chromium_path() -> str:
    """Return the path of Debian's Chromium, or raise ``ChromiumMissing`` with the fix."""
    if not CHROMIUM.exists():
        raise ChromiumMissing(
            f"{CHROMIUM} not found: run scripts/test, which installs Debian's chromium package "
            "(never `playwright install`)"
        )
    return str(CHROMIUM)


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """Start headless Debian Chromium. Raises ``ChromiumMissing`` when it is not installed."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """Uncaught script errors, CSP violations and console errors of one page.

    ``allow(pattern)`` accepts console errors a test provokes on purpose (e.g. a blocked
    WebSocket). Uncaught errors and CSP violations are never accepted.
    """

    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)
    # Set once the test body has returned: what the page logs while fixtures tear the app
    # down (fetches refused by a stopped server) is not the test's concern.
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True

    def attach(self, page: Page) -> None:
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def problems(self) -> list[str]:
        """List every recorded problem that no ``allow`` pattern accepts."""
        unexpected = [
            text
            for text in self.console_errors
            if not any(pattern.search(text) for pattern in self.allowed)
        ]
        return (
            [f"uncaught error: {text}" for text in self.page_errors]
            + [f"CSP violation: {text}" for text in self.csp_violations]
            + [f"console error: {text}" for text in unexpected]
        )

    def _on_page_error(self, error: Error) -> None:
        if self.stopped:
            return
        self.page_errors.append(f"{error.name}: {error.message}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if self.stopped:
            return
        text = message.text
        if CSP_VIOLATION.search(text):
            self.csp_violations.append(text)
        elif message.type == "error":
            location = message.location.get("url", "")
            self.console_errors.append(f"{text} ({location})" if location else text)
