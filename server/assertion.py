"""The signed login assertion: an ES256 JWT that carries a verified identity to ``/ebas/complete``.

The login service mints it when a login is approved; the browser posts it at once, and the
completion handler verifies it. Besides the usual JWT checks, the token is bound to the browser
(claim ``bnd`` is the hash of the HttpOnly binding cookie) and is accepted once (``jti``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.errors import InvalidAssertion
from server.sessions.model import VerifiedIdentity
from server.sessions.store import SessionStore

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
# The browser posts the assertion as soon as it receives it; a minute covers slow networks.
MAX_LIFETIME_SECONDS = 60
# Clock difference tolerated between the nodes that mint and verify.
LEEWAY_SECONDS = 5
JTI_BYTES = 16  # 128-bit one-time id
KEY_FILE_MODE = 0o600
REQUIRED_CLAIMS = (
    "iss",
    "aud",
    "sub",
    "name",
    "amr",
    "auth_time",
    "iat",
    "exp",
    "jti",
    "sid",
    "bnd",
    "mtd",
)


@dataclass(frozen=True)
class AssertionClaims:
    """The verified content of a login assertion."""

    id_number: str  # sub
    name: str
    method: str  # mtd: the login method (mobile | card | nhi | password)
    amr: tuple[str, ...]
    auth_time: int
    issued_at: int
    expires_at: int
    jti: str
    login_id: str  # sid


class AssertionService:
    """Mint and verify login assertions with one EC P-256 key."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str,
        audience: str,
        lifetime: int,
        store: SessionStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the assertion key must be an EC P-256 key")
        if not 0 < lifetime <= MAX_LIFETIME_SECONDS:
            raise ValueError(f"assertion lifetime must be 1-{MAX_LIFETIME_SECONDS} seconds")
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self._store = store
        self._clock = clock
        self._public_jwk = _public_jwk(self._public_key)
        self.kid = _thumbprint(self._public_jwk)

    @classmethod
    def load_or_create(
        cls,
        key_file: Path,
        *,
        issuer: str,
        audience: str,
        lifetime: int,
        store: SessionStore,
        clock: Callable[[], float] = time.time,
    ) -> AssertionService:
        """Read the PEM key at ``key_file``, or generate and persist one on first start.

        Blocking file I/O: call it once at start, through ``asyncio.to_thread`` from async code.
        """
        key = load_or_create_key(key_file)
        return cls(
            key, issuer=issuer, audience=audience, lifetime=lifetime, store=store, clock=clock
        )

    def mint(self, identity: VerifiedIdentity, *, login_id: str, binding: str) -> str:
        """Sign an assertion for a verified identity, bound to the browser's binding hash."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.id_number,
            "name": identity.name,
            "amr": list(identity.amr),
            "mtd": identity.method,
            "auth_time": identity.auth_time,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_urlsafe(JTI_BYTES),
            "sid": login_id,
            "bnd": binding,
        }
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    async def verify(self, token: str, *, binding: str) -> AssertionClaims:
        """Check signature, claims, binding and single use; raise ``InvalidAssertion`` if not."""
        claims = self._decode(token)
        login_id = claims["sid"]

        if not hmac.compare_digest(str(claims["bnd"]).encode(), binding.encode()):
            _reject("binding mismatch", login_id)

        # Claim the jti last, so a token that fails another check is not used up by it.
        ttl = max(1.0, claims["exp"] + LEEWAY_SECONDS - self._clock())
        if not await self._store.claim_once(f"jti:{claims['jti']}", ttl):
            _reject("replayed jti", login_id)

        return AssertionClaims(
            id_number=claims["sub"],
            name=claims["name"],
            method=claims["mtd"],
            amr=tuple(claims["amr"]),
            auth_time=claims["auth_time"],
            issued_at=claims["iat"],
            expires_at=claims["exp"],
            jti=claims["jti"],
            login_id=login_id,
        )

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                _reject("unknown kid", None)
            # Expiry is checked below against the injected clock, so tests can move time.
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            # Only the class: PyJWT's messages quote header values the sender chose.
            _reject(type(exc).__name__, None)

        for name in ("iat", "exp", "auth_time"):
            if not isinstance(claims[name], int) or isinstance(claims[name], bool):
                _reject(f"claim {name} is not an integer", None)
        for name in ("sub", "name", "mtd", "jti", "sid", "bnd"):
            if not isinstance(claims[name], str):
                _reject(f"claim {name} is not a string", None)
        if not isinstance(claims["amr"], list) or not all(
            isinstance(v, str) for v in claims["amr"]
        ):
            _reject("claim amr is not a list of strings", None)

        now = self._clock()
        login_id = claims["sid"]
        if claims["exp"] + LEEWAY_SECONDS < now:
            _reject("expired", login_id)
        if claims["iat"] - LEEWAY_SECONDS > now:
            _reject("issued in the future", login_id)
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS:
            _reject("lifetime longer than allowed", login_id)
        return claims

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set with the public verification key."""
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}]}


def _reject(reason: str, login_id: str | None) -> NoReturn:
    # The reason names the failed check; neither the token nor its claims are logged.
    log.warning("login assertion rejected (login %s): %s", login_id or "-", reason)
    raise InvalidAssertion()


def load_or_create_key(key_file: Path) -> ec.EllipticCurvePrivateKey:
    """Read an EC P-256 private key (PEM), or generate one and write it with mode 0600."""
    if not key_file.exists():
        _create_key_file(key_file)

    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{key_file} does not contain an EC P-256 private key")
    return key


def _create_key_file(key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = key_file.with_name(f".{key_file.name}.{secrets.token_hex(8)}.tmp")

    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails when the file exists, so two nodes starting at once keep the first key.
        try:
            os.link(temporary, key_file)
            log.info("generated a new assertion signing key at %s", key_file)
        except FileExistsError:
            log.info("another process created the assertion key at %s first", key_file)
    finally:
        temporary.unlink(missing_ok=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def _thumbprint(jwk: dict[str, str]) -> str:
    """Compute the RFC 7638 thumbprint: SHA-256 of the required members, sorted, no whitespace."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())
