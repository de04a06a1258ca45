"""Revocation status of a card certificate: OCSP from its AIA, CRL from its CDP as the fallback.

Responses are cached in this process for their own lifetime (OCSP and CRL ``nextUpdate``), capped
by settings, so a burst of logins costs one responder round trip. A cache is per node by design:
it contains only public, signed responses, and each node refetches when its copy expires.

No aiohttp here: the network goes through a ``Fetcher`` that the login method supplies.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from server.card import der

log = logging.getLogger(__name__)

OCSP_NONCE_BYTES = 16
MAX_OCSP_RESPONSE_BYTES = 64 * 1024  # one SingleResponse plus a delegated responder certificate
# MOICA's full CRL runs to tens of megabytes; anything far larger is not a CRL we can use.
MAX_CRL_BYTES = 128 * 1024 * 1024
MAX_URLS = 2  # responders tried per certificate; more only lengthens a failing login
CLOCK_SKEW = datetime.timedelta(minutes=5)  # responder clocks run a little ahead or behind
# An OCSP response without nextUpdate is fresh for this long (RFC 6960 leaves it to the client).
OCSP_DEFAULT_LIFETIME = datetime.timedelta(minutes=5)
MAX_OCSP_CACHE_ENTRIES = 10_000  # one per recently seen card; oldest dropped first
MAX_CRL_CACHE_ENTRIES = 16  # one per issuing CA


class Status(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNAVAILABLE = "unavailable"  # neither OCSP nor CRL returned a usable response


@dataclass(frozen=True, slots=True)
class RevocationResult:
    status: Status
    source: str  # "ocsp", "crl" or "none"
    detail: str = ""


class FetchError(Exception):
    """A responder could not be reached or answered with an HTTP error."""


class Fetcher(Protocol):
    async def get(self, url: str, *, time_limit: float, max_bytes: int) -> bytes: ...

    async def post(
        self, url: str, body: bytes, *, content_type: str, time_limit: float, max_bytes: int
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _CachedCrl:
    issuer: bytes
    revoked: frozenset[int]
    expires: datetime.datetime


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class RevocationChecker:
    def __init__(
        self,
        fetcher: Fetcher,
        *,
        ocsp_timeout: float,
        crl_timeout: float,
        ocsp_cache_max: float,
        crl_cache_max: float,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.fetcher = fetcher
        self.ocsp_timeout = ocsp_timeout
        self.crl_timeout = crl_timeout
        self.ocsp_cache_max = datetime.timedelta(seconds=ocsp_cache_max)
        self.crl_cache_max = datetime.timedelta(seconds=crl_cache_max)
        self.clock = clock
        self._ocsp_cache: OrderedDict[tuple[bytes, int], tuple[Status, datetime.datetime]] = (
            OrderedDict()
        )
        self._crl_cache: OrderedDict[str, _CachedCrl] = OrderedDict()
        self._crl_locks: dict[str, asyncio.Lock] = {}

    async def check(
        self, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> RevocationResult:
        """Return the status of ``certificate``; OCSP first, then the CRL."""
        answer = await self._check_ocsp(certificate, issuer)
        if answer is not None:
            return answer
        answer = await self._check_crl(certificate, issuer)
        if answer is not None:
            return answer
        return RevocationResult(Status.UNAVAILABLE, "none", "no OCSP or CRL response")

    # -- OCSP ----------------------------------------------------------------------------------

    async def _check_ocsp(
        self, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> RevocationResult | None:
        key = (issuer.subject.public_bytes(), certificate.serial_number)
        now = self.clock()
        cached = self._ocsp_cache.get(key)
        if cached is not None and now < cached[1]:
            return RevocationResult(cached[0], "ocsp", "cached")

        for url in _ocsp_urls(certificate)[:MAX_URLS]:
            try:
                status, expires = await self._ask_ocsp(url, certificate, issuer)
            except (FetchError, ValueError) as exc:
                log.warning("OCSP %s failed for serial %x: %s", url, certificate.serial_number, exc)
                continue
            if status is None:
                log.info("OCSP %s does not know serial %x", url, certificate.serial_number)
                continue
            self._remember(self._ocsp_cache, key, (status, expires), MAX_OCSP_CACHE_ENTRIES)
            return RevocationResult(status, "ocsp", url)
        return None

    async def _ask_ocsp(
        self, url: str, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> tuple[Status | None, datetime.datetime]:
        nonce = secrets.token_bytes(OCSP_NONCE_BYTES)
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303 - CertID hash, RFC 6960
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
        )
        body = await self.fetcher.post(
            url,
            request.public_bytes(serialization.Encoding.DER),
            content_type="application/ocsp-request",
            time_limit=self.ocsp_timeout,
            max_bytes=MAX_OCSP_RESPONSE_BYTES,
        )
        response = ocsp.load_der_ocsp_response(body)
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise ValueError(f"responder status {response.response_status.name}")
        _verify_ocsp_signer(response, issuer, self.clock())
        _check_nonce(response, nonce)
        return self._read_single(response, certificate, issuer)

    def _read_single(
        self, response: ocsp.OCSPResponse, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> tuple[Status | None, datetime.datetime]:
        now = self.clock()
        for single in response.responses:
            if single.serial_number != certificate.serial_number:
                continue
            expected = key_hash(issuer, single.hash_algorithm)
            if single.issuer_key_hash != expected:
                continue
            if single.this_update_utc > now + CLOCK_SKEW:
                raise ValueError("OCSP response is dated in the future")
            next_update = single.next_update_utc or now + OCSP_DEFAULT_LIFETIME
            if next_update + CLOCK_SKEW < now:
                raise ValueError("OCSP response is stale")
            expires = min(next_update, now + self.ocsp_cache_max)
            status = {
                ocsp.OCSPCertStatus.GOOD: Status.GOOD,
                ocsp.OCSPCertStatus.REVOKED: Status.REVOKED,
            }.get(single.certificate_status)
            return status, expires
        raise ValueError("OCSP response does not cover this certificate")

    # -- CRL -----------------------------------------------------------------------------------

    async def _check_crl(
        self, certificate: x509.Certificate, issuer: x509.Certificate
    ) -> RevocationResult | None:
        for url in _crl_urls(certificate)[:MAX_URLS]:
            try:
                crl = await self._crl(url, issuer)
            except (FetchError, ValueError) as exc:
                log.warning("CRL %s failed: %s", url, exc)
                continue
            revoked = certificate.serial_number in crl.revoked
            return RevocationResult(Status.REVOKED if revoked else Status.GOOD, "crl", url)
        return None

    async def _crl(self, url: str, issuer: x509.Certificate) -> _CachedCrl:
        lock = self._crl_locks.setdefault(url, asyncio.Lock())
        async with lock:  # one download per CRL, however many logins wait for it
            cached = self._crl_cache.get(url)
            if cached is not None and self.clock() < cached.expires:
                if cached.issuer != issuer.subject.public_bytes():
                    raise ValueError("cached CRL belongs to another issuer")
                return cached
            body = await self.fetcher.get(url, time_limit=self.crl_timeout, max_bytes=MAX_CRL_BYTES)
            # Parsing and checking a large CRL takes a while: keep it off the event loop.
            crl = await asyncio.to_thread(
                _parse_crl, body, issuer, self.clock(), self.crl_cache_max
            )
            self._remember(self._crl_cache, url, crl, MAX_CRL_CACHE_ENTRIES)
            return crl

    @staticmethod
    def _remember(cache: OrderedDict, key: object, value: object, limit: int) -> None:  # type: ignore[type-arg]
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)


def _parse_crl(
    body: bytes, issuer: x509.Certificate, now: datetime.datetime, cache_max: datetime.timedelta
) -> _CachedCrl:
    if body.lstrip().startswith(b"-----BEGIN"):
        crl = x509.load_pem_x509_crl(body)
    else:
        crl = x509.load_der_x509_crl(body)
    if crl.issuer != issuer.subject:
        raise ValueError("CRL issuer is not the certificate's issuer")
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise ValueError("CRL signature does not verify")
    if crl.last_update_utc > now + CLOCK_SKEW:
        raise ValueError("CRL is dated in the future")
    next_update = crl.next_update_utc
    if next_update is None or next_update + CLOCK_SKEW < now:
        raise ValueError("CRL is stale or has no nextUpdate")
    return _CachedCrl(
        issuer=crl.issuer.public_bytes(),
        revoked=frozenset(entry.serial_number for entry in crl),
        expires=min(next_update, now + cache_max),
    )


def _verify_ocsp_signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime.datetime
) -> None:
    """Check that the issuing CA, or a responder it delegated to, signed the response."""
    signer = issuer
    if not _names_responder(response, issuer):
        delegates = [c for c in response.certificates if _names_responder(response, c)]
        if not delegates:
            raise ValueError("OCSP response is signed by an unknown responder")
        signer = delegates[0]
        try:
            signer.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ValueError("OCSP responder certificate is not issued by the CA") from None
        usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
            raise ValueError("OCSP responder certificate lacks id-kp-OCSPSigning")
        if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
            raise ValueError("OCSP responder certificate is outside its validity")

    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        raise ValueError("OCSP signature algorithm is not supported")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm
            )
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            raise ValueError("OCSP responder key type is not supported")
    except InvalidSignature:
        raise ValueError("OCSP signature does not verify") from None


def _names_responder(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == certificate.subject
    return response.responder_key_hash == key_hash(certificate, hashes.SHA1())  # noqa: S303


def key_hash(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """Hash of the subjectPublicKey BIT STRING value, as OCSP's CertID and ResponderID use."""
    digest = hashes.Hash(algorithm)
    digest.update(_public_key_bits(certificate))
    return digest.finalize()


def _public_key_bits(certificate: x509.Certificate) -> bytes:
    spki = der.read_single(
        certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    bit_string = spki.children()[1]
    return bit_string.content[1:]  # drop the unused-bits octet


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes) -> None:
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return  # many responders pre-produce answers; freshness then rests on thisUpdate
    if echoed != nonce:
        raise ValueError("OCSP nonce does not match the request")


def _ocsp_urls(certificate: x509.Certificate) -> list[str]:
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    return [
        description.access_location.value
        for description in access.value
        if description.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(description.access_location, x509.UniformResourceIdentifier)
        and description.access_location.value.startswith(("http://", "https://"))
    ]


def _crl_urls(certificate: x509.Certificate) -> list[str]:
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points.value:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return urls
