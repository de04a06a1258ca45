"""eBAS completion, portal, default site and logout, in a real aiohttp app with real components."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.accounts import AccountDirectory
from server.assertion import AssertionService
from server.audit import AuditLog
from server.config import REPO_ROOT, Settings, load
from server.demo import DEMO_IDS, seed_demo_accounts
from server.sessions.memory import MemoryStore
from server.sessions.model import VerifiedIdentity, binding_hash
from server.web.ebas import BINDING_COOKIE, NO_ACCOUNT_MESSAGE, PASSWORD_NOTICE, setup_ebas_routes
from server.web.keys import ACCOUNTS, ASSERTIONS, AUDIT, SETTINGS, STORE

BINDING_SECRET = "binding-cookie-secret"


@dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    assertions: AssertionService
    settings: Settings
    audit_path: Path
    audit: AuditLog

    def mint(self, id_number: str, *, login_id: str = "login-1", method: str = "mobile") -> str:
        identity = VerifiedIdentity(
            id_number=id_number, method=method, auth_time=int(time.time()), amr=("hwk",), name=""
        )
        return self.assertions.mint(
            identity, login_id=login_id, binding=binding_hash(BINDING_SECRET)
        )

    def audit_lines(self) -> list[dict[str, object]]:
        self.audit.flush()
        return [
            json.loads(line) for line in self.audit_path.read_text(encoding="utf-8").splitlines()
        ]

    async def complete(self, token: str, **headers: str):  # type: ignore[no-untyped-def]
        headers.setdefault("Origin", self.settings.server.origin)
        return await self.client.post("/ebas/complete", data={"assertion": token}, headers=headers)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = load(env={}, overrides={"server": {"data_dir": str(tmp_path)}})
    store = MemoryStore()
    accounts = await AccountDirectory.open(tmp_path / "accounts.sqlite3")
    await seed_demo_accounts(accounts)
    assertions = AssertionService.load_or_create(
        tmp_path / "assertion.pem",
        issuer="https://login.test",
        audience="ebas",
        lifetime=60,
        store=store,
    )
    audit_path = tmp_path / "audit.log"
    audit = AuditLog(audit_path)

    app = web.Application()
    app[SETTINGS] = settings
    app[STORE] = store
    app[ACCOUNTS] = accounts
    app[ASSERTIONS] = assertions
    app[AUDIT] = audit
    setup_ebas_routes(app)
    app.router.add_static("/static/", REPO_ROOT / "static")

    client = TestClient(TestServer(app))
    await client.start_server()
    client.session.cookie_jar.update_cookies({BINDING_COOKIE: BINDING_SECRET})
    try:
        yield Harness(client, assertions, settings, audit_path, audit)
    finally:
        await client.close()
        await accounts.close()
        audit.close()


async def test_matched_account_reaches_portal(harness: Harness) -> None:
    response = await harness.complete(harness.mint(DEMO_IDS["active"]))
    page = await response.text()

    assert response.status == 200
    assert response.url.path == "/ebas/portal"
    assert "王小明" in page
    assert "行政院主計總處" in page
    assert "會計決算處" in page
    assert "同步時間" in page
    assert "行動自然人憑證" in page
    assert PASSWORD_NOTICE in page  # the demo password is 200 days old
    assert 'lang="zh-Hant-TW"' in page
    assert 'name="viewport"' in page
    assert "<script" not in page
    assert response.history[0].status == 303


async def test_session_cookie_is_httponly_lax(harness: Harness) -> None:
    response = await harness.client.post(
        "/ebas/complete",
        data={"assertion": harness.mint(DEMO_IDS["active"], login_id="login-1")},
        headers={"Origin": harness.settings.server.origin},
        allow_redirects=False,
    )
    cookie = response.cookies["ebas_session"]

    assert response.status == 303
    assert response.headers["Location"] == "/ebas/portal"
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


async def test_recent_password_shows_calm_reminder(harness: Harness) -> None:
    response = await harness.complete(harness.mint(DEMO_IDS["active_resident"], method="card"))
    page = await response.text()

    assert "陳安娜" in page
    assert "財政部" in page
    assert "自然人憑證" in page
    assert PASSWORD_NOTICE not in page
    assert "上次變更於" in page


async def test_unknown_id_goes_to_default_site(harness: Harness) -> None:
    response = await harness.complete(harness.mint(DEMO_IDS["no_account"]))
    page = await response.text()

    assert response.url.path == "/ebas/default"
    assert NO_ACCOUNT_MESSAGE in page
    assert "主計法規查詢" in page
    assert 'href="/"' in page
    (line,) = [entry for entry in harness.audit_lines() if entry["event"] == "ebas_match"]
    assert line["outcome"] == "no_account"
    assert line["id_number"] == "F12****784"

    # The message belongs to the redirect only; a later visit shows the plain default site.
    again = await (await harness.client.get("/ebas/default")).text()
    assert NO_ACCOUNT_MESSAGE not in again


async def test_inactive_account_goes_to_default_site(harness: Harness) -> None:
    response = await harness.complete(harness.mint(DEMO_IDS["inactive"]))
    page = await response.text()

    assert response.url.path == "/ebas/default"
    assert NO_ACCOUNT_MESSAGE in page
    assert "停用" in page
    assert harness.audit_lines()[-1]["outcome"] == "inactive"


async def test_matched_login_audited(harness: Harness) -> None:
    await harness.complete(harness.mint(DEMO_IDS["active"]), **{"User-Agent": "TestBrowser/1"})

    (line,) = [entry for entry in harness.audit_lines() if entry["event"] == "ebas_match"]
    assert line["outcome"] == "matched"
    assert line["login_id"] == "login-1"
    assert line["method"] == "mobile"
    assert line["id_number"] == "A12****789"
    assert line["user_agent"] == "TestBrowser/1"
    assert "A123456789" not in harness.audit_path.read_text(encoding="utf-8")  # flushed above


async def test_replayed_assertion_rejected(harness: Harness) -> None:
    token = harness.mint(DEMO_IDS["active"])
    first = await harness.complete(token)
    second = await harness.complete(token)
    page = await second.text()

    assert first.status == 200
    assert second.status == 401
    assert "登入憑證無效或已使用" in page
    assert 'href="/"' in page
    assert harness.audit_lines()[-1]["outcome"] == "rejected"


async def test_second_assertion_for_same_login_rejected(harness: Harness) -> None:
    first = await harness.complete(harness.mint(DEMO_IDS["active"], login_id="login-9"))
    second = await harness.complete(harness.mint(DEMO_IDS["active"], login_id="login-9"))

    assert first.status == 200
    assert second.status == 401


async def test_wrong_binding_cookie_rejected(harness: Harness) -> None:
    token = harness.mint(DEMO_IDS["active"])
    harness.client.session.cookie_jar.update_cookies({BINDING_COOKIE: "another-browser"})

    response = await harness.complete(token)

    assert response.status == 401
    assert "王小明" not in await response.text()


async def test_missing_binding_cookie_rejected(harness: Harness) -> None:
    token = harness.mint(DEMO_IDS["active"])
    harness.client.session.cookie_jar.clear()

    response = await harness.complete(token)

    assert response.status == 403


async def test_cross_origin_post_rejected(harness: Harness) -> None:
    response = await harness.complete(
        harness.mint(DEMO_IDS["active"]), Origin="https://evil.example"
    )

    assert response.status == 403
    assert "請求來源不符" in await response.text()


async def test_cross_site_fetch_rejected(harness: Harness) -> None:
    token = harness.mint(DEMO_IDS["active"])
    response = await harness.client.post(
        "/ebas/complete", data={"assertion": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status == 403
    # The rejected post did not use up the assertion.
    assert (await harness.complete(token)).status == 200


async def test_missing_assertion_rejected(harness: Harness) -> None:
    response = await harness.client.post("/ebas/complete", data={"other": "x"})

    assert response.status == 401


async def test_portal_without_session_redirects_to_login(harness: Harness) -> None:
    response = await harness.client.get("/ebas/portal", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_logout_ends_session(harness: Harness) -> None:
    await harness.complete(harness.mint(DEMO_IDS["active"]))

    response = await harness.client.post(
        "/ebas/logout", headers={"Origin": harness.settings.server.origin}, allow_redirects=False
    )
    portal = await harness.client.get("/ebas/portal", allow_redirects=False)

    assert response.status == 303
    assert portal.status == 303
    assert harness.audit_lines()[-1]["event"] == "ebas_logout"


async def test_stylesheet_served(harness: Harness) -> None:
    response = await harness.client.get("/static/ebas.css")

    assert response.status == 200
    assert ".alert" in await response.text()


async def test_values_are_escaped(harness: Harness) -> None:
    from server.accounts import Account

    await harness.client.app[ACCOUNTS].upsert(
        [
            Account(
                "evil",
                "H223456788",
                "<script>alert(1)</script>",
                "A&B",
                "",
                True,
                "2025-01-01",
                None,
            )
        ]
    )
    page = await (await harness.complete(harness.mint("H223456788"))).text()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "A&amp;B" in page
