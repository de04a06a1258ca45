"""The card login method end to end, without HTTP: challenge, signature, path, revocation, table."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cardkit import certificate_b64, sign
from conftest import Pki
from cryptography.hazmat.primitives import serialization

from server.audit import AuditLog
from server.card.challenge import Challenge
from server.config import CardSettings
from server.errors import BindingMismatch, ChallengeInvalid
from server.logins import ClientInfo, Logins
from server.methods.base import StartRequest
from server.methods.card import CardMethod
from server.ocsp_responder import OcspResponder
from server.sessions.memory import MemoryStore
from server.sessions.model import LoginSession, State
from server.testpki import Holder

BINDING = "binding-of-this-browser"
OTHER_BINDING = "binding-of-another-browser"
ID_NUMBER = "A123456789"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    method: CardMethod
    pki: Pki
    clock: Clock

    async def challenge(self, binding: str = BINDING) -> Challenge:
        return await self.method.issue_challenge(binding, "login")

    async def enroll(self, holder: Holder, id_number: str = ID_NUMBER) -> None:
        await self.method.registry.register(holder.certificate, id_number, registered_by="test")

    async def login(
        self, holder: Holder, challenge: Challenge | None = None, *, binding: str = BINDING
    ) -> LoginSession:
        challenge = challenge or await self.challenge(binding)
        body = {
            "method": "card",
            "challenge_id": challenge.id,
            "signature": sign(holder, challenge.tbs),
            "certificate": certificate_b64(holder),
        }
        request = StartRequest(body=body, binding=binding, client=ClientInfo("192.0.2.1", "pytest"))
        return await self.method.start(request)


@pytest.fixture
def make_harness(tmp_path: Path, test_pki: Pki) -> Callable[..., AsyncIterator[Harness]]:
    root = tmp_path / "grca.pem"
    ca = tmp_path / "moica.pem"
    root.write_bytes(test_pki.pki.root.public_bytes(serialization.Encoding.PEM))
    ca.write_bytes(test_pki.pki.ca.public_bytes(serialization.Encoding.PEM))

    @asynccontextmanager
    async def make(**options: object) -> AsyncIterator[Harness]:
        settings = CardSettings(
            trust_anchors=[root],
            intermediates=[ca],
            ocsp_timeout=2,
            crl_timeout=2,
            **options,  # type: ignore[arg-type]
        )
        audit = AuditLog(tmp_path / "audit.log")
        clock = Clock()
        async with aiohttp.ClientSession() as http:
            method = CardMethod(
                Logins(MemoryStore(clock), audit, clock),
                settings=settings,
                http=http,
                registry_path=tmp_path / "cards.sqlite3",
                data_dir=tmp_path,
                simulator=False,
            )
            await method.open()
            try:
                yield Harness(method, test_pki, clock)
            finally:
                await method.close()
                audit.close()

    return make  # type: ignore[return-value]


@pytest.fixture
async def harness(make_harness, responder: OcspResponder) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    async with make_harness() as harness:
        yield harness


async def test_registered_card_approves(harness: Harness) -> None:
    holder = harness.pki.issue()
    await harness.enroll(holder)

    session = await harness.login(holder)

    assert session.state is State.APPROVED
    assert session.identity is not None
    assert session.identity.id_number == ID_NUMBER
    assert session.identity.name == "王小明"
    assert session.identity.method == "card"


async def test_unregistered_card_fails(harness: Harness) -> None:
    session = await harness.login(harness.pki.issue())

    assert session.state is State.FAILED
    assert session.reason == "unregistered"
    assert session.message is not None and "尚未註冊" in session.message


async def test_last_four_mismatch_fails(harness: Harness) -> None:
    holder = harness.pki.issue(id_number="A123450000")
    await harness.enroll(holder, ID_NUMBER)

    session = await harness.login(holder)

    assert session.state is State.FAILED
    assert session.reason == "id_suffix_mismatch"


async def test_expired_card_fails(harness: Harness) -> None:
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    holder = harness.pki.issue(not_before=now - datetime.timedelta(days=9),
                               not_after=now - datetime.timedelta(days=1))  # fmt: skip
    await harness.enroll(holder)

    session = await harness.login(holder)

    assert session.state is State.FAILED
    assert session.reason == "expired"


async def test_revoked_card_fails(harness: Harness, responder: OcspResponder) -> None:
    holder = harness.pki.issue()
    await harness.enroll(holder)
    responder.revoke(holder.certificate.serial_number)

    session = await harness.login(holder)

    assert session.state is State.FAILED
    assert session.reason == "revoked"


async def test_responder_down_fails_closed(harness: Harness, responder: OcspResponder) -> None:
    holder = harness.pki.issue()
    await harness.enroll(holder)
    responder.ocsp_enabled = responder.crl_enabled = False

    session = await harness.login(holder)

    assert session.state is State.FAILED
    assert session.reason == "revocation_unavailable"


async def test_responder_down_with_fail_open_approves(
    make_harness,
    responder: OcspResponder,  # type: ignore[no-untyped-def]
) -> None:
    responder.ocsp_enabled = responder.crl_enabled = False
    async with make_harness(fail_open=True) as harness:
        holder = harness.pki.issue()
        await harness.enroll(holder)

        session = await harness.login(holder)

    assert session.state is State.APPROVED


async def test_replayed_challenge_rejected(harness: Harness) -> None:
    holder = harness.pki.issue()
    await harness.enroll(holder)
    challenge = await harness.challenge()
    first = await harness.login(holder, challenge)

    with pytest.raises(ChallengeInvalid):
        await harness.login(holder, challenge)

    assert first.state is State.APPROVED


async def test_challenge_from_another_browser_rejected(harness: Harness) -> None:
    holder = harness.pki.issue()
    await harness.enroll(holder)
    challenge = await harness.challenge(OTHER_BINDING)

    with pytest.raises(BindingMismatch):
        await harness.login(holder, challenge, binding=BINDING)

    # Not consumed: the browser it belongs to can still use it.
    session = await harness.login(holder, challenge, binding=OTHER_BINDING)
    assert session.state is State.APPROVED


async def test_signature_over_other_challenge_fails(harness: Harness) -> None:
    holder = harness.pki.issue()
    await harness.enroll(holder)
    challenge = await harness.challenge()
    forged = Challenge(challenge.id, "ebas-login:login:chosen-by-attacker", challenge.expires_in)

    session = await harness.login(holder, forged)

    assert session.state is State.FAILED
    assert session.reason == "signature_invalid"


async def test_not_yet_valid_card_fails(harness: Harness) -> None:
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    holder = harness.pki.issue(not_before=now + datetime.timedelta(days=1),
                               not_after=now + datetime.timedelta(days=9))  # fmt: skip
    await harness.enroll(holder)

    session = await harness.login(holder)

    assert session.state is State.FAILED
    assert session.reason == "not_yet_valid"


async def test_encryption_certificate_fails(harness: Harness) -> None:
    holder = harness.pki.issue(digital_signature=False)
    await harness.enroll(holder)

    session = await harness.login(holder)

    assert session.state is State.FAILED
    assert session.reason == "key_usage"


async def test_card_of_unknown_issuer_fails(harness: Harness) -> None:
    from server.testpki import TestPki

    stranger = TestPki.create(harness.pki.pki.responder_url).issue(
        "王小明", ID_NUMBER, key=harness.pki.key
    )
    await harness.enroll(stranger)

    session = await harness.login(stranger)

    assert session.state is State.FAILED
    assert session.reason == "untrusted_issuer"


async def test_expired_challenge_rejected(make_harness, responder: OcspResponder) -> None:  # type: ignore[no-untyped-def]
    async with make_harness(challenge_lifetime=10) as harness:
        holder = harness.pki.issue()
        await harness.enroll(holder)
        challenge = await harness.challenge()
        harness.clock.now += 11

        with pytest.raises(ChallengeInvalid):
            await harness.login(holder, challenge)
