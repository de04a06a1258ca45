"""Login assertion: minting, every verification failure, the key file and the JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.assertion import LEEWAY_SECONDS, AssertionService, load_or_create_key
from server.errors import InvalidAssertion
from server.sessions.memory import MemoryStore
from server.sessions.model import VerifiedIdentity, binding_hash

BINDING = binding_hash("cookie-secret")
IDENTITY = VerifiedIdentity(
    id_number="A123456789",
    method="mobile",
    auth_time=1_700_000_000,
    amr=("hwk", "fpt"),
    name="王小明",
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> AssertionService:
    return AssertionService.load_or_create(
        tmp_path / "assertion.pem",
        issuer="https://login.example",
        audience="ebas",
        lifetime=60,
        store=MemoryStore(clock=clock),
        clock=clock,
    )


def mint(service: AssertionService) -> str:
    return service.mint(IDENTITY, login_id="login-1", binding=BINDING)


def payload(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_good_token_verifies(service: AssertionService) -> None:
    claims = await service.verify(mint(service), binding=BINDING)

    assert claims.id_number == "A123456789"
    assert claims.name == "王小明"
    assert claims.method == "mobile"
    assert claims.amr == ("hwk", "fpt")
    assert claims.login_id == "login-1"
    assert claims.expires_at - claims.issued_at == 60


def test_token_header_and_claims(service: AssertionService) -> None:
    token = mint(service)
    header = jwt.get_unverified_header(token)
    claims = payload(token)

    assert header["alg"] == "ES256"
    assert header["kid"] == service.kid
    assert claims["iss"] == "https://login.example"
    assert claims["aud"] == "ebas"
    assert claims["sub"] == "A123456789"
    assert claims["sid"] == "login-1"
    assert claims["bnd"] == BINDING
    assert claims["auth_time"] == IDENTITY.auth_time
    assert payload(mint(service))["jti"] != claims["jti"]


async def test_wrong_signature_rejected(
    service: AssertionService, tmp_path: Path, clock: Clock
) -> None:
    other = AssertionService(
        ec.generate_private_key(ec.SECP256R1()),
        issuer=service.issuer,
        audience=service.audience,
        lifetime=60,
        store=MemoryStore(),
        clock=clock,
    )
    token = mint(other)
    # Same kid as ours, so only the signature check can catch it.
    header, body, signature = token.split(".")
    forged_header = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": service.kid}).encode())

    with pytest.raises(InvalidAssertion):
        await service.verify(f"{forged_header}.{body}.{signature}", binding=BINDING)


async def test_tampered_payload_rejected(service: AssertionService) -> None:
    header, body, signature = mint(service).split(".")
    claims = payload(f"{header}.{body}.{signature}")
    claims["sub"] = "F123456784"
    forged = b64url(json.dumps(claims).encode())

    with pytest.raises(InvalidAssertion):
        await service.verify(f"{header}.{forged}.{signature}", binding=BINDING)


async def test_alg_none_rejected(service: AssertionService) -> None:
    claims = payload(mint(service))
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": service.kid}).encode())
    token = f"{header}.{b64url(json.dumps(claims).encode())}."

    with pytest.raises(InvalidAssertion):
        await service.verify(token, binding=BINDING)


async def test_hs256_with_public_key_rejected(service: AssertionService, tmp_path: Path) -> None:
    claims = payload(mint(service))
    key = load_or_create_key(tmp_path / "assertion.pem")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": service.kid}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()

    with pytest.raises(InvalidAssertion):
        await service.verify(f"{header}.{body}.{b64url(signature)}", binding=BINDING)


@pytest.mark.parametrize("field", ["issuer", "audience"])
async def test_wrong_issuer_or_audience_rejected(
    service: AssertionService, tmp_path: Path, clock: Clock, field: str
) -> None:
    settings = {
        "issuer": service.issuer,
        "audience": service.audience,
        field: "https://other.example",
    }
    minter = AssertionService.load_or_create(
        tmp_path / "assertion.pem", lifetime=60, store=MemoryStore(), clock=clock, **settings
    )

    with pytest.raises(InvalidAssertion):
        await service.verify(mint(minter), binding=BINDING)


async def test_expired_token_rejected(service: AssertionService, clock: Clock) -> None:
    token = mint(service)
    clock.now += 60 + LEEWAY_SECONDS + 1

    with pytest.raises(InvalidAssertion):
        await service.verify(token, binding=BINDING)


async def test_token_within_leeway_accepted(service: AssertionService, clock: Clock) -> None:
    token = mint(service)
    clock.now += 60 + LEEWAY_SECONDS - 1

    claims = await service.verify(token, binding=BINDING)

    assert claims.login_id == "login-1"


async def test_wrong_binding_rejected(service: AssertionService) -> None:
    token = mint(service)

    with pytest.raises(InvalidAssertion):
        await service.verify(token, binding=binding_hash("another-browser"))
    # A failed binding check does not use up the token for its rightful browser.
    assert (await service.verify(token, binding=BINDING)).login_id == "login-1"


async def test_replay_rejected(service: AssertionService) -> None:
    token = mint(service)
    await service.verify(token, binding=BINDING)

    with pytest.raises(InvalidAssertion):
        await service.verify(token, binding=BINDING)


async def test_missing_claim_rejected(service: AssertionService, tmp_path: Path) -> None:
    claims = payload(mint(service))
    del claims["bnd"]
    key = load_or_create_key(tmp_path / "assertion.pem")
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": service.kid})

    with pytest.raises(InvalidAssertion):
        await service.verify(token, binding=BINDING)


async def test_overlong_lifetime_rejected(service: AssertionService, tmp_path: Path) -> None:
    claims = payload(mint(service))
    claims["exp"] = int(claims["iat"]) + 3600  # type: ignore[call-overload]
    key = load_or_create_key(tmp_path / "assertion.pem")
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": service.kid})

    with pytest.raises(InvalidAssertion):
        await service.verify(token, binding=BINDING)


async def test_garbage_token_rejected(service: AssertionService) -> None:
    for token in ("", "abc", "a.b.c", "x" * 500):
        with pytest.raises(InvalidAssertion):
            await service.verify(token, binding=BINDING)


def test_lifetime_over_sixty_seconds_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        AssertionService.load_or_create(
            tmp_path / "k.pem", issuer="i", audience="a", lifetime=61, store=MemoryStore()
        )


def test_key_file_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "assertion.pem"
    first = load_or_create_key(path)
    second = load_or_create_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.private_numbers() == second.private_numbers()
    assert [p.name for p in path.parent.iterdir()] == ["assertion.pem"]  # no temporary left behind


def test_key_file_of_wrong_type_refused(tmp_path: Path) -> None:
    path = tmp_path / "p384.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(ValueError, match="P-256"):
        load_or_create_key(path)


def test_jwks_verifies_minted_token(service: AssertionService) -> None:
    jwks = service.jwks()
    (key,) = jwks["keys"]

    assert key["kid"] == service.kid
    assert key["alg"] == "ES256"
    assert key["use"] == "sig"
    assert "d" not in key
    public = jwt.PyJWK(key).key
    claims = jwt.decode(
        mint(service),
        public,
        algorithms=["ES256"],
        audience="ebas",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "A123456789"


def test_kid_is_rfc7638_thumbprint() -> None:
    # Recompute the thumbprint from PyJWT's own JWK export of the same key.
    key = ec.generate_private_key(ec.SECP256R1())
    service = AssertionService(key, issuer="i", audience="a", lifetime=60, store=MemoryStore())
    exported = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    canonical = json.dumps(
        {k: exported[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    assert service.kid == b64url(hashlib.sha256(canonical.encode()).digest())
