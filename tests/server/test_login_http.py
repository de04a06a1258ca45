"""Password and NHI card logins over HTTP, in the real app, through to the eBAS portal."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.config import Settings, load
from server.demo_credentials import DEMO_CARDS, DEMO_PASSWORDS
from server.nhi_card import decode_basic_reply, reply_body
from server.web.app import create_app
from server.web.ebas import NO_ACCOUNT_MESSAGE, PASSWORD_NOTICE

DEMO = {demo.account: demo for demo in DEMO_PASSWORDS}
NEW_PASSWORD = "Brand#New2025pw"

Client = TestClient[web.Request, web.Application]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[tuple[Client, Settings]]:
    port = free_port()
    settings = load(
        env={},
        overrides={
            "server": {"data_dir": tmp_path, "port": port},
            # Cheap argon2id so the tests run fast; the same code path as production.
            "password": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1, "max_failures": 3},
            "nhi": {"simulator": "on"},
        },
    )
    async with TestClient(TestServer(create_app(settings), port=port)) as client:
        yield client, settings


async def post(
    client: Client, settings: Settings, path: str, body: dict[str, Any]
) -> aiohttp.ClientResponse:
    return await client.post(path, json=body, headers={"Origin": settings.server.origin})


async def complete(client: Client, settings: Settings, answer: dict[str, Any]) -> str:
    """Post the assertion as the page does and return the page the browser lands on."""
    response = await client.post(
        answer["complete_url"],
        data={"assertion": answer["assertion"]},
        headers={"Origin": settings.server.origin},
    )
    assert response.status == 200
    return await response.text()


async def password_login(
    client: Client, settings: Settings, account: str, password: str
) -> aiohttp.ClientResponse:
    body = {"method": "password", "account": account, "password": password}
    return await post(client, settings, "/api/logins", body)


# -- password ----------------------------------------------------------------------------------


async def test_password_login_reaches_portal(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client

    response = await password_login(client, settings, "chen.anna", DEMO["chen.anna"].password)
    answer = await response.json()

    assert response.status == 201
    assert answer["state"] == "approved"
    assert "account" not in answer
    page = await complete(client, settings, answer)
    assert "陳安娜" in page
    assert PASSWORD_NOTICE not in page


async def test_wrong_and_unknown_get_same_401(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client

    wrong = await password_login(client, settings, "chen.anna", "not-it")
    unknown = await password_login(client, settings, "no.such.user", "not-it")

    assert wrong.status == unknown.status == 401
    assert (
        await wrong.json()
        == await unknown.json()
        == {"error": "invalid_auth", "message": "帳號或密碼錯誤。"}
    )


async def test_locked_account_answers_423(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    for _ in range(2):
        assert (await password_login(client, settings, "chen.anna", "not-it")).status == 401

    locked = await password_login(client, settings, "chen.anna", "not-it")
    body = await locked.json()

    assert locked.status == 423
    assert body["error"] == "account_locked"
    assert "請於" in body["message"]
    assert int(locked.headers["Retry-After"]) == settings.password.lockout_seconds


async def test_first_login_reports_required_change(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    started = await (
        await password_login(client, settings, "lin.meiyu", DEMO["lin.meiyu"].password)
    ).json()

    assert started["state"] == "pending"
    assert started["must_change"] is True
    assert started["change_reason"] == "required"


async def test_forced_change_then_portal_without_notice(
    app_client: tuple[Client, Settings],
) -> None:
    client, settings = app_client
    started = await (
        await password_login(client, settings, "wang.xiaoming", DEMO["wang.xiaoming"].password)
    ).json()
    assert started["state"] == "pending"
    assert started["must_change"] is True
    assert started["change_reason"] == "expired"
    assert "assertion" not in started

    change_url = f"/api/logins/{started['login_id']}/password"
    weak = await post(client, settings, change_url, {"new_password": "weak"})
    assert weak.status == 400
    assert (await weak.json())["error"] == "password_policy"

    changed = await post(client, settings, change_url, {"new_password": NEW_PASSWORD})
    answer = await changed.json()
    assert changed.status == 200
    assert answer["state"] == "approved"
    page = await complete(client, settings, answer)
    assert "王小明" in page
    assert PASSWORD_NOTICE not in page


async def test_change_from_other_browser_rejected(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    started = await (
        await password_login(client, settings, "lin.meiyu", DEMO["lin.meiyu"].password)
    ).json()

    async with aiohttp.ClientSession() as stranger:
        response = await stranger.post(
            client.make_url(f"/api/logins/{started['login_id']}/password"),
            json={"new_password": NEW_PASSWORD},
        )
        assert response.status == 403
        assert (await response.json())["error"] == "binding_mismatch"


async def test_policy_route_describes_rule(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client

    body = await (await client.get("/api/password/policy")).json()

    assert body["min_length"] == settings.password.min_length
    assert "至少" in body["rule"]


# -- NHI card ------------------------------------------------------------------------------------


async def read_card(client: Client, card_number: str) -> dict[str, str]:
    """Play the page against the simulator the app started: insert, GetBasic, GetRandom, H_Sign."""
    config = await (await client.get("/api/nhi/config")).json()
    component_url = config["component_url"]
    async with aiohttp.ClientSession() as http:
        control = component_url.replace("ws://", "http://").replace("/echo", "/card")
        async with http.post(control, json={"card_number": card_number}) as inserted:
            assert inserted.status == 200
        async with http.ws_connect(component_url) as ws:
            await ws.send_str("GetBasic")
            basic = decode_basic_reply(await ws.receive_str())
            await ws.send_str("GetRandom")
            random = "0001" + reply_body(await ws.receive_str(), "GetRandom")
            await ws.send_str(f"H_Sign?Random={random}")
            h_sign = reply_body(await ws.receive_str(), "H_Sign")
    return {
        "card_number": basic.card_number,
        "id_number": basic.id_number,
        "random": random,
        "h_sign": h_sign,
    }


async def nhi_login(
    client: Client, settings: Settings, card_number: str, password: str
) -> aiohttp.ClientResponse:
    fields = await read_card(client, card_number)
    return await post(
        client, settings, "/api/logins", {"method": "nhi", **fields, "password": password}
    )


async def test_nhi_config_points_at_simulator(app_client: tuple[Client, Settings]) -> None:
    client, _ = app_client

    config = await (await client.get("/api/nhi/config")).json()
    page = await client.get("/")

    assert config["simulator"] is True
    assert config["component_url"].startswith("ws://127.0.0.1:")
    origin = config["component_url"].removesuffix("/echo")
    assert f"connect-src 'self' {origin}" in page.headers["Content-Security-Policy"]


async def test_nhi_login_reaches_portal(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    card = DEMO_CARDS[0]

    response = await nhi_login(client, settings, card.card_number, card.password)
    answer = await response.json()

    assert response.status == 201
    assert answer["state"] == "approved"
    page = await complete(client, settings, answer)
    assert "王小明" in page


async def test_nhi_card_without_account_reaches_default_site(
    app_client: tuple[Client, Settings],
) -> None:
    client, settings = app_client
    card = DEMO_CARDS[1]

    answer = await (await nhi_login(client, settings, card.card_number, card.password)).json()

    assert answer["state"] == "approved"
    assert NO_ACCOUNT_MESSAGE in await complete(client, settings, answer)


async def test_nhi_suspension_over_http(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    card = DEMO_CARDS[0]
    for left in (2, 1):
        wrong = await nhi_login(client, settings, card.card_number, "wrong99")
        body = await wrong.json()
        assert wrong.status == 401
        assert body["error"] == "card_password_mismatch"
        assert body["attempts_left"] == left

    suspended = await nhi_login(client, settings, card.card_number, "wrong99")

    assert suspended.status == 423
    assert (await suspended.json())["error"] == "card_suspended"


async def test_unregistered_card_over_http(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client

    response = await nhi_login(client, settings, "000055556666", "whatever1")

    assert response.status == 401
    assert (await response.json())["error"] == "card_not_registered"
