"""Fixtures of the browser end-to-end tests: one headless Chromium for the whole run, a fresh
browser context and a running app per test, and phone simulators playing the phone.

Every fixture here runs on the session's event loop, because the browser is shared. Tests
mark themselves ``pytest.mark.asyncio(loop_scope="session")`` to run on the same loop.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize

from push.phone import PhoneSimulator
from tests.support.browser import ChromiumMissing, PageWatch, launch_chromium
from tests.support.live import LiveApp, live_app

# Desktop size for the flows. The phone-size test opens its own context.
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# Playwright's default timeout for actions and expectations, well under a test's 20 s budget.
ACTION_TIMEOUT_MS = 10_000

PhoneFactory = Callable[..., Awaitable[PhoneSimulator]]


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Browser]:
    try:
        async with launch_chromium() as running:
            yield running
    except ChromiumMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def seeded_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory the app has started on once, so its keys, test CAs and demo accounts exist.

    A first start spends about 5 s generating keys, and a start on a copy takes about 1 s
    (measured on a 2026 CI container, so an estimate elsewhere).
    """
    folder = tmp_path_factory.mktemp("seeded") / "data"
    async with live_app(folder):
        pass
    return folder


@pytest_asyncio.fixture(loop_scope="session")
async def live(seeded_data_dir: Path, tmp_path: Path) -> AsyncIterator[LiveApp]:
    """The whole product on a loopback port, on its own copy of the seeded data directory."""
    data_dir = tmp_path / "data"
    await asyncio.to_thread(
        shutil.copytree, seeded_data_dir, data_dir, ignore=shutil.ignore_patterns("audit.log*")
    )
    async with live_app(data_dir) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def phone_for(live: LiveApp, tmp_path: Path) -> AsyncIterator[PhoneFactory]:
    """Return ``await phone_for(id_number, connect=True)``: an enrolled phone simulator."""
    phones: list[PhoneSimulator] = []

    async def make(id_number: str, *, connect: bool = True) -> PhoneSimulator:
        phone = PhoneSimulator(live.url, id_number, tmp_path / f"phone-{len(phones)}")
        phones.append(phone)
        await phone.enroll()
        if connect:
            await phone.connect()
        return phone

    yield make
    for phone in phones:
        await phone.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    fresh = await browser.new_context(viewport=VIEWPORT, locale="zh-TW")
    fresh.set_default_timeout(ACTION_TIMEOUT_MS)
    yield fresh
    await fresh.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    try:
        return (yield)
    finally:
        watch = getattr(item, "funcargs", {}).get("watch")
        if isinstance(watch, PageWatch):
            watch.stop()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext, watch: PageWatch) -> AsyncIterator[Page]:
    """A page whose uncaught errors, CSP violations and console errors fail the test."""
    opened = await context.new_page()
    watch.attach(opened)
    yield opened
    problems = watch.problems()
    if problems:
        pytest.fail("the page reported:\n" + "\n".join(problems), pytrace=False)
