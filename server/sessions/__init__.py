"""The login-session model and its stores (memory for one node, Redis for several)."""

from server.sessions.model import TERMINAL, LoginSession, State, VerifiedIdentity
from server.sessions.store import SessionStore

__all__ = ["TERMINAL", "LoginSession", "SessionStore", "State", "VerifiedIdentity"]
