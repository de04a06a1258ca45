"""The store interface every backend implements; one shared test suite covers all of them."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from server.sessions.model import LoginSession, State, VerifiedIdentity


class Subscription(Protocol):
    """Snapshots published for one session, oldest first."""

    async def get(self) -> LoginSession:
        """Wait for the next snapshot; safe to cancel (e.g. by ``asyncio.wait_for``)."""
        ...


class SessionStore(abc.ABC):
    """Login sessions with atomic transitions and change events, plus small shared counters.

    Every change (``transition``, ``update_data``) is a compare-and-set on the current state and
    publishes the new snapshot to ``watch`` subscribers on every node. A terminal state is final.
    """

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections; called once by the app at start."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once by the app at shutdown."""

    async def ready(self) -> bool:
        """Return whether the store answers (the readiness probe)."""
        return True

    # -- login sessions ------------------------------------------------------------------------

    @abc.abstractmethod
    async def create(self, session: LoginSession) -> None:
        """Store a new session; it lives until a while after ``expires_at``."""

    @abc.abstractmethod
    async def get(self, login_id: str) -> LoginSession | None:
        """Return the session, or None when unknown or purged."""

    @abc.abstractmethod
    async def transition(
        self,
        login_id: str,
        to: State,
        *,
        expect: State = State.PENDING,
        reason: str | None = None,
        message: str | None = None,
        identity: VerifiedIdentity | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> LoginSession | None:
        """Move ``expect`` → ``to`` atomically; return the new snapshot, or None if not ``expect``.

        ``data`` is merged into the method data in the same atomic step.
        """

    @abc.abstractmethod
    async def update_data(
        self, login_id: str, data: Mapping[str, Any], *, expect: State = State.PENDING
    ) -> LoginSession | None:
        """Merge method data while in ``expect``; return the new snapshot or None; publishes."""

    @abc.abstractmethod
    def watch(self, login_id: str) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to the snapshots published for one session from now on.

        ``async with store.watch(id) as events: session = await events.get()``
        Subscribe before reading the current state, so no change falls between the two.
        """

    # -- small shared values: one-time ids, counters, pointers ----------------------------------

    @abc.abstractmethod
    async def claim_once(self, key: str, ttl: float) -> bool:
        """Return True the first time ``key`` is claimed within ``ttl`` seconds, else False."""

    @abc.abstractmethod
    async def hit(self, key: str, window: float) -> tuple[int, float]:
        """Count one event in a fixed window; return (count so far, seconds until the reset)."""

    @abc.abstractmethod
    async def reset(self, key: str) -> None:
        """Forget a counter or value."""

    @abc.abstractmethod
    async def put(self, key: str, value: str, ttl: float) -> None:
        """Store a short-lived value."""

    @abc.abstractmethod
    async def swap(self, key: str, value: str, ttl: float) -> str | None:
        """Store a short-lived value and return the live one it replaced, in one atomic step."""

    @abc.abstractmethod
    async def fetch(self, key: str) -> str | None:
        """Return a value stored by ``put``, or None."""

    @abc.abstractmethod
    async def take(self, key: str) -> str | None:
        """Return and delete a value atomically (single-use challenges), or None."""
