"""Two server processes on loopback ports sharing one real Redis: events, pushes, node loss."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from push.phone import PhoneSimulator
from push.poll_lease import Lease, RedisPollLease
from server.demo import DEMO_IDS
from tests.support.cluster import NodeProcess, shared_settings, start_nodes
from tests.support.redis_server import RedisServer

ACTIVE = DEMO_IDS["active"]
EVENT_TIMEOUT = 15.0  # seconds; generous for two processes on a loaded test machine
TAKEOVER_TIMEOUT = 20.0  # seconds; lease (3 poll intervals) + one sweep, with margin


def cluster_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = shared_settings(redis_url, f"mn-{uuid.uuid4().hex[:10]}:", tmp_path / "secrets")
    env.update(extra)
    return env


async def two_nodes(env: dict[str, str], tmp_path: Path) -> tuple[NodeProcess, NodeProcess]:
    a = NodeProcess("node-a", tmp_path / "node-a", env)
    b = NodeProcess("node-b", tmp_path / "node-b", env)
    await start_nodes([a, b])
    return a, b


@pytest.fixture
async def nodes(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[NodeProcess, NodeProcess]]:
    # A poll interval far above the test's length: results must travel by event between nodes.
    env = cluster_env(redis_url, tmp_path, EBAS_LOGIN_TWFIDO_POLL_INTERVAL="60")
    a, b = await two_nodes(env, tmp_path)
    yield a, b
    a.stop()
    b.stop()


class Browser:
    """A browser-side client bound to one origin (cookie jar, Origin header)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    def at(self, origin: str) -> Browser:
        """The same browser (same cookies) talking to another node's address."""
        other = Browser.__new__(Browser)
        other.origin, other.http = origin, self.http
        return other

    async def start(self, id_number: str = ACTIVE) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.origin}/api/logins",
            json={"method": "mobile", "id_number": id_number},
            headers={"Origin": self.origin},
        ) as response:
            return response.status, await response.json()

    async def status(self, login_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.origin}/api/logins/{login_id}") as response:
            return dict(await response.json())

    async def events(self, login_id: str) -> aiohttp.ClientWebSocketResponse:
        url = f"{self.origin}/api/logins/{login_id}/events".replace("http", "ws", 1)
        return await self.http.ws_connect(url, origin=self.origin)

    async def wait_polling(self, login_id: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await self.status(login_id)
            if view["state"] != "pending" or asyncio.get_running_loop().time() > deadline:
                return view
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.http.close()


async def until_terminal(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    last: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            last = json.loads(message.data)
            if last["state"] != "pending":
                break
    return last


@pytest.fixture
async def browser_factory() -> AsyncIterator[Callable[[str], Browser]]:
    browsers: list[Browser] = []

    def make(origin: str) -> Browser:
        browsers.append(Browser(origin))
        return browsers[-1]

    yield make
    for browser in browsers:
        await browser.close()


@pytest.fixture
async def phones(tmp_path: Path) -> AsyncIterator[Callable[[str], PhoneSimulator]]:
    made: list[PhoneSimulator] = []

    def make(url: str) -> PhoneSimulator:
        made.append(PhoneSimulator(url, ACTIVE, tmp_path / "phone"))
        return made[-1]

    yield make
    for phone in made:
        await phone.close()


async def test_approval_on_b_reaches_browser_on_a(
    nodes: tuple[NodeProcess, NodeProcess],
    browser_factory: Callable[[str], Browser],
    phones: Callable[[str], PhoneSimulator],
) -> None:
    a, b = nodes
    phone = phones(b.url)
    await phone.enroll()
    await phone.connect()
    browser = browser_factory(a.url)

    status, login = await browser.start()
    assert status == 201
    assert login["push_status"] == "sent"
    ws = await browser.events(login["login_id"])
    push = await phone.next_push(EVENT_TIMEOUT)
    assert login["verification_code"] in push["choices"]
    assert (await phone.approve(push, login["verification_code"]))["ok"] is True

    final = await until_terminal(ws, EVENT_TIMEOUT)  # poll interval is 60 s: this is the event
    await ws.close()
    assert final["state"] == "approved"
    assert final["assertion"]

    # The assertion minted on node A is accepted by node B (one shared key).
    async with browser.http.post(
        f"{b.url}/ebas/complete",
        data={"assertion": final["assertion"]},
        headers={"Origin": b.url},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert "portal" in response.headers["Location"]


async def test_push_from_a_reaches_phone_on_b(
    nodes: tuple[NodeProcess, NodeProcess],
    browser_factory: Callable[[str], Browser],
    phones: Callable[[str], PhoneSimulator],
) -> None:
    a, b = nodes
    phone = phones(b.url)
    await phone.enroll()
    await phone.connect()
    browser = browser_factory(a.url)

    _, login = await browser.start()
    push = await phone.next_push(EVENT_TIMEOUT)
    assert "全國主計網(eBAS)" in push["hint"]
    assert (await phone.deny(push))["reason"] == "denied"

    # The same browser polls node B, as after a balancer switch, and gets the denial.
    view = await browser.at(b.url).wait_polling(login["login_id"], EVENT_TIMEOUT)
    assert view["state"] == "denied"


async def test_unconnected_phone_offers_qr_code(
    nodes: tuple[NodeProcess, NodeProcess],
    browser_factory: Callable[[str], Browser],
    phones: Callable[[str], PhoneSimulator],
) -> None:
    a, b = nodes
    await phones(b.url).enroll()  # enrolled through B, never connected anywhere
    _, login = await browser_factory(a.url).start()
    assert login["state"] == "pending"
    assert login["push_status"] == "not_delivered"


async def test_killed_node_loses_no_pending_login(
    redis_url: str,
    tmp_path: Path,
    browser_factory: Callable[[str], Browser],
    phones: Callable[[str], PhoneSimulator],
) -> None:
    env = cluster_env(redis_url, tmp_path, EBAS_LOGIN_TWFIDO_POLL_INTERVAL="1")
    a, b = await two_nodes(env, tmp_path)
    try:
        phone = phones(a.url)
        await phone.enroll()
        await phone.connect()
        browser = browser_factory(a.url)
        _, login = await browser.start()
        await phone.next_push(EVENT_TIMEOUT)

        a.kill()  # node A held the login's poll lease and the phone's channel
        await phone.close()

        # The phone app reconnects to node B and gets the pending prompt again. Behind a balancer
        # it keeps one address, so here its saved state is pointed at B.
        state = json.loads(phone.state_file.read_text(encoding="utf-8"))
        phone.state_file.write_text(json.dumps({**state, "server": b.url}), encoding="utf-8")
        phone_on_b = phones(b.url)
        await phone_on_b.connect()
        push = await phone_on_b.next_push(EVENT_TIMEOUT)
        # The browser's events socket reconnects to node B.
        ws = await browser.at(b.url).events(login["login_id"])
        assert (await phone_on_b.approve(push, login["verification_code"]))["ok"] is True

        try:
            final = await until_terminal(ws, TAKEOVER_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"node B did not finish the login; its log:\n{b.log_tail()}")
        await ws.close()
        assert final["state"] == "approved"
        assert "adopting the poll" in b.log_text()
    finally:
        a.stop()
        b.stop()


async def test_pending_login_survives_a_redis_restart_with_aof(
    start_redis: Callable[..., RedisServer],
    tmp_path: Path,
    browser_factory: Callable[[str], Browser],
    phones: Callable[[str], PhoneSimulator],
) -> None:
    redis_server = start_redis(appendonly=True)
    env = cluster_env(redis_server.url, tmp_path, EBAS_LOGIN_TWFIDO_POLL_INTERVAL="1")
    a, b = await two_nodes(env, tmp_path)
    try:
        phone = phones(b.url)
        await phone.enroll()
        await phone.connect()
        browser = browser_factory(a.url)
        _, login = await browser.start()
        push = await phone.next_push(EVENT_TIMEOUT)

        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)

        # The phone channel to node B survived the restart; the transaction was kept in the AOF.
        result = await phone.approve(push, login["verification_code"])
        assert result["ok"] is True
        view = await browser.wait_polling(login["login_id"], EVENT_TIMEOUT)
        assert view["state"] == "approved"
    finally:
        a.stop()
        b.stop()


async def test_redis_down_gives_store_unavailable_and_failing_readiness(
    start_redis: Callable[..., RedisServer],
    tmp_path: Path,
    browser_factory: Callable[[str], Browser],
) -> None:
    redis_server = start_redis()
    env = cluster_env(redis_server.url, tmp_path)
    a, b = await two_nodes(env, tmp_path)
    try:
        browser = browser_factory(a.url)
        async with browser.http.get(f"{a.url}/readyz") as response:
            assert response.status == 200

        await asyncio.to_thread(redis_server.crash)
        status, answer = await browser.start()
        assert status == 503
        assert answer["error"] == "store_unavailable"
        assert answer["message"] == "登入服務暫時無法使用，請稍後再試。"
        async with browser.http.get(f"{a.url}/readyz") as response:
            assert response.status == 503
        assert " ERROR " in a.log_text() or "ERROR" in a.log_text()

        # Back up: ready again, and the failed start left nothing behind.
        await asyncio.to_thread(redis_server.start)
        async with browser.http.get(f"{a.url}/readyz") as response:
            assert response.status == 200
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            prefix = env["EBAS_LOGIN_STORE_KEY_PREFIX"]
            assert not [key async for key in client.scan_iter(f"{prefix}session:*")]
        finally:
            await client.aclose()
    finally:
        a.stop()
        b.stop()


# -- poll leases against the real Redis ---------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_poll_lease_admits_one_node(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    node_a = RedisPollLease(redis_client, redis_prefix)
    node_b = RedisPollLease(redis_client, redis_prefix)
    await node_a.register("login1:push", "ticket-text", time.time() + 60, ttl=5)

    assert await node_a.acquire("login1:push", ttl=5) is Lease.HELD
    assert await node_b.acquire("login1:push", ttl=5) is Lease.BUSY
    assert await node_b.orphans(time.time()) == []

    await node_a.finish("login1:push", remaining=60)
    assert await node_a.acquire("login1:push", ttl=5) is Lease.DONE
    assert await node_b.acquire("login1:push", ttl=5) is Lease.DONE
    assert await node_b.orphans(time.time()) == []


async def test_expired_poll_lease_is_adopted(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    node_a = RedisPollLease(redis_client, redis_prefix)
    node_b = RedisPollLease(redis_client, redis_prefix)
    deadline = time.time() + 60
    await node_a.register("login2:qr", "ticket-text", deadline, ttl=0.2)

    await asyncio.sleep(0.4)  # node A stopped renewing: its lease expires
    orphans = await node_b.orphans(time.time())
    assert [(key, ticket) for key, ticket, _ in orphans] == [("login2:qr", "ticket-text")]
    assert orphans[0][2] == pytest.approx(deadline)
    assert await node_b.acquire("login2:qr", ttl=5) is Lease.HELD
    assert await node_a.acquire("login2:qr", ttl=5) is Lease.BUSY
