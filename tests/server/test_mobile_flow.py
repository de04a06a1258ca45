"""The mobile-credential login over real HTTP and WebSocket, with the phone simulator."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from push.phone import PhoneSimulator
from server.demo import DEMO_IDS
from server.web.app import POLLER
from server.web.keys import STORE
from tests.support.live import LiveApp, free_port, live_app

ACTIVE = DEMO_IDS["active"]
EVENT_TIMEOUT = 10.0


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveApp]:
    # A poll interval far above the test's length proves results arrive by event, not by poll.
    async with live_app(tmp_path / "data", {"twfido": {"poll_interval": 60}}) as running:
        yield running


@pytest.fixture
async def phone(live: LiveApp, tmp_path: Path) -> AsyncIterator[PhoneSimulator]:
    simulator = PhoneSimulator(live.url, ACTIVE, tmp_path / "phone")
    await simulator.enroll()
    await simulator.connect()
    yield simulator
    await simulator.close()


@pytest.fixture
async def browser(live: LiveApp) -> AsyncIterator[aiohttp.ClientSession]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(live.url, cookie_jar=jar) as session:
        yield session


async def start(
    browser: aiohttp.ClientSession, id_number: str = ACTIVE
) -> tuple[int, dict[str, Any]]:
    async with browser.post(
        "/api/logins", json={"method": "mobile", "id_number": id_number}
    ) as response:
        return response.status, await response.json()


async def events(browser: aiohttp.ClientSession, live: LiveApp, login: dict[str, Any]):  # type: ignore[no-untyped-def]
    return browser.ws_connect(login["events_url"], origin=live.url)


async def receive_until_terminal(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    states = []
    while True:
        message = await asyncio.wait_for(ws.receive(), EVENT_TIMEOUT)
        if message.type != aiohttp.WSMsgType.TEXT:
            return states
        states.append(json.loads(message.data))


async def test_push_approved_reaches_browser_by_event(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    status, login = await start(browser)
    assert status == 201
    assert login["state"] == "pending"
    assert login["push_status"] == "sent"
    assert len(login["verification_code"]) == 2

    async with browser.ws_connect(login["events_url"], origin=live.url) as ws:
        push = await phone.next_push(EVENT_TIMEOUT)
        assert "全國主計網(eBAS)" in push["hint"]
        assert login["verification_code"] in push["choices"]
        await phone.approve(push, login["verification_code"])
        states = await receive_until_terminal(ws)

    assert states[0]["state"] == "pending"
    final = states[-1]
    assert final["state"] == "approved"
    assert final["assertion"].count(".") == 2
    assert final["complete_url"] == "/ebas/complete"


async def test_approved_login_completes_to_portal(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    push = await phone.next_push(EVENT_TIMEOUT)
    await phone.approve(push, login["verification_code"])
    async with browser.ws_connect(login["events_url"], origin=live.url) as ws:
        final = (await receive_until_terminal(ws))[-1]

    async with browser.post(
        "/ebas/complete", data={"assertion": final["assertion"]}, headers={"Origin": live.url}
    ) as response:
        page = await response.text()
        assert response.url.path == "/ebas/portal"
    assert "王小明" in page
    assert "行政院主計總處" in page


async def test_denied_in_app_ends_denied(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    async with browser.ws_connect(login["events_url"], origin=live.url) as ws:
        await phone.deny(await phone.next_push(EVENT_TIMEOUT))
        final = (await receive_until_terminal(ws))[-1]
    assert final["state"] == "denied"
    assert final["reason"] == "denied_in_app"
    assert "assertion" not in final


async def test_wrong_code_in_app_ends_denied(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    push = await phone.next_push(EVENT_TIMEOUT)
    wrong = next(c for c in push["choices"] if c != login["verification_code"])
    await phone.approve(push, wrong)
    async with browser.ws_connect(login["events_url"], origin=live.url) as ws:
        final = (await receive_until_terminal(ws))[-1]
    assert final["state"] == "denied"


async def test_qr_scan_approves_same_login(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    await phone.next_push(EVENT_TIMEOUT)  # ignored: the person scans instead
    async with browser.post(login["qr_url"], headers={"Origin": live.url}) as response:
        qr = await response.json()
    assert qr["mode"] == "qr"
    async with browser.get(qr["qr_svg_url"]) as response:
        assert response.content_type == "image/svg+xml"
        assert "<svg" in await response.text()

    session = await live.app[STORE].get(login["login_id"])
    prompt = await phone.scan(session.data["qr_payload"])
    await phone.approve(prompt, login["verification_code"])
    async with browser.ws_connect(login["events_url"], origin=live.url) as ws:
        final = (await receive_until_terminal(ws))[-1]
    assert final["state"] == "approved"


async def test_push_without_connected_phone_offers_qr(
    live: LiveApp, browser: aiohttp.ClientSession, tmp_path: Path
) -> None:
    offline = PhoneSimulator(live.url, ACTIVE, tmp_path / "offline")
    await offline.enroll()  # bound, but never connected
    status, login = await start(browser)
    assert status == 201
    assert login["state"] == "pending"
    assert login["push_status"] == "not_delivered"
    assert "QR" in login["push_message"]


async def test_unbound_id_fails_with_binding_help(browser: aiohttp.ClientSession) -> None:
    _, login = await start(browser, DEMO_IDS["no_account"])
    assert login["state"] == "failed"
    assert login["reason"] == "not_bound"
    assert "綁定" in login["message"]


async def test_cancel_ends_login_and_late_approval_changes_nothing(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    push = await phone.next_push(EVENT_TIMEOUT)
    async with browser.delete(login["status_url"], headers={"Origin": live.url}) as response:
        assert (await response.json())["state"] == "cancelled"

    # The authority never hears of the cancel (nor would MOI): the approval reaches it, and the
    # login's compare-and-set drops the result.
    await phone.approve(push, login["verification_code"])
    await asyncio.sleep(0.3)
    async with browser.get(login["status_url"]) as response:
        assert (await response.json())["state"] == "cancelled"


async def test_new_start_supersedes_older_login(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, first = await start(browser)
    _, second = await start(browser)
    async with browser.get(first["status_url"]) as response:
        older = await response.json()
    assert older["state"] == "cancelled"
    assert older["reason"] == "superseded"
    assert second["state"] == "pending"


async def test_push_limit_answers_429_with_wait(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    limit = live.settings.twfido.push_limit
    for _ in range(limit):
        status, _ = await start(browser)
        assert status == 201
    status, error = await start(browser)
    assert status == 429
    assert error["error"] == "rate_limited"
    assert error["retry_after"] > 0


async def test_other_browser_cannot_read_or_watch(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    async with aiohttp.ClientSession(live.url) as stranger:
        async with stranger.get(login["status_url"]) as response:
            assert response.status == 403
            assert (await response.json())["error"] == "binding_mismatch"
        async with stranger.delete(login["status_url"]) as response:
            assert response.status == 403


async def test_websocket_from_foreign_origin_rejected(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    _, login = await start(browser)
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await browser.ws_connect(login["events_url"], origin="https://evil.example")
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "body, key",
    [
        ({"method": "mobile", "id_number": "A123456788"}, "invalid_id_number"),
        ({"method": "mobile"}, "invalid_id_number"),
        ({"method": "fax"}, "unknown_method"),
    ],
)
async def test_bad_start_gets_zh_tw_error(
    browser: aiohttp.ClientSession, body: dict[str, str], key: str
) -> None:
    async with browser.post("/api/logins", json=body) as response:
        assert response.status == 400
        error = await response.json()
    assert error["error"] == key
    assert error["message"]


async def test_form_post_rejected_as_cross_site(browser: aiohttp.ClientSession) -> None:
    async with browser.post("/api/logins", data={"method": "mobile"}) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "csrf_rejected"


async def test_embedded_results_skip_the_poll_interval(live: LiveApp) -> None:
    assert live.app[POLLER] is not None
    assert live.settings.twfido.poll_interval == 60


async def test_concurrent_starts_leave_one_pending(
    live: LiveApp, phone: PhoneSimulator, browser: aiohttp.ClientSession
) -> None:
    first = await start(browser)  # sets the binding cookie the concurrent starts share
    results = [first, *await asyncio.gather(start(browser), start(browser))]
    states = []
    for _, login in results:
        async with browser.get(login["status_url"]) as response:
            states.append((await response.json())["state"])
    assert states.count("pending") == 1
    assert states.count("cancelled") == 2


async def test_unreachable_authority_ends_login_with_retry_message(tmp_path: Path) -> None:
    closed_port = free_port()  # nothing listens here
    overrides = {
        "twfido": {
            "mode": "moi",
            "api_url": f"http://127.0.0.1:{closed_port}",
            "sp_service_id": "uat-service",
            "aes_key": base64.b64encode(bytes(range(32))).decode(),
            "http_timeout": 1,
        }
    }
    async with live_app(tmp_path / "data", overrides) as moi_app:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(moi_app.url, cookie_jar=jar) as session:
            status, login = await start(session)

    assert status == 201
    assert login["state"] == "failed"
    assert login["reason"] == "authority_unreachable"
    assert "稍後再試" in login["message"]
