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

SETTINGS = web.AppKey("settings", "Settings")
STORE = web.AppKey("store", "SessionStore")
ACCOUNTS = web.AppKey("accounts", "AccountDirectory")
ASSERTIONS = web.AppKey("assertions", "AssertionService")
AUDIT = web.AppKey("audit", "AuditLog")
METHODS = web.AppKey("methods", "dict[str, LoginMethod]")
LOGINS = web.AppKey("logins", "Logins")
