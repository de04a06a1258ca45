"""Every check on a card login, in order: signature, certificate path, revocation, registration.

Each failure raises ``CardRejected`` with a stable reason key and the zh-TW text for the user.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from server.card.moica import ProfileError, holder_name, id_suffix
from server.card.path import PathError, TrustAnchors, check_certificate
from server.card.pkcs7 import SignatureInvalid, verify_pkcs1, verify_pkcs7
from server.card.registry import CardRegistry
from server.card.revocation import RevocationChecker, Status, utc_now
from server.errors import CardRejected
from server.idnumber import mask

log = logging.getLogger(__name__)

SIGNATURE_TYPES = ("PKCS7", "PKCS1")
MAX_CERTIFICATE_BYTES = 8 * 1024  # a MOICA certificate is about 1.5 KB

MESSAGES: dict[str, str] = {
    "signature_invalid": "自然人憑證簽章驗證失敗，請重新登入。",
    "certificate_invalid": "無法讀取卡片中的憑證，請確認插入的是自然人憑證後重新登入。",
    "not_yet_valid": "此憑證尚未生效，請確認電腦的日期時間是否正確。",
    "expired": "此憑證已逾有效期限，無法登入。自然人憑證請至戶政事務所辦理展期或重新申請。",
    "key_usage": "此憑證不是簽章用憑證，無法用於登入。",
    "untrusted_issuer": "此憑證不是由本系統信任的憑證機構簽發，無法用於登入。",
    "profile_invalid": "憑證中的身分資料格式不正確，無法用於登入。",
    "revoked": "此憑證已被廢止或停用，無法用於登入。",
    "revocation_unavailable": "目前無法確認憑證是否已被廢止（憑證狀態查詢服務沒有回應），"
    "請稍後再試。",
    "unregistered": "此自然人憑證尚未註冊。請先以其他方式登入 eBAS，"
    "再到「自然人憑證註冊」頁面以此卡完成註冊。",
    "id_suffix_mismatch": "憑證中的身分證統一編號末四碼與註冊資料不符，無法登入。",
}


def rejected(reason: str) -> CardRejected:
    return CardRejected(reason, MESSAGES[reason])


@dataclass(frozen=True)
class VerifiedCard:
    certificate: x509.Certificate
    chain: list[x509.Certificate]  # leaf first, trust anchor last
    holder_name: str
    id_suffix: str | None  # last 4 ID digits from a MOICA certificate, None for GCA/XCA
    card_serial: str | None
    revocation_source: str  # "ocsp", "crl", or "none" when fail_open let it through


class CardVerifier:
    def __init__(
        self,
        anchors: TrustAnchors,
        revocation: RevocationChecker,
        *,
        signature_type: str = "PKCS7",
        fail_open: bool = False,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        if signature_type not in SIGNATURE_TYPES:
            raise ValueError(f"signature type must be one of {SIGNATURE_TYPES}")
        self.anchors = anchors
        self.revocation = revocation
        self.signature_type = signature_type
        self.fail_open = fail_open
        self.clock = clock

    async def verify(
        self, challenge: bytes, signature_b64: str, certificate_b64: str | None
    ) -> VerifiedCard:
        """Check the signature over ``challenge``, the certificate path and its revocation."""
        signature = _decode(signature_b64, "signature_invalid", limit=None)
        certificate = None
        if certificate_b64:
            raw = _decode(certificate_b64, "certificate_invalid", limit=MAX_CERTIFICATE_BYTES)
            try:
                certificate = x509.load_der_x509_certificate(raw)
            except ValueError:
                raise rejected("certificate_invalid") from None

        # Signature and path checks are CPU work of a few milliseconds: keep them off the loop.
        card = await asyncio.to_thread(self._check_offline, challenge, signature, certificate)

        # NOTE: only the holder certificate is checked for revocation; a revoked issuing CA
        # (GRCA's ARL) is not looked up.
        status = await self.revocation.check(card.certificate, card.chain[1])
        if status.status is Status.REVOKED:
            log.warning(
                "card serial %x revoked (%s)", card.certificate.serial_number, status.source
            )
            raise rejected("revoked")
        if status.status is Status.UNAVAILABLE:
            if not self.fail_open:
                log.error("card serial %x: no revocation response; rejected (fail closed)",
                          card.certificate.serial_number)  # fmt: skip
                raise rejected("revocation_unavailable")
            log.warning("card serial %x: no revocation response; accepted because card.fail_open "
                        "is on", card.certificate.serial_number)  # fmt: skip
        return VerifiedCard(
            certificate=card.certificate,
            chain=card.chain,
            holder_name=card.holder_name,
            id_suffix=card.id_suffix,
            card_serial=card.card_serial,
            revocation_source=status.source,
        )

    def _check_offline(
        self, challenge: bytes, signature: bytes, certificate: x509.Certificate | None
    ) -> VerifiedCard:
        try:
            if self.signature_type == "PKCS7":
                signed = verify_pkcs7(signature, challenge, certificate)
            else:
                if certificate is None:
                    raise rejected("certificate_invalid")
                signed = verify_pkcs1(signature, challenge, certificate)
        except SignatureInvalid as exc:
            log.warning("card signature rejected: %s", exc)
            raise rejected("signature_invalid") from None

        try:
            chain = check_certificate(
                signed.certificate, self.anchors, self.clock(), signed.intermediates
            )
        except PathError as exc:
            log.warning("card certificate serial %x rejected: %s",
                        signed.certificate.serial_number, exc)  # fmt: skip
            raise rejected(exc.reason) from None
        if len(chain) < 2:
            # A trust anchor itself cannot sign in; a card certificate always has an issuer.
            raise rejected("untrusted_issuer")

        try:
            suffix = id_suffix(signed.certificate)
        except ProfileError as exc:
            log.warning("card certificate serial %x: %s", signed.certificate.serial_number, exc)
            raise rejected("profile_invalid") from None
        return VerifiedCard(
            certificate=signed.certificate,
            chain=chain,
            holder_name=holder_name(signed.certificate),
            id_suffix=suffix,
            card_serial=signed.card_serial,
            revocation_source="",
        )


def check_id_suffix(card: VerifiedCard, id_number: str) -> None:
    """Reject a certificate whose last-4 attribute differs from the registered ID number."""
    if card.id_suffix is None:
        return
    if not hmac.compare_digest(card.id_suffix, id_number[-len(card.id_suffix) :]):
        log.warning("card serial %x: ID suffix does not match %s",
                    card.certificate.serial_number, mask(id_number))  # fmt: skip
        raise rejected("id_suffix_mismatch")


async def registered_id_number(card: VerifiedCard, registry: CardRegistry) -> str:
    """Return the ID number registered for the card's certificate, after the last-4 check."""
    registration = await registry.find(card.certificate)
    if registration is None:
        log.info("card serial %x is not registered", card.certificate.serial_number)
        raise rejected("unregistered")
    check_id_suffix(card, registration.id_number)
    return registration.id_number


def _decode(text: str, reason: str, *, limit: int | None) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise rejected(reason) from None
    if not raw or (limit is not None and len(raw) > limit):
        raise rejected(reason)
    return raw
