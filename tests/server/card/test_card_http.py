"""Card login over HTTP in the real app, with the HiPKI simulator and OCSP responder it starts."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cardkit import certificate_b64, sign

from server.config import Settings, load
from server.hipki_sim.token import PIN_FAILED
from server.methods.card import CardMethod
from server.web.app import create_app
from server.web.keys import METHODS

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
        overrides={"server": {"data_dir": tmp_path, "port": port}, "card": {"simulator": "on"}},
    )
    async with TestClient(TestServer(create_app(settings), port=port)) as client:
        yield client, settings


def card_method(client: Client) -> CardMethod:
    method = client.app[METHODS]["card"]
    assert isinstance(method, CardMethod)
    return method


async def new_challenge(
    client: Client, settings: Settings, purpose: str = "login"
) -> dict[str, Any]:
    response = await client.post(
        "/api/card/challenge", json={"purpose": purpose}, headers={"Origin": settings.server.origin}
    )
    assert response.status == 201
    return dict(await response.json())


async def component_sign(component_url: str, tbs: str, pin: str) -> dict[str, Any]:
    """Play the popup: MakeSignature and GetUserCert against the simulator's own endpoints."""
    async with aiohttp.ClientSession() as http:
        request = {"func": "MakeSignature", "signatureType": "PKCS7", "tbs": tbs,
                   "tbsEncoding": "NONE", "hashAlgorithm": "SHA256", "withCardSN": "true",
                   "pin": pin, "nonce": "n1"}  # fmt: skip
        async with http.post(component_url + "/sign", json=request) as response:
            answer = dict(await response.json())
        async with http.get(component_url + "/pkcs11info?withcert=true") as response:
            info = await response.json()
    certs = info["slots"][0]["token"]["certs"]
    answer["certificate"] = next(c["certb64"] for c in certs if c["usage"] == "digitalSignature")
    return answer


async def test_config_names_simulator_origin(app_client: tuple[Client, Settings]) -> None:
    client, _ = app_client

    config = await (await client.get("/api/card/config")).json()

    assert config["component_url"] == card_method(client).component_url
    assert config["component_url"].startswith("http://127.0.0.1:")
    assert config["signature_type"] == "PKCS7"


async def test_card_login_reaches_portal(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    challenge = await new_challenge(client, settings)
    signed = await component_sign(card_method(client).component_url, challenge["tbs"],
                                  settings.card.simulator_pin)  # fmt: skip

    response = await client.post(
        "/api/logins",
        json={"method": "card", "challenge_id": challenge["challenge_id"],
              "signature": signed["signature"], "certificate": signed["certificate"]},
        headers={"Origin": settings.server.origin},
    )  # fmt: skip
    answer = await response.json()

    assert response.status == 201
    assert answer["state"] == "approved"
    assert answer["assertion"]
    completed = await client.post(
        answer["complete_url"],
        data={"assertion": answer["assertion"]},
        headers={"Origin": settings.server.origin},
    )
    assert completed.status == 200
    assert "王小明" in await completed.text()


async def test_wrong_pin_answers_pin_failure(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    challenge = await new_challenge(client, settings)

    signed = await component_sign(card_method(client).component_url, challenge["tbs"], "000000")

    assert signed["ret_code"] == PIN_FAILED
    assert signed["signature"] == ""


async def test_challenge_from_another_browser_403(
    app_client: tuple[Client, Settings], tmp_path: Path
) -> None:
    client, settings = app_client
    challenge = await new_challenge(client, settings)
    holder = card_method(client).services.token.holder  # type: ignore[union-attr]

    async with aiohttp.ClientSession() as other_browser:
        response = await other_browser.post(
            f"{settings.server.origin}/api/logins",
            json={"method": "card", "challenge_id": challenge["challenge_id"],
                  "signature": sign(holder, challenge["tbs"]),
                  "certificate": certificate_b64(holder)},
            headers={"Origin": settings.server.origin},
        )  # fmt: skip
        body = await response.json()

    assert response.status == 403
    assert body["error"] == "binding_mismatch"


async def test_replayed_challenge_400(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    challenge = await new_challenge(client, settings)
    holder = card_method(client).services.token.holder  # type: ignore[union-attr]
    body = {
        "method": "card",
        "challenge_id": challenge["challenge_id"],
        "signature": sign(holder, challenge["tbs"]),
        "certificate": certificate_b64(holder),
    }
    first = await client.post("/api/logins", json=body, headers={"Origin": settings.server.origin})

    again = await client.post("/api/logins", json=body, headers={"Origin": settings.server.origin})

    assert first.status == 201
    assert again.status == 400
    assert (await again.json())["error"] == "challenge_invalid"


async def test_registration_page_needs_portal_session(app_client: tuple[Client, Settings]) -> None:
    client, _ = app_client

    response = await client.get("/ebas/card", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_portal_user_registers_new_card(app_client: tuple[Client, Settings]) -> None:
    client, settings = app_client
    origin = {"Origin": settings.server.origin}
    method = card_method(client)
    assert method.services is not None
    # Sign in with the demo card (registered at start), as the portal user 王小明.
    challenge = await new_challenge(client, settings)
    signed = await component_sign(
        method.component_url, challenge["tbs"], settings.card.simulator_pin
    )
    login = {
        "method": "card",
        "challenge_id": challenge["challenge_id"],
        "signature": signed["signature"],
        "certificate": signed["certificate"],
    }
    answer = await (await client.post("/api/logins", headers=origin, json=login)).json()
    await client.post(
        answer["complete_url"], data={"assertion": answer["assertion"]}, headers=origin
    )
    page = await client.get("/ebas/card")
    assert page.status == 200
    assert 'id="card-register"' in await page.text()

    new_card = method.services.pki.issue("王小明", "A123456789")
    registration = await new_challenge(client, settings, "register")
    response = await client.post(
        "/ebas/card/registrations",
        headers=origin,
        json={"challenge_id": registration["challenge_id"],
              "signature": sign(new_card, registration["tbs"]),
              "certificate": certificate_b64(new_card)},
    )  # fmt: skip

    assert response.status == 201
    found = await method.registry.find(new_card.certificate)
    assert found is not None
    assert found.id_number == "A123456789"
    assert found.registered_by == "portal:wang.xiaoming"
