"""The audit log: one JSON line per login event, on its own stream, separate from the service log.

Records go through a ``QueueHandler`` so the event loop only enqueues; a ``QueueListener`` thread
does the file writes. ID numbers are masked, and extra fields whose names suggest a secret are
dropped with a warning.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.config import Settings
from server.idnumber import is_valid, mask

log = logging.getLogger(__name__)

AUDIT_LOGGER = "ebas_login.audit"
# Real browser user agents fit in a few hundred characters; longer ones only bloat the log.
MAX_USER_AGENT_LENGTH = 256
# Maximum length of an extra string value: extra fields are short keys and reasons, not payloads.
MAX_EXTRA_LENGTH = 256
AUDIT_FILE_MODE = 0o640
# Extra keys containing one of these are refused: they name a secret that must never be logged.
SECRET_KEY_WORDS = ("password", "passwd", "token", "assertion", "secret", "credential", "cookie")
# Short words are matched as whole parts of a snake_case key only, so "pin_code" is refused
# but "shipping" is not.
SECRET_KEY_PARTS = frozenset({"pin", "key", "otp", "jwt"})
# Anything shaped like a national ID number (valid or not) inside free text from the client,
# such as a user agent, is masked: the log must not carry a full ID whoever typed it.
ID_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9]\d{8}", re.ASCII)
CORE_FIELDS = (
    "time",
    "event",
    "login_id",
    "method",
    "outcome",
    "id_number",
    "client",
    "user_agent",
)


class AuditLog:
    """Append audit events as JSON lines to a file, or to stderr when the path is ``-``."""

    def __init__(self, destination: Path | None) -> None:
        if destination is None or str(destination) == "-":
            target: logging.Handler = logging.StreamHandler(sys.stderr)
            self.destination = "-"
        else:
            target = _file_handler(destination)
            self.destination = str(destination)
        target.setFormatter(logging.Formatter("%(message)s"))

        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._handler = logging.handlers.QueueHandler(self._queue)
        self._listener = logging.handlers.QueueListener(self._queue, target)
        self._target = target

        self._logger = logging.getLogger(AUDIT_LOGGER)
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        self._logger.addHandler(self._handler)
        self._listener.start()
        self._closed = False
        log.info("audit log writing to %s", self.destination)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        """Open the audit log at ``audit.path``, or ``data_dir/audit.log`` when unset."""
        path = settings.audit.path
        return cls(path if path is not None else settings.data_path("audit.log"))

    def record(
        self,
        event: str,
        *,
        login_id: str | None,
        method: str | None,
        outcome: str,
        id_number: str | None,
        client: str | None,
        user_agent: str | None,
        **extra: Any,
    ) -> None:
        """Write one audit event; ``id_number`` is masked and ``user_agent`` truncated."""
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
            "login_id": login_id,
            "method": method,
            "outcome": outcome,
            "id_number": mask(id_number) if id_number else None,
            "client": client,
            "user_agent": scrub(user_agent[:MAX_USER_AGENT_LENGTH]) if user_agent else None,
        }
        for key, value in extra.items():
            if key in CORE_FIELDS:
                log.warning(
                    "audit event %s: extra field %r collides with a core field; dropped", event, key
                )
            elif looks_secret(key):
                log.warning("audit event %s: extra field %r looks secret; dropped", event, key)
            else:
                entry[key] = _safe_value(value)

        if self._closed:
            log.error("audit event %s recorded after the audit log was closed; dropped", event)
            return
        self._logger.info("%s", json.dumps(entry, ensure_ascii=False, default=str))

    def flush(self) -> None:
        """Wait until every queued event is written. Blocks the caller: for tests and tools."""
        if self._closed:
            return
        # stop() writes what is queued and joins the writer thread; start() opens a new one.
        self._listener.stop()
        self._target.flush()
        self._listener.start()

    def close(self) -> None:
        """Flush the queued events and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._logger.removeHandler(self._handler)
        self._listener.stop()
        self._target.close()


def looks_secret(key: str) -> bool:
    lowered = key.lower()
    if any(word in lowered for word in SECRET_KEY_WORDS):
        return True
    return any(part in SECRET_KEY_PARTS for part in lowered.replace("-", "_").split("_"))


def scrub(text: str) -> str:
    """Mask every ID-number-shaped part of untrusted text (user agent, Origin) for a log line."""
    return ID_LIKE.sub(lambda match: mask(match.group(0)), text)


def _safe_value(value: Any) -> Any:
    """Mask a string that is a national ID number and cut long strings."""
    if isinstance(value, str):
        if len(value) == 10 and is_valid(value):
            return mask(value)
        return scrub(value[:MAX_EXTRA_LENGTH])
    return value


def _file_handler(path: Path) -> logging.FileHandler:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create the file readable by its owner and group only; masked IDs are still personal data.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, AUDIT_FILE_MODE)
    os.close(descriptor)
    return logging.FileHandler(path, encoding="utf-8")
