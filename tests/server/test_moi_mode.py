"""The whole product in moi mode against the fake MOI server, over real HTTP and WebSocket.

The app is not told that it talks to a fake. It gets ``twfido.mode = "moi"``, the fake's
loopback URL, service id and AES key, as an operator would configure MOI's UAT host. Results
arrive only by polling ``getAthOrSignResult``, so the poll interval is the 1 s minimum.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from push.phone import PhoneSimulator
from server.config import ConfigError, load
from server.demo import DEMO_IDS
from server.web.keys import STORE
from tests.fakes import TestPki, UserCredential, make_test_pki
from tests.fakes.fake_moi import FakeMoi, start_fake_moi
from tests.support.live import LiveApp, live_app

ID = DEMO_IDS["active"]
POLL_INTERVAL = 1.0  # seconds; the smallest twfido.poll_interval the settings accept
END_TIMEOUT = 20.0  # seconds a test waits for a login to end (a few polls and back-offs)
AUDIT_WAIT = 5.0  # seconds for the audit thread to write a line
UNTRUSTED_MESSAGE = "驗證服務回應無法確認其完整性"

App = Callable[..., AbstractAsyncContextManager[LiveApp]]


@pytest.fixture
async def fake_moi() -> AsyncIterator[tuple[str, FakeMoi]]:
    url, fake, runner = await start_fake_moi()
    yield url, fake
    await runner.cleanup()


@pytest.fixture
def moi(fake_moi: tuple[str, FakeMoi]) -> FakeMoi:
    return fake_moi[1]


@pytest.fixture
def moi_url(fake_moi: tuple[str, FakeMoi]) -> str:
    return fake_moi[0]


def moi_settings(url: str, fake: FakeMoi, **twfido: Any) -> dict[str, dict[str, Any]]:
    return {
        # Only the mobile method: the others' start-up work (demo password hashes) is not tested.
        "server": {"methods": ["mobile"]},
        "twfido": {
            "mode": "moi",
            "api_url": url,
            "sp_service_id": fake.sp_service_id,
            "aes_key": base64.b64encode(fake.aes_key).decode(),
            "poll_interval": POLL_INTERVAL,
            **twfido,
        },
    }


@pytest.fixture
def app(moi_url: str, moi: FakeMoi, tmp_path: Path) -> App:
    """``async with app(**twfido_settings) as live``: the product in moi mode on the fake."""

    def start(**twfido: Any) -> AbstractAsyncContextManager[LiveApp]:
        return live_app(tmp_path / "data", moi_settings(moi_url, moi, **twfido))

    return start


@pytest.fixture
async def browser() -> AsyncIterator[Callable[[LiveApp], aiohttp.ClientSession]]:
    sessions: list[aiohttp.ClientSession] = []

    def open_for(live: LiveApp) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(live.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(session)
        return session

    yield open_for
    for session in sessions:
        await session.close()


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return make_test_pki()


async def start_login(http: aiohttp.ClientSession, id_number: str = ID) -> dict[str, Any]:
    async with http.post("/api/logins", json={"method": "mobile", "id_number": id_number}) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def wait_end(
    http: aiohttp.ClientSession, live: LiveApp, login: dict[str, Any], within: float = END_TIMEOUT
) -> dict[str, Any]:
    """Watch the events socket until the login ends; return the last state message."""
    if login["state"] != "pending":
        return login
    async with http.ws_connect(login["events_url"], origin=live.url) as ws:
        last: dict[str, Any] = {}
        while True:
            message = await asyncio.wait_for(ws.receive(), within)
            if message.type != aiohttp.WSMsgType.TEXT:
                return last
            last = json.loads(message.data)


async def audit_entry(live: LiveApp, login_id: str) -> dict[str, Any]:
    """Return the login_end audit line of ``login_id``, waiting for the writer thread."""
    path = live.settings.data_path("audit.log")
    deadline = asyncio.get_running_loop().time() + AUDIT_WAIT
    while True:
        text = await asyncio.to_thread(path.read_text) if path.exists() else ""
        for line in text.splitlines():
            entry = json.loads(line)
            if entry.get("login_id") == login_id and entry.get("event") == "login_end":
                return dict(entry)
        assert asyncio.get_running_loop().time() < deadline, f"no audit entry for {login_id}"
        await asyncio.sleep(0.05)


# -- push logins ---------------------------------------------------------------------------------


async def test_push_login_approved_by_polling(app, moi, browser):
    moi.script(ID, outcome="approve", pending_polls=2)
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        final = await wait_end(http, live, login)

    assert final["state"] == "approved"
    assert final["assertion"].count(".") == 2
    push = moi.calls_to("requestAthOrSignPush")[0]
    polls = moi.calls_to("getAthOrSignResult")
    assert [p.error_code.rsplit("-", 1)[-1] for p in polls] == [
        "SPTKTID_TXNLOG_NF",
        "SPTKTID_TXNLOG_NF",
        "0",
    ]
    assert {p.body["transaction_id"] for p in polls} == {push.body["transaction_id"]}
    times = [push.at] + [p.at for p in polls]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) >= POLL_INTERVAL, gaps


async def test_hint_names_ebas_and_carries_the_code_the_browser_shows(app, moi, browser):
    moi.script(ID, outcome="approve")
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        await wait_end(http, live, login)

    hint = moi.calls_to("requestAthOrSignPush")[0].body["hint"]
    assert "全國主計網(eBAS)" in hint
    assert f"驗證碼 {login['verification_code']}" in hint
    assert hint == login["hint"]


async def test_push_denied_in_app(app, moi, browser):
    moi.script(ID, outcome="deny", pending_polls=1)
    async with app() as live:
        http = browser(live)
        final = await wait_end(http, live, await start_login(http))
        entry = await audit_entry(live, final["login_id"])

    assert final["state"] == "denied"
    assert final["reason"] == "denied_in_app"
    assert "拒絕" in final["message"]
    assert "assertion" not in final
    assert entry["outcome"] == "denied"


@pytest.mark.parametrize("script", [{"bound": False}, {"device_bound": False}])
async def test_not_bound_explains_how_to_bind(app, moi, browser, script):
    moi.script(ID, **script)
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        entry = await audit_entry(live, login["login_id"])

    assert login["state"] == "failed"
    assert login["reason"] == "not_bound"
    assert "「行動自然人憑證」App" in login["message"]
    assert "綁定" in login["message"]
    assert entry["reason"] == "not_bound"
    assert moi.calls_to("getAthOrSignResult") == []


async def test_push_not_delivered_offers_qr_then_qr_login_approved(app, moi, browser):
    moi.script(ID, outcome="manual", push_fails=True)
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        assert login["state"] == "pending"
        assert login["push_status"] == "not_delivered"
        assert "QR Code" in login["push_message"]

        async with http.post(login["qr_url"]) as response:
            assert response.status == 200
            with_qr = await response.json()
        async with http.get(with_qr["qr_svg_url"]) as response:
            assert response.content_type == "image/svg+xml"
        ticket_call = moi.calls_to("getSpTicket")[0]
        (sp_ticket_id,) = moi.transactions
        moi.approve(sp_ticket_id)
        final = await wait_end(http, live, login)

    assert final["state"] == "approved"
    assert ticket_call.body["op_mode"] == "I-SCAN"
    assert ticket_call.body["hint"] == login["hint"]
    assert 30 <= ticket_call.body["time_limit"] <= login["expires_at"] - login["server_time"]


# -- answers that cannot be trusted, and an unreliable service --------------------------------


async def test_tampered_idp_checksum_on_push_fails_as_untrusted(app, moi, browser):
    moi.script(ID, tamper_idp_checksum=True)
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        entry = await audit_entry(live, login["login_id"])

    assert login["state"] == "failed"
    assert login["reason"] == "untrusted_answer"
    assert UNTRUSTED_MESSAGE in login["message"]
    assert entry["outcome"] == "failed"
    assert entry["reason"] == "untrusted_answer"


async def test_tampered_idp_checksum_on_result_fails_as_untrusted(app, moi, browser):
    script = moi.script(ID, outcome="approve", pending_polls=1)
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        script.tamper_idp_checksum = True  # the push answer was genuine; the result is forged
        final = await wait_end(http, live, login)
        entry = await audit_entry(live, login["login_id"])

    assert final["state"] == "failed"
    assert final["reason"] == "untrusted_answer"
    assert "assertion" not in final
    assert entry["reason"] == "untrusted_answer"


async def test_login_survives_server_errors_and_completes(app, moi, browser):
    moi.script(ID, outcome="approve", pending_polls=1)
    async with app() as live:
        http = browser(live)
        login = await start_login(http)
        moi.fail_next(4)  # a whole poll (3 attempts) fails, and the first try of the next
        final = await wait_end(http, live, login, within=30)

    assert final["state"] == "approved"
    statuses = [c.status for c in moi.calls_to("getAthOrSignResult")]
    assert statuses.count(500) == 4
    assert statuses[-1] == 200


async def test_time_limit_reached_ends_expired(app, moi, browser):
    moi.script(ID, outcome="manual")
    async with app(time_limit=30) as live:
        http = browser(live)
        login = await start_login(http)
        final = await wait_end(http, live, login, within=45)

    assert final["state"] == "expired"
    assert final["reason"] == "expired"
    polls = moi.calls_to("getAthOrSignResult")
    assert 10 <= len(polls) <= 30  # kept polling on the pending code, about once a second


async def test_moi_reporting_ticket_expired_ends_expired(app, moi, browser):
    moi.script(ID, outcome="expire")
    async with app() as live:
        http = browser(live)
        final = await wait_end(http, live, await start_login(http))

    assert final["state"] == "expired"
    assert "逾時" in final["message"]


async def test_hashed_id_num_check_accepts_matching_hash(app, moi, browser):
    moi.script(ID, outcome="approve")
    async with app(hashed_id_num="sha256-hex") as live:
        http = browser(live)
        final = await wait_end(http, live, await start_login(http))

    assert final["state"] == "approved"


async def test_logs_never_show_the_aes_key(app, moi, browser, caplog):
    caplog.set_level(logging.DEBUG)
    moi.script(ID, outcome="approve")
    async with app() as live:
        http = browser(live)
        await wait_end(http, live, await start_login(http))
        audit = live.settings.data_path("audit.log").read_text()

    key_b64 = base64.b64encode(moi.aes_key).decode()
    for text in (caplog.text, audit):
        assert key_b64 not in text
        assert moi.aes_key.hex() not in text
        assert ID not in text


# -- SIGN mode with the test PKI --------------------------------------------------------------


def anchors_file(pki: TestPki, tmp_path: Path) -> Path:
    path = tmp_path / "moica-grca.pem"
    path.write_bytes(
        pki.root.public_bytes(serialization.Encoding.PEM)
        + pki.ca.public_bytes(serialization.Encoding.PEM)
    )
    return path


async def sign_login(
    app: App, moi: FakeMoi, browser: Any, pki: TestPki, tmp_path: Path, credential: UserCredential
) -> tuple[dict[str, Any], dict[str, Any]]:
    moi.script(ID, outcome="approve", credential=credential)
    async with app(op_code="SIGN", trust_anchors=[str(anchors_file(pki, tmp_path))]) as live:
        http = browser(live)
        login = await start_login(http)
        final = await wait_end(http, live, login)
        entry = await audit_entry(live, login["login_id"])
    return final, entry


async def test_sign_mode_good_signature_approved(app, moi, browser, pki, tmp_path):
    final, _ = await sign_login(app, moi, browser, pki, tmp_path, pki.issue(ID, name="王小明"))

    assert final["state"] == "approved"
    sign_info = moi.calls_to("requestAthOrSignPush")[0].body["sign_info"]
    assert sign_info["sign_type"] == "PKCS#1"
    assert sign_info["tbs_encoding"] == "base64"
    assert len(base64.b64decode(sign_info["sign_data"])) == 32


async def test_sign_mode_bad_signature_fails(app, moi, browser, pki, tmp_path):
    holder, impostor = pki.issue(ID), pki.issue(ID)
    forged = UserCredential(key=impostor.key, cert=holder.cert)  # signs with another key

    final, entry = await sign_login(app, moi, browser, pki, tmp_path, forged)

    assert final["state"] == "failed"
    assert final["reason"] == "sign_failed"
    assert "簽章" in final["message"]
    assert entry["reason"] == "sign_failed"


async def test_sign_mode_last4_mismatch_fails(app, moi, browser, pki, tmp_path):
    final, entry = await sign_login(app, moi, browser, pki, tmp_path, pki.issue(ID, last4="0000"))

    assert final["state"] == "failed"
    assert final["reason"] == "sign_failed"
    assert entry["outcome"] == "failed"


async def test_sign_mode_untrusted_issuer_fails(app, moi, browser, pki, tmp_path):
    stranger = make_test_pki(label=" (stranger)")

    final, _ = await sign_login(app, moi, browser, pki, tmp_path, stranger.issue(ID))

    assert final["state"] == "failed"
    assert final["reason"] == "sign_failed"


async def test_sign_mode_with_unreadable_anchor_file_stops_the_start(app, tmp_path):
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("nothing\n")

    with pytest.raises(ConfigError, match="twfido.trust_anchors"):
        async with app(op_code="SIGN", trust_anchors=[str(bad)]):
            pass


async def test_sign_in_embedded_mode_trusts_the_embedded_test_ca(tmp_path, browser):
    async with live_app(tmp_path / "data", {"twfido": {"op_code": "SIGN"}}) as live:
        phone = PhoneSimulator(live.url, ID, tmp_path / "phone")
        await phone.enroll()
        await phone.connect()
        try:
            http = browser(live)
            login = await start_login(http)
            push = await phone.next_push(END_TIMEOUT)
            assert push["op_code"] == "SIGN"
            await phone.approve(push, login["verification_code"])
            final = await wait_end(http, live, login)
        finally:
            await phone.close()

    assert final["state"] == "approved"


# -- settings ------------------------------------------------------------------------------------


def test_sign_in_moi_mode_requires_trust_anchors(moi_url, moi):
    with pytest.raises(ConfigError, match="twfido.trust_anchors"):
        load(env={}, overrides=moi_settings(moi_url, moi, op_code="SIGN"))


def test_bad_aes_key_is_named_but_not_echoed(moi_url, moi):
    secret = base64.b64encode(b"x" * 31).decode()

    with pytest.raises(ConfigError, match="twfido.aes_key") as caught:
        load(env={}, overrides=moi_settings(moi_url, moi, aes_key=secret))

    assert secret not in str(caught.value)


def test_moi_settings_from_environment(moi):
    env = {
        "EBAS_LOGIN_TWFIDO_MODE": "moi",
        "EBAS_LOGIN_TWFIDO_API_URL": "https://fidoapi-test.moi.gov.tw",
        "EBAS_LOGIN_TWFIDO_SP_SERVICE_ID": "uat-service",
        "EBAS_LOGIN_TWFIDO_AES_KEY": base64.b64encode(moi.aes_key).decode(),
        "EBAS_LOGIN_TWFIDO_RANDOM_IV": "true",
        "EBAS_LOGIN_TWFIDO_QR_TEMPLATE": "{sp_ticket}",
        "EBAS_LOGIN_TWFIDO_HASHED_ID_NUM": "sha256-hex",
    }

    twfido = load(env=env).twfido

    assert (twfido.mode, twfido.sp_service_id, twfido.random_iv) == ("moi", "uat-service", True)
    assert twfido.hashed_id_num == "sha256-hex"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("qr_template", "{ticket}"),
        ("qr_template", "no field"),
        ("hashed_id_num", "md5"),
        ("check_device_path", "../admin"),
        ("api_url", "http://fidoapi-test.moi.gov.tw"),
    ],
)
def test_bad_moi_setting_is_named(moi_url, moi, setting, value):
    with pytest.raises(ConfigError, match=f"twfido.{setting}"):
        load(env={}, overrides=moi_settings(moi_url, moi, **{setting: value}))


async def test_qr_template_shapes_the_qr_content(app, moi, browser):
    moi.script(ID, outcome="manual", push_fails=True)
    async with app(qr_template="twfido://scan?ticket={sp_ticket_id}") as live:
        http = browser(live)
        login = await start_login(http)
        async with http.post(login["qr_url"]) as response:
            assert response.status == 200
        stored = await live.app[STORE].get(login["login_id"])

    (sp_ticket_id,) = moi.transactions
    assert stored.data["qr_payload"] == f"twfido://scan?ticket={sp_ticket_id}"
