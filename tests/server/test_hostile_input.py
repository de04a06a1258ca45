"""Hostile clients against the real app: malformed bodies, odd encodings, log injection.

Each test is the regression test of a fault found by adversarial testing; the app runs whole on
a loopback port (``tests/support/live.py``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.web.keys import ASSERTIONS, AUDIT
from tests.support.live import LiveApp, live_app

FULL_ID = re.compile(r"[A-Z][A-Z0-9]\d{8}")
# Cheap argon2id so the tests run fast; the same code path as production.
FAST_HASHING = {"password": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveApp]:
    async with live_app(tmp_path, FAST_HASHING) as app:
        yield app


@pytest.fixture
async def browser(live: LiveApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=live.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        yield session


async def post_raw(
    browser: aiohttp.ClientSession, live: LiveApp, path: str, raw: bytes, **headers: str
) -> tuple[int, str, dict[str, Any] | str]:
    sent = {"Origin": live.url, "Content-Type": "application/json", **headers}
    async with browser.post(path, data=raw, headers=sent) as response:
        text = await response.text()
        body = json.loads(text) if response.content_type == "application/json" else text
        return response.status, response.content_type, body


async def test_deeply_nested_json_body_answers_400_not_500(
    browser: aiohttp.ClientSession, live: LiveApp
) -> None:
    status, _, body = await post_raw(browser, live, "/api/logins", b"[" * 5000 + b"]" * 5000)

    assert status == 400
    assert isinstance(body, dict) and body["error"] == "invalid_input"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"method": "password", "account": "\\ud800", "password": "whatever"}',
        b'{"method": "password", "account": "chen.anna", "password": "\\udfff-pass"}',
        b'{"method": "mobile", "id_number": "A12345678\\ud800"}',
    ],
)
async def test_lone_surrogate_in_body_answers_400_not_500(
    browser: aiohttp.ClientSession, live: LiveApp, raw: bytes
) -> None:
    status, _, body = await post_raw(browser, live, "/api/logins", raw)

    assert status == 400
    assert isinstance(body, dict) and body["error"] == "invalid_input"


async def test_oversize_json_body_answers_413(
    browser: aiohttp.ClientSession, live: LiveApp
) -> None:
    raw = json.dumps({"method": "password", "account": "x" * 20000, "password": "y"}).encode()

    status, _, body = await post_raw(browser, live, "/api/logins", raw)

    assert status == 413
    assert isinstance(body, dict) and body["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/no-such-page", 404, "找不到此資源"),
        ("GET", "/ebas/complete", 405, "不支援此請求方法"),
    ],
)
async def test_page_paths_answer_http_errors_with_a_zh_tw_page(
    browser: aiohttp.ClientSession, live: LiveApp, method: str, path: str, status: int, text: str
) -> None:
    async with browser.request(method, path) as response:
        assert response.status == status
        assert response.content_type == "text/html"
        assert text in await response.text()


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=zz",
        "application/x-www-form-urlencoded; charset=no-such-charset",
        "application/x-www-form-urlencoded",
    ],
)
async def test_complete_with_a_malformed_form_answers_400_page(
    browser: aiohttp.ClientSession, live: LiveApp, content_type: str
) -> None:
    status, kind, body = await post_raw(
        browser,
        live,
        "/ebas/complete",
        b"assertion=\xff\xfe--zz\r\n",
        **{"Content-Type": content_type},
    )

    assert status == 400
    assert kind == "text/html"
    assert "表單內容格式不正確" in str(body)


async def test_complete_with_an_oversize_form_answers_413_page(
    browser: aiohttp.ClientSession, live: LiveApp
) -> None:
    status, kind, body = await post_raw(
        browser,
        live,
        "/ebas/complete",
        b"assertion=" + b"a" * 100_000,
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert status == 413
    assert kind == "text/html"
    assert "請求內容過大" in str(body)


async def forced_change_login(browser: aiohttp.ClientSession, live: LiveApp) -> str:
    body = {"method": "password", "account": "wang.xiaoming", "password": "Wang#2024demo"}
    async with browser.post("/api/logins", json=body, headers={"Origin": live.url}) as response:
        view = await response.json()
    assert view["state"] == "pending"
    assert view["must_change"] is True
    return str(view["login_id"])


@pytest.mark.parametrize(
    "new_password",
    [
        "Aa1" + "\u200b" * 10,  # three visible characters padded with zero-width spaces
        "Aa1!" + "\x00" * 9,  # NUL padding
        "Aa1" + "\u0301" * 10,  # combining accents on nothing
        "Aa1!\u202eabcdefghij",  # right-to-left override
        "ｗａｎｇ.ｘｉａｏｍｉｎｇ#A1",  # the account name in full-width letters
    ],
)
async def test_forced_change_rejects_padded_or_disguised_passwords(
    browser: aiohttp.ClientSession, live: LiveApp, new_password: str
) -> None:
    login_id = await forced_change_login(browser, live)

    async with browser.post(
        f"/api/logins/{login_id}/password",
        json={"new_password": new_password},
        headers={"Origin": live.url},
    ) as response:
        body = await response.json()

    assert response.status == 400
    assert body["error"] == "password_policy"
    async with browser.get(f"/api/logins/{login_id}") as response:
        assert (await response.json())["state"] == "pending"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_assertion_rejection_log_omits_header_values(
    browser: aiohttp.ClientSession, live: LiveApp, caplog: pytest.LogCaptureFixture
) -> None:
    header = {
        "alg": "ES256",
        "kid": live.app[ASSERTIONS].kid,
        "crit": ["A123456789\nFORGED LOG LINE"],
    }
    token = f"{_b64(header)}.{_b64({'sub': 'x'})}.c2ln"
    browser.cookie_jar.update_cookies({"ebas_login_binding": "some-secret"})

    with caplog.at_level(logging.INFO):
        async with browser.post(
            "/ebas/complete", data={"assertion": token}, headers={"Origin": live.url}
        ) as response:
            assert response.status == 401

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "rejected" in logged
    assert "FORGED" not in logged
    assert not FULL_ID.search(logged)


async def test_logs_mask_id_numbers_in_user_agent_and_origin(
    browser: aiohttp.ClientSession, live: LiveApp, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"method": "password", "account": "nobody", "password": "wrong-password"}
    with caplog.at_level(logging.INFO):
        async with browser.post(
            "/api/logins",
            json=body,
            headers={"Origin": live.url, "User-Agent": "Mozilla/5.0 A123456789"},
        ) as response:
            assert response.status == 401
        async with browser.post(
            "/api/logins", json=body, headers={"Origin": "http://A123456789.example"}
        ) as response:
            assert response.status == 403

    live.app[AUDIT].flush()
    audit = (live.settings.server.data_dir / "audit.log").read_text(encoding="utf-8")
    assert "A12****789" in audit
    assert not FULL_ID.search(audit)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "origin" in logged
    assert not FULL_ID.search(logged)
