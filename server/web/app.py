"""The application factory: opens every component at start and closes it at shutdown."""

from __future__ import annotations

import asyncio
import base64
import importlib
import importlib.util
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import aiohttp
import redis.asyncio
from aiohttp import web

from push.client import SpApiClient
from push.poll_lease import RedisPollLease
from push.poller import PollScheduler
from server.config import EMBEDDED_AUTHORITY_DIR, Settings
from server.logins import Logins
from server.methods.base import MethodContext
from server.sessions.store import SessionStore
from server.web.api import setup_api_routes
from server.web.ebas import setup_ebas_routes
from server.web.keys import ACCOUNTS, ASSERTIONS, AUDIT, LOGINS, METHODS, SETTINGS, STORE
from server.web.middleware import errors_middleware, headers_middleware
from server.web.site import setup_site_routes

if TYPE_CHECKING:
    from push.authority.service import SharedState

log = logging.getLogger(__name__)

POLLER = web.AppKey("poller", PollScheduler)
CLUSTER = web.AppKey("cluster", redis.asyncio.Redis)
CLUSTER_CONNECT_TIMEOUT = 2.0  # seconds; a reachable Redis accepts within milliseconds
CLUSTER_COMMAND_TIMEOUT = 5.0  # seconds; slower than this, Redis is unhealthy and the call fails
CLUSTER_RETRIES = 1  # rides out a dropped idle connection; the Lua scripts are idempotent
CLUSTER_RETRY_BACKOFF_BASE = 0.05  # seconds
CLUSTER_RETRY_BACKOFF_CAP = 0.5  # seconds
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
AUTHORITY_MOUNT = "/twfido"
KNOWN_METHODS = ("mobile", "card", "nhi", "password")  # the four eCPA credentials, page order
EMBEDDED_KEY_FILE = "twfido-sp.key"  # the embedded SP's AES key, shared with the authority


def create_app(settings: Settings) -> web.Application:
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(
        middlewares=[headers_middleware, errors_middleware], client_max_size=64 * 1024
    )
    app[SETTINGS] = settings
    aes_key = sp_aes_key(settings)
    cluster = open_cluster(settings)
    if cluster is not None:
        app[CLUSTER] = cluster
        app.on_cleanup.append(_close_cluster)  # runs after the authority's cleanup
        if not settings.twfido.aes_key:
            log.warning(
                "store.backend is redis but twfido.aes_key is unset: every node must share "
                "the data directory's %s, or set twfido.aes_key on all nodes",
                EMBEDDED_KEY_FILE,
            )

    if settings.twfido.mode == "embedded":
        from push.authority import create_authority_app

        def on_result(sp_ticket_id: str) -> None:
            # The verifier learns of a final result at once instead of at its next poll.
            if POLLER in app:
                app[POLLER].poke(sp_ticket_id)

        app.add_subapp(
            AUTHORITY_MOUNT,
            create_authority_app(
                data_dir=settings.data_path(EMBEDDED_AUTHORITY_DIR),
                sp_service_id=settings.twfido.sp_service_id,
                aes_key=aes_key,
                sp_name=settings.twfido.sp_name,
                on_result=on_result,
                shared=_shared_authority_state(cluster, settings),
            ),
        )

    app.cleanup_ctx.append(_components(settings, aes_key))
    setup_api_routes(app)
    setup_site_routes(app)
    setup_ebas_routes(app)
    for name in method_modules(settings):
        # A method may bring its own routes in server/web/methods/<name>.py (setup_routes(app)).
        if importlib.util.find_spec(f"server.web.methods.{name}") is not None:
            importlib.import_module(f"server.web.methods.{name}").setup_routes(app)
    return app


def method_modules(settings: Settings) -> dict[str, ModuleType]:
    """Return the enabled method modules: every server/methods module with a create(context)."""
    names = settings.server.methods or list(KNOWN_METHODS)
    modules = {}
    for name in names:
        if importlib.util.find_spec(f"server.methods.{name}") is None:
            continue
        module = importlib.import_module(f"server.methods.{name}")
        if hasattr(module, "create"):
            modules[name] = module
    return modules


def sp_aes_key(settings: Settings) -> bytes:
    """Return the configured AES key, or the embedded one, created on first start."""
    from push.checksum import decode_key

    if settings.twfido.aes_key:
        return decode_key(settings.twfido.aes_key)
    path = settings.server.data_dir / EMBEDDED_KEY_FILE
    if not path.exists():
        write_secret(path, base64.b64encode(secrets.token_bytes(32)))
    return decode_key(path.read_text())


def write_secret(path: Path, data: bytes) -> None:
    """Write a file readable only by this user, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def api_url(settings: Settings) -> str:
    if settings.twfido.api_url:
        return settings.twfido.api_url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}{AUTHORITY_MOUNT}"


def open_cluster(settings: Settings) -> redis.asyncio.Redis | None:
    """Return the Redis client for what nodes share beside sessions (None with one node).

    It serves the embedded authority's transactions, devices and phone routing, and the poll
    leases. It connects lazily, like the store's client.
    """
    if settings.store.backend != "redis":
        return None
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    return redis.asyncio.Redis.from_url(
        settings.store.redis_url,
        decode_responses=True,
        socket_connect_timeout=CLUSTER_CONNECT_TIMEOUT,
        socket_timeout=CLUSTER_COMMAND_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(
            ExponentialBackoff(cap=CLUSTER_RETRY_BACKOFF_CAP, base=CLUSTER_RETRY_BACKOFF_BASE),
            CLUSTER_RETRIES,
        ),
    )


def _cluster_prefix(settings: Settings) -> str:
    return f"{settings.store.key_prefix}twfido:"


def _shared_authority_state(
    cluster: redis.asyncio.Redis | None, settings: Settings
) -> SharedState | None:
    if cluster is None:
        return None
    from push.authority.cluster import PhoneRelay, RedisDeviceRegistry
    from push.authority.service import SharedState
    from push.authority.transactions import RedisTransactionTable

    prefix = _cluster_prefix(settings)
    return SharedState(
        registry=RedisDeviceRegistry(cluster, prefix),
        transactions=RedisTransactionTable(cluster, prefix),
        relay=PhoneRelay(cluster, prefix),
    )


def _poll_lease(cluster: redis.asyncio.Redis | None, settings: Settings) -> RedisPollLease | None:
    return None if cluster is None else RedisPollLease(cluster, _cluster_prefix(settings))


async def _close_cluster(app: web.Application) -> None:
    await app[CLUSTER].aclose()


def open_store(settings: Settings) -> SessionStore:
    if settings.store.backend == "redis":
        from server.sessions.redis import RedisStore

        return RedisStore(settings.store.redis_url, prefix=settings.store.key_prefix)
    from server.sessions.memory import MemoryStore

    return MemoryStore()


def _components(settings: Settings, aes_key: bytes):  # type: ignore[no-untyped-def]
    async def components(app: web.Application) -> AsyncIterator[None]:
        from server.accounts import AccountDirectory
        from server.assertion import AssertionService
        from server.audit import AuditLog
        from server.demo import seed_demo_accounts

        store = open_store(settings)
        await store.start()
        audit = AuditLog.from_settings(settings)
        accounts = await AccountDirectory.open(
            settings.accounts.database or settings.data_path("accounts.sqlite3")
        )
        if settings.accounts.seed_demo:
            await seed_demo_accounts(accounts)
        assertions = await asyncio.to_thread(
            AssertionService.load_or_create,
            settings.assertion.key_file or settings.data_path("assertion-key.pem"),
            issuer=settings.assertion.issuer,
            audience=settings.assertion.audience,
            lifetime=settings.assertion.lifetime,
            store=store,
        )
        http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.twfido.http_timeout)
        )
        client = SpApiClient(
            http,
            api_url=api_url(settings),
            sp_service_id=settings.twfido.sp_service_id,
            aes_key=aes_key,
            random_iv=settings.twfido.random_iv,
            timeout=settings.twfido.http_timeout,
            check_device_path=settings.twfido.check_device_path,
        )
        poller = PollScheduler(
            client,
            interval=settings.twfido.poll_interval,
            lease=_poll_lease(app.get(CLUSTER), settings),
        )
        await poller.start()

        logins = Logins(store, audit)
        context = MethodContext(settings, logins, accounts, http, client, poller)
        methods = {
            name: module.create(context) for name, module in method_modules(settings).items()
        }
        for method in methods.values():
            await method.open()

        app[STORE] = store
        app[AUDIT] = audit
        app[ACCOUNTS] = accounts
        app[ASSERTIONS] = assertions
        app[LOGINS] = logins
        app[METHODS] = methods
        app[POLLER] = poller
        app[HTTP_CLIENT] = http
        log.info(
            "ebas-login ready at %s (twfido=%s, store=%s)",
            settings.server.origin,
            settings.twfido.mode,
            settings.store.backend,
        )
        yield

        for method in methods.values():
            await method.close()
        await poller.close()
        await http.close()
        await accounts.close()
        await store.close()
        audit.close()

    return components
