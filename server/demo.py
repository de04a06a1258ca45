"""Demo accounts for the embedded single-node mode, seeded into an empty account directory.

Every ID number here has a correct check digit. They are made-up numbers that let the demo, the
README and the tests play each account-matching outcome.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from server.accounts import Account, AccountDirectory

log = logging.getLogger(__name__)

# Purpose → ID number. Tests and the README name them by purpose.
DEMO_IDS: dict[str, str] = {
    # Active account 王小明, 行政院主計總處 / 會計決算處; password older than the 3-month notice.
    "active": "A123456789",
    # Active account at 財政部 / 會計處 under a new-format resident number (second digit 8).
    "active_resident": "A800123450",
    # An account that exists but is deactivated.
    "inactive": "B223456782",
    # A valid ID number with no eBAS account at all.
    "no_account": "F123456784",
}

# Password ages that put one demo account past the 90-day notice and one well inside it.
STALE_PASSWORD_AGE = timedelta(days=200)
RECENT_PASSWORD_AGE = timedelta(days=10)
# When the demo pretends the personnel sync last ran.
SYNC_AGE = timedelta(hours=6)


def demo_accounts(now: datetime | None = None) -> list[Account]:
    """Build the demo accounts with times relative to ``now`` (UTC)."""
    now = now or datetime.now(UTC)
    synced_at = (now - SYNC_AGE).isoformat(timespec="seconds")
    return [
        Account(
            account="wang.xiaoming",
            id_number=DEMO_IDS["active"],
            display_name="王小明",
            agency="行政院主計總處",
            unit="會計決算處",
            active=True,
            synced_at=synced_at,
            password_changed_at=(now - STALE_PASSWORD_AGE).isoformat(timespec="seconds"),
        ),
        Account(
            account="chen.anna",
            id_number=DEMO_IDS["active_resident"],
            display_name="陳安娜",
            agency="財政部",
            unit="會計處",
            active=True,
            synced_at=synced_at,
            password_changed_at=(now - RECENT_PASSWORD_AGE).isoformat(timespec="seconds"),
        ),
        Account(
            account="li.datong",
            id_number=DEMO_IDS["inactive"],
            display_name="李大同",
            agency="教育部",
            unit="主計處",
            active=False,
            synced_at=synced_at,
            password_changed_at=None,
        ),
    ]


async def seed_demo_accounts(directory: AccountDirectory) -> bool:
    """Load the demo accounts when the directory is empty; return whether it did."""
    if await directory.count() > 0:
        return False
    accounts = demo_accounts()
    await directory.upsert(accounts)
    log.info("seeded %d demo accounts into the empty account directory", len(accounts))
    return True
