"""Card-method fixtures: one test PKI for the run, a live OCSP/CRL responder per test."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from server.ocsp_responder import OcspResponder
from server.testpki import Holder, TestPki, new_key


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Pki:
    """The test PKI plus one holder key that every test certificate reuses (RSA keys are slow)."""

    pki: TestPki
    key: rsa.RSAPrivateKey
    port: int

    def issue(
        self, name: str = "王小明", id_number: str | None = "A123456789", **options
    ) -> Holder:  # type: ignore[no-untyped-def]
        return self.pki.issue(name, id_number, key=self.key, **options)


@pytest.fixture(scope="session")
def test_pki() -> Pki:
    port = _free_port()
    return Pki(TestPki.create(f"http://127.0.0.1:{port}"), new_key(), port)


@pytest.fixture
async def responder(test_pki: Pki) -> AsyncIterator[OcspResponder]:
    """The OCSP/CRL responder that the test certificates name, listening for one test."""
    service = OcspResponder(test_pki.pki)
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", test_pki.port).start()
    yield service
    await runner.cleanup()
