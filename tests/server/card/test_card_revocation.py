"""Revocation over HTTP against the local responder: OCSP first, CRL fallback, caching."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from conftest import Pki

from server.card.revocation import RevocationChecker, Status
from server.methods.card import HttpFetcher
from server.ocsp_responder import OcspResponder


@pytest.fixture
async def checker() -> AsyncIterator[RevocationChecker]:
    async with aiohttp.ClientSession() as http:
        yield RevocationChecker(
            HttpFetcher(http), ocsp_timeout=2, crl_timeout=2, ocsp_cache_max=600, crl_cache_max=600
        )


async def test_good_certificate_by_ocsp(
    test_pki: Pki, responder: OcspResponder, checker: RevocationChecker
) -> None:
    holder = test_pki.issue()

    result = await checker.check(holder.certificate, test_pki.pki.ca)

    assert result.status is Status.GOOD
    assert result.source == "ocsp"


async def test_revoked_certificate_by_ocsp(
    test_pki: Pki, responder: OcspResponder, checker: RevocationChecker
) -> None:
    holder = test_pki.issue()
    responder.revoke(holder.certificate.serial_number)

    result = await checker.check(holder.certificate, test_pki.pki.ca)

    assert result.status is Status.REVOKED
    assert result.source == "ocsp"


async def test_revoked_by_crl_when_ocsp_down(
    test_pki: Pki, responder: OcspResponder, checker: RevocationChecker
) -> None:
    holder = test_pki.issue()
    responder.revoke(holder.certificate.serial_number)
    responder.ocsp_enabled = False

    result = await checker.check(holder.certificate, test_pki.pki.ca)

    assert result.status is Status.REVOKED
    assert result.source == "crl"


async def test_unavailable_when_both_down(
    test_pki: Pki, responder: OcspResponder, checker: RevocationChecker
) -> None:
    responder.ocsp_enabled = False
    responder.crl_enabled = False

    result = await checker.check(test_pki.issue().certificate, test_pki.pki.ca)

    assert result.status is Status.UNAVAILABLE


async def test_ocsp_answer_cached_until_reused(
    test_pki: Pki, responder: OcspResponder, checker: RevocationChecker
) -> None:
    holder = test_pki.issue()
    await checker.check(holder.certificate, test_pki.pki.ca)

    again = await checker.check(holder.certificate, test_pki.pki.ca)

    assert again.status is Status.GOOD
    assert responder.ocsp_requests == 1


async def test_crl_downloaded_once_for_many_certificates(
    test_pki: Pki, responder: OcspResponder, checker: RevocationChecker
) -> None:
    responder.ocsp_enabled = False
    for _ in range(3):
        result = await checker.check(test_pki.issue().certificate, test_pki.pki.ca)
        assert result.status is Status.GOOD

    assert responder.crl_requests == 1
