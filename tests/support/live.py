"""A real ebas-login app listening on a loopback port, for integration and browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from server.config import Settings, load
from server.web.app import create_app
from tests.support.process import free_port


@dataclass
class LiveApp:
    settings: Settings
    app: web.Application

    @property
    def url(self) -> str:
        return self.settings.server.origin


@asynccontextmanager
async def live_app(
    data_dir: Path, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> AsyncIterator[LiveApp]:
    """Start the whole product on 127.0.0.1 with its embedded defaults (plus ``overrides``)."""
    port = free_port()
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": port, "data_dir": data_dir}
    }
    for section, values in (overrides or {}).items():
        sections.setdefault(section, {}).update(values)
    settings = load(env={}, overrides=sections)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield LiveApp(settings, app)
    finally:
        await runner.cleanup()
