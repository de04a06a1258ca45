"""The small interface every login method implements."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from server.logins import ClientInfo, Logins
from server.sessions.model import LoginSession

if TYPE_CHECKING:
    import aiohttp

    from push.client import SpApiClient
    from push.poller import PollScheduler
    from server.accounts import AccountDirectory
    from server.config import Settings


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A parsed ``POST /api/logins`` body and who sent it."""

    body: Mapping[str, Any]
    binding: str  # hash of the browser's binding secret
    client: ClientInfo


class LoginMethod(abc.ABC):
    """A way to verify a person; it creates and ends sessions through ``Logins``."""

    name: ClassVar[str]

    def __init__(self, logins: Logins) -> None:
        self.logins = logins

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Start background work; called once by the app."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work; called once by the app."""

    @abc.abstractmethod
    async def start(self, request: StartRequest) -> LoginSession:
        """Validate the input and start a login; a direct method returns it already ended."""

    async def cancelled(self, session: LoginSession) -> None:  # noqa: B027 - optional hook
        """Release what a cancelled or expired login still holds (watched transactions)."""


@dataclass(frozen=True, slots=True)
class MethodContext:
    """The components a method module's ``create(context)`` may use to build its method."""

    settings: Settings
    logins: Logins
    accounts: AccountDirectory
    http: aiohttp.ClientSession
    sp_client: SpApiClient
    poller: PollScheduler
