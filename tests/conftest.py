"""Shared pytest fixtures, one section per group. Add new groups as sections below."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, RedisServerMissing, start_redis_server

# -- Redis: a real redis-server ----------------------------------------------------------------


def _start_redis_or_fail(data_dir: Path, *, appendonly: bool = False) -> RedisServer:
    try:
        return start_redis_server(data_dir, appendonly=appendonly)
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server (no persistence) shared by the whole test run."""
    server = _start_redis_or_fail(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of its own for each test, so tests sharing the server never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start extra redis-servers for one test (e.g. with AOF for restarts); all stop after it.

    ``start_redis(appendonly=True)`` returns a started ``RedisServer``; ``stop()``/``crash()``
    then ``start()`` restarts it on the same port and data directory.
    """
    servers: list[RedisServer] = []

    def start(*, appendonly: bool = False) -> RedisServer:
        server = _start_redis_or_fail(tmp_path / f"redis-{len(servers)}", appendonly=appendonly)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
