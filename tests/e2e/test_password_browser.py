"""eCPA 帳號密碼 logins in headless Chromium: the portal, the forced change, the lockout.

Each test gets a fresh app and data directory (the ``live`` fixture), so lockouts and changed
passwords never leak into another test.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from server.accounts import TAIWAN_TIME
from server.errors import InvalidCredentials
from server.passwords import PasswordPolicy
from server.web.ebas import PASSWORD_NOTICE
from tests.support.browser import PageWatch
from tests.support.live import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

LOGINS_API = "**/api/logins"
# The server returns 401 for a wrong password and 423 for a locked account, and Chromium logs
# each of these responses as a console error.
FAILED_REQUEST = r"Failed to load resource: the server responded with a status of (401|423)"


async def open_password_tab(page: Page, live: LiveApp) -> None:
    await page.goto(live.url + "/")
    await page.click("#tab-password")
    await expect(page.locator("#password-account")).to_be_visible()


async def submit_login(page: Page, account: str, password: str) -> None:
    """Fill in the login form, submit it and wait for the server's response."""
    await page.fill("#password-account", account)
    await page.fill("#password-password", password)
    async with page.expect_response(LOGINS_API):
        await page.click("#password-submit")


async def submit_change(page: Page, new_password: str) -> None:
    await page.fill("#password-new", new_password)
    await page.fill("#password-confirm", new_password)
    async with page.expect_response("**/api/logins/*/password"):
        await page.click("#password-change-submit")


async def test_password_login_reaches_the_portal(page: Page, live: LiveApp) -> None:
    await open_password_tab(page, live)
    await submit_login(page, "chen.anna", "Anna#2024demo")

    await page.wait_for_url("**/ebas/portal")
    await expect(page.locator(".greeting")).to_have_text("陳安娜，您好。")
    await expect(page.locator("dl.details")).to_contain_text("登入方式帳號密碼")


async def test_stale_password_must_be_changed_under_the_policy(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(r"status of 400")  # the rejected new password
    await open_password_tab(page, live)
    await submit_login(page, "wang.xiaoming", "Wang#2024demo")

    await expect(page.locator("#password-change-form")).to_be_visible()
    await expect(page.locator("#password-form")).to_be_hidden()
    await expect(page.locator("#password-change-reason")).to_contain_text("90 天")
    await expect(page.locator("#password-change-reason")).not_to_contain_text("首次登入")

    rules = live.settings.password
    policy = PasswordPolicy(rules.min_length, rules.min_classes, rules.max_length)
    error = page.locator("#password-change-error")
    await submit_change(page, "Sh0rt#pw")
    await expect(error).to_have_text(f"新密碼長度不符。{policy.describe()}")
    await submit_change(page, "onlylowercaseletters")
    await expect(error).to_have_text(f"新密碼混合的字元種類不足。{policy.describe()}")
    assert page.url.startswith(live.url + "/")  # still on the login page

    await submit_change(page, "Kestrel#Harbor2031")
    await page.wait_for_url("**/ebas/portal")
    await expect(page.locator(".greeting")).to_have_text("王小明，您好。")
    today = datetime.now(UTC).astimezone(TAIWAN_TIME).strftime("%Y-%m-%d")
    await expect(page.locator("p.notice")).to_have_text(
        f"您的密碼上次變更於 {today}，請定期變更密碼。"
    )
    await expect(page.get_by_text(PASSWORD_NOTICE)).to_have_count(0)


def unlock_clock_texts(lockout_seconds: int) -> set[str]:
    """Return the HH:MM texts that the unlock time of a lock starting now may show.

    A few seconds either side cover a minute boundary passing while the request runs.
    """
    texts = set()
    for offset in (-5, 0, 5):
        moment = datetime.fromtimestamp(time.time() + lockout_seconds + offset, UTC)
        texts.add(moment.astimezone(TAIWAN_TIME).strftime("%H:%M"))
    return texts


async def test_repeated_wrong_passwords_lock_the_account(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_REQUEST)
    rules = live.settings.password
    error = page.locator("#password-error")
    await open_password_tab(page, live)

    for _ in range(rules.max_failures - 1):
        await submit_login(page, "chen.anna", "Wrong#password1")
        await expect(error).to_have_text(InvalidCredentials.message)

    expected_clock = unlock_clock_texts(rules.lockout_seconds)
    await submit_login(page, "chen.anna", "Wrong#password1")
    minutes = rules.lockout_seconds // 60
    locked = re.compile(
        r"^登入失敗次數過多，此帳號已暫時鎖定，"
        rf"請於 (?:\d\d/\d\d )?(\d\d:\d\d)（約 {minutes} 分鐘後）再試。$"
    )
    await expect(error).to_have_text(locked)
    unlock_match = locked.match(await error.inner_text())
    assert unlock_match is not None
    assert unlock_match.group(1) in expected_clock

    # The right password is rejected while the lock lasts.
    await submit_login(page, "chen.anna", "Anna#2024demo")
    await expect(error).to_have_text(locked)
    assert page.url == live.url + "/"


async def test_unknown_account_gets_wrong_password_message(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_REQUEST)
    error = page.locator("#password-error")
    await open_password_tab(page, live)

    await submit_login(page, "no.such.person", "Anna#2024demo")
    await expect(error).to_have_text(InvalidCredentials.message)
    unknown_text = await error.inner_text()

    await page.evaluate("document.getElementById('password-error').textContent = ''")
    await submit_login(page, "chen.anna", "Anna#2024wrong")
    await expect(error).to_have_text(InvalidCredentials.message)
    assert await error.inner_text() == unknown_text
