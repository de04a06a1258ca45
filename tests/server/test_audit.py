"""Audit log: one JSON line per event, masked ID numbers, no secret fields."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from server.audit import AUDIT_LOGGER, MAX_USER_AGENT_LENGTH, AuditLog
from server.config import Settings, load


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def record_one(audit: AuditLog, **extra: Any) -> None:
    audit.record(
        "ebas_match",
        login_id="login-1",
        method="mobile",
        outcome="matched",
        id_number="A123456789",
        client="127.0.0.1",
        user_agent="Mozilla/5.0",
        **extra,
    )


def test_event_written_as_json_line(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.log"
    audit = AuditLog(path)
    record_one(audit, account="wang.xiaoming")
    audit.close()

    (line,) = read_lines(path)
    assert line["event"] == "ebas_match"
    assert line["login_id"] == "login-1"
    assert line["method"] == "mobile"
    assert line["outcome"] == "matched"
    assert line["client"] == "127.0.0.1"
    assert line["user_agent"] == "Mozilla/5.0"
    assert line["account"] == "wang.xiaoming"
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None


def test_id_number_is_masked(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    record_one(audit, subject="B223456782")
    audit.close()

    text = path.read_text(encoding="utf-8")
    (line,) = read_lines(path)
    assert line["id_number"] == "A12****789"
    assert line["subject"] == "B22****782"
    assert "A123456789" not in text
    assert "B223456782" not in text


def test_user_agent_truncated(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    audit.record(
        "login_start",
        login_id=None,
        method=None,
        outcome="ok",
        id_number=None,
        client=None,
        user_agent="x" * 5000,
    )
    audit.close()

    (line,) = read_lines(path)
    assert len(line["user_agent"]) == MAX_USER_AGENT_LENGTH
    assert line["id_number"] is None


SECRET_KEYS = ["password", "new_password", "pin", "pin_code", "access_token", "assertion"]


@pytest.mark.parametrize("key", [*SECRET_KEYS, "client_secret", "api_key", "Key"])
def test_secret_looking_extra_dropped(
    tmp_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    with caplog.at_level(logging.WARNING, logger="server.audit"):
        record_one(audit, **{key: "hunter2", "reason": "kept"})
    audit.close()

    (line,) = read_lines(path)
    assert key not in line
    assert line["reason"] == "kept"
    assert "hunter2" not in path.read_text(encoding="utf-8")
    assert any(key in message and "dropped" in message for message in caplog.messages)
    assert all("hunter2" not in message for message in caplog.messages)


def test_harmless_extra_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    record_one(audit, shipping="x", keyboard_layout="zh", attempts=2)
    audit.close()

    (line,) = read_lines(path)
    assert line["shipping"] == "x"
    assert line["attempts"] == 2


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_audit_stream_does_not_reach_root(tmp_path: Path) -> None:
    root = logging.getLogger()
    handler = ListHandler()
    root.addHandler(handler)
    try:
        audit = AuditLog(tmp_path / "audit.log")
        record_one(audit)
        audit.close()
    finally:
        root.removeHandler(handler)

    assert logging.getLogger(AUDIT_LOGGER).propagate is False
    assert not [r for r in handler.records if r.name == AUDIT_LOGGER]
    assert len(read_lines(tmp_path / "audit.log")) == 1


def test_many_events_all_written_in_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    for n in range(200):
        audit.record(
            "login_start",
            login_id=f"login-{n}",
            method="mobile",
            outcome="ok",
            id_number=None,
            client=None,
            user_agent=None,
        )
    audit.close()

    lines = read_lines(path)
    assert [line["login_id"] for line in lines] == [f"login-{n}" for n in range(200)]


def test_from_settings_uses_data_dir(tmp_path: Path) -> None:
    settings = load(env={}, overrides={"server": {"data_dir": str(tmp_path)}})
    audit = AuditLog.from_settings(settings)
    record_one(audit)
    audit.close()

    assert read_lines(tmp_path / "audit.log")[0]["event"] == "ebas_match"


def test_dash_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load(env={}, overrides={"audit": {"path": "-"}})
    assert isinstance(settings, Settings)
    audit = AuditLog.from_settings(settings)
    record_one(audit)
    audit.close()

    err = capsys.readouterr().err
    assert json.loads(err.strip().splitlines()[-1])["id_number"] == "A12****789"


def test_flush_writes_queued_events_and_keeps_logging(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    record_one(audit)
    audit.flush()
    written = read_lines(path)
    record_one(audit)
    audit.close()

    assert len(written) == 1
    assert len(read_lines(path)) == 2
