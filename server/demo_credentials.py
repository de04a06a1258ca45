"""Demo eCPA passwords and NHI card registrations, seeded into an empty credential store.

The demo passwords are listed here and in the README so people can try the demo; nothing logs
them. Never enable ``accounts.seed_demo`` on a production server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from server.credentials import CardRegistration, CredentialStore
from server.demo import DEMO_IDS, RECENT_PASSWORD_AGE, STALE_PASSWORD_AGE
from server.passwords import PasswordHashing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoPassword:
    account: str
    id_number: str
    password: str
    age_seconds: float  # how long ago the password was last changed
    must_change: bool


# chen.anna signs in directly, and wang.xiaoming's password is past the 90-day limit. lin.meiyu
# has an administrator-issued password (a first login) and an ID number with no eBAS account.
DEMO_PASSWORDS = (
    DemoPassword(
        "chen.anna",
        DEMO_IDS["active_resident"],
        "Anna#2024demo",
        RECENT_PASSWORD_AGE.total_seconds(),
        False,
    ),
    DemoPassword(
        "wang.xiaoming",
        DEMO_IDS["active"],
        "Wang#2024demo",
        STALE_PASSWORD_AGE.total_seconds(),
        False,
    ),
    DemoPassword("lin.meiyu", DEMO_IDS["no_account"], "Lin#2024first", 0.0, True),
)


@dataclass(frozen=True, slots=True)
class DemoCard:
    card_number: str
    id_number: str
    holder_name: str
    password: str  # the registered password (註冊密碼)


# The simulator's third card (000055556666) is deliberately left unregistered.
DEMO_CARDS = (
    DemoCard("000011112222", DEMO_IDS["active"], "王小明", "nhi1234"),
    DemoCard("000033334444", DEMO_IDS["no_account"], "林美玉", "nhi5678"),
)


async def seed_demo_passwords(store: CredentialStore, hashing: PasswordHashing, now: float) -> bool:
    """Store the demo passwords when there are no passwords yet; return whether it did."""
    if await store.count_passwords() > 0:
        return False
    for demo in DEMO_PASSWORDS:
        await store.set_password(
            demo.account,
            demo.id_number,
            await hashing.hash(demo.password),
            changed_at=now - demo.age_seconds,
            must_change=demo.must_change,
        )
    log.info("seeded %d demo password accounts", len(DEMO_PASSWORDS))
    return True


async def seed_demo_cards(store: CredentialStore, hashing: PasswordHashing, now: float) -> bool:
    """Register the demo NHI cards when no card is registered yet; return whether it did."""
    if await store.count_cards() > 0:
        return False
    for demo in DEMO_CARDS:
        registration = CardRegistration(
            demo.card_number,
            demo.id_number,
            await hashing.hash(demo.password),
            demo.holder_name,
            now,
        )
        await store.register_card(registration)
    log.info("seeded %d demo NHI card registrations", len(DEMO_CARDS))
    return True
