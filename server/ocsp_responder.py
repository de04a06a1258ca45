"""Local OCSP and CRL responder for the test PKI (tests and the demo only).

``POST /ocsp`` answers RFC 6960 requests for certificates of the test MOICA CA, signed by the
CA itself; ``GET /crl/moica-test.crl`` serves a fresh DER CRL. Tests revoke serial numbers and
switch either service off to play a revoked card or an unreachable responder.
"""

from __future__ import annotations

import datetime
import logging

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from server.card.revocation import key_hash
from server.testpki import CRL_PATH, OCSP_PATH, TestPki

log = logging.getLogger(__name__)

ANSWER_LIFETIME = datetime.timedelta(hours=1)  # nextUpdate of OCSP answers and the CRL
MAX_REQUEST_BYTES = 8 * 1024  # an OCSP request for one certificate is about 100 bytes


class OcspResponder:
    def __init__(self, pki: TestPki) -> None:
        self.pki = pki
        self.revoked: dict[int, datetime.datetime] = {}
        self.ocsp_enabled = True
        self.crl_enabled = True
        self.ocsp_requests = 0
        self.crl_requests = 0

    def revoke(self, serial_number: int) -> None:
        self.revoked[serial_number] = datetime.datetime.now(datetime.UTC)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(OCSP_PATH, self.handle_ocsp)
        app.router.add_get(CRL_PATH, self.handle_crl)
        return app

    async def handle_ocsp(self, request: web.Request) -> web.Response:
        self.ocsp_requests += 1
        if not self.ocsp_enabled:
            raise web.HTTPServiceUnavailable()
        try:
            query = ocsp.load_der_ocsp_request(await request.read())
        except ValueError:
            return _ocsp_answer(ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST))  # fmt: skip
        return _ocsp_answer(self.answer(query))

    def answer(self, query: ocsp.OCSPRequest) -> ocsp.OCSPResponse:
        now = datetime.datetime.now(datetime.UTC)
        expected = key_hash(self.pki.ca, query.hash_algorithm)
        if query.issuer_key_hash != expected:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)

        revoked_at = self.revoked.get(query.serial_number)
        status = ocsp.OCSPCertStatus.REVOKED if revoked_at else ocsp.OCSPCertStatus.GOOD
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=query.issuer_name_hash,
                issuer_key_hash=query.issuer_key_hash,
                serial_number=query.serial_number,
                algorithm=query.hash_algorithm,
                cert_status=status,
                this_update=now,
                next_update=now + ANSWER_LIFETIME,
                revocation_time=revoked_at,
                revocation_reason=x509.ReasonFlags.key_compromise if revoked_at else None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.pki.ca)
        )
        try:
            nonce = query.extensions.get_extension_for_class(x509.OCSPNonce).value
            builder = builder.add_extension(nonce, critical=False)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(self.pki.ca_key, hashes.SHA256())

    async def handle_crl(self, request: web.Request) -> web.Response:
        self.crl_requests += 1
        if not self.crl_enabled:
            raise web.HTTPServiceUnavailable()
        return web.Response(body=self.crl_bytes(), content_type="application/pkix-crl")

    def crl_bytes(self) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.pki.ca.subject)
            .last_update(now)
            .next_update(now + ANSWER_LIFETIME)
        )
        for serial, when in self.revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(self.pki.ca_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)


def _ocsp_answer(response: ocsp.OCSPResponse) -> web.Response:
    return web.Response(
        body=response.public_bytes(serialization.Encoding.DER),
        content_type="application/ocsp-response",
    )
