"""``ebas-login card enroll``: the registration table as the login method reads it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import Pki
from cryptography import x509

from server.card.registry import CardRegistry, Registration
from server.cli import main


def test_enroll_registers_certificate(test_pki: Pki, tmp_path: Path) -> None:
    holder = test_pki.issue(id_number="A123456789")
    pem = tmp_path / "holder.pem"
    pem.write_bytes(holder.certificate_pem)

    code = main(["card", "enroll", "--data-dir", str(tmp_path), "--cert", str(pem),
                 "--id", "A123456789"])  # fmt: skip

    assert code == 0
    found = asyncio.run(_find(tmp_path / "card-registrations.sqlite3", holder.certificate))
    assert found is not None
    assert found.id_number == "A123456789"
    assert found.registered_by == "cli"


def test_enroll_rejects_last_four_mismatch(test_pki: Pki, tmp_path: Path) -> None:
    pem = tmp_path / "holder.pem"
    pem.write_bytes(test_pki.issue(id_number="A123456789").certificate_pem)

    code = main(["card", "enroll", "--data-dir", str(tmp_path), "--cert", str(pem),
                 "--id", "F123456784"])  # fmt: skip

    assert code == 1
    assert not (tmp_path / "card-registrations.sqlite3").exists()


async def _find(path: Path, certificate: x509.Certificate) -> Registration | None:
    registry = await CardRegistry.open(path)
    try:
        return await registry.find(certificate)
    finally:
        await registry.close()
