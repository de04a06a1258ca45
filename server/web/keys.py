"""Typed application keys for the components the app opens at start and closes at shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.accounts import AccountDirectory
    from server.assertion import AssertionService
    from server.audit import AuditLog
    from server.config import Settings
    from server.logins import Logins
    from server.methods.base import LoginMethod
    from server.sessions.store import SessionStore

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[SessionStore] = web.AppKey("store")
ACCOUNTS: web.AppKey[AccountDirectory] = web.AppKey("accounts")
ASSERTIONS: web.AppKey[AssertionService] = web.AppKey("assertions")
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit")
LOGINS: web.AppKey[Logins] = web.AppKey("logins")
METHODS: web.AppKey[dict[str, LoginMethod]] = web.AppKey("methods")
