"""The OpenAPI document (static/openapi.yaml) against the routes and errors of the real app.

PyYAML is not a dependency, so the test reads the two parts it needs with a small line reader:
the path and method keys under ``paths:`` and the ``error`` enum of the ``Error`` schema. The
reader relies on the file's two-space indentation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from server import config, errors
from server.web.app import create_app

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "static" / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_KEY = re.compile(r"^  (/\S*):\s*$")
METHOD_KEY = re.compile(rf"^    ({'|'.join(HTTP_METHODS)}):\s*$")
TEMPLATE_PARAMETER = re.compile(r"\{[^}/]+\}")


def documented_operations(text: str) -> set[tuple[str, str]]:
    """Return (METHOD, path template) for every operation under the top-level ``paths:`` key."""
    operations: set[tuple[str, str]] = set()
    in_paths = False
    path: str | None = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            in_paths = line.startswith("paths:")
            path = None
            continue
        if not in_paths:
            continue
        if match := PATH_KEY.match(line):
            path = match.group(1)
        elif (match := METHOD_KEY.match(line)) and path is not None:
            operations.add((match.group(1).upper(), path))
    return operations


def documented_error_keys(text: str) -> set[str]:
    """Return the values of the ``enum`` under the ``Error`` schema's ``error`` property."""
    lines = text.splitlines()
    start = lines.index("    Error:")
    error_property = lines.index("        error:", start)
    enum_line = next(i for i in range(error_property, len(lines)) if lines[i].strip() == "enum:")
    indent = len(lines[enum_line]) - len(lines[enum_line].lstrip())
    keys: set[str] = set()
    for line in lines[enum_line + 1 :]:
        stripped = line.strip()
        if not stripped.startswith("- ") or len(line) - len(line.lstrip()) < indent:
            break
        keys.add(stripped[2:].strip())
    return keys


def template_pattern(template: str) -> re.Pattern[str]:
    """Match a concrete path, or an aiohttp path template, against an OpenAPI path template."""
    parts = TEMPLATE_PARAMETER.split(template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def covers(template: str, route_path: str) -> bool:
    return template == route_path or template_pattern(template).fullmatch(route_path) is not None


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    """Return (METHOD, path template) of every route, sub-application routes included."""
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        if route.method == "HEAD":  # aiohttp adds HEAD beside every GET
            continue
        routes.add((route.method, resource.canonical))
    return routes


def all_error_keys() -> set[str]:
    keys = {errors.LoginError.key}
    pending = list(errors.LoginError.__subclasses__())
    while pending:
        cls = pending.pop()
        keys.add(cls.key)
        pending.extend(cls.__subclasses__())
    return keys


@pytest.fixture
def document() -> str:
    return OPENAPI_FILE.read_text(encoding="utf-8")


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    settings = config.load(env={}, overrides={"server": {"data_dir": tmp_path}})
    return create_app(settings)


def test_reader_finds_known_operations(document: str) -> None:
    operations = documented_operations(document)

    assert ("POST", "/api/logins") in operations
    assert ("GET", "/api/logins/{login_id}") in operations
    assert ("DELETE", "/api/logins/{login_id}") in operations
    # Keys deeper than the path level (schema properties, parameters) are not operations.
    assert not any(path == "/api/logins" and method == "GET" for method, path in operations)


def test_every_route_is_documented(app: web.Application, document: str) -> None:
    operations = documented_operations(document)
    routes = registered_routes(app)

    assert ("GET", "/twfido/app/channel") in routes, "the embedded authority is not mounted"
    missing = sorted(
        (method, path)
        for method, path in routes
        if not any(m == method and covers(template, path) for m, template in operations)
    )
    assert missing == []


def test_every_documented_operation_exists(app: web.Application, document: str) -> None:
    routes = registered_routes(app)

    stale = sorted(
        (method, template)
        for method, template in documented_operations(document)
        if not any(m == method and covers(template, path) for m, path in routes)
    )
    assert stale == []


def test_every_error_key_is_documented(document: str) -> None:
    documented = documented_error_keys(document)

    assert "internal_error" in documented
    assert sorted(all_error_keys() - documented) == []


def test_card_rejection_reasons_are_documented(document: str) -> None:
    from server.card.verifier import MESSAGES

    for reason in MESSAGES:
        assert f"`{reason}`" in document, reason
