"""The 行動自然人憑證 login in headless Chromium across two nodes behind one balancer origin,
including a node killed mid-login (SIGKILL): the page reconnects and the login completes."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from push.phone import PhoneSimulator
from server.demo import DEMO_IDS
from tests.e2e.conftest import ACTION_TIMEOUT_MS
from tests.support.browser import PageWatch
from tests.support.cluster import Balancer, NodeProcess, shared_settings, start_nodes
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ACTIVE = DEMO_IDS["active"]
PUSH_TIMEOUT = 15.0  # seconds for a push (or the re-sent prompt) to reach the phone
TAKEOVER_MS = 30_000  # lease (3 poll intervals) + sweep + page reconnect, with margin
# Chromium logs the events socket that the killed node dropped as a console error.
WEBSOCKET_CONSOLE_ERROR = r"WebSocket"


class Cluster:
    def __init__(self, nodes: list[NodeProcess], balancer: Balancer) -> None:
        self.nodes = nodes
        self.balancer = balancer

    def node_at(self, backend: str) -> NodeProcess:
        return next(node for node in self.nodes if node.url == backend)


@pytest_asyncio.fixture(loop_scope="session")
async def cluster(
    start_redis: Callable[..., RedisServer], tmp_path: Path
) -> AsyncIterator[Cluster]:
    redis_server = start_redis()
    balancer = Balancer([])
    env = shared_settings(
        redis_server.url, f"e2e-{uuid.uuid4().hex[:10]}:", tmp_path / "secrets", balancer.url
    )
    env["EBAS_LOGIN_TWFIDO_POLL_INTERVAL"] = "1"  # quick takeover after the kill
    nodes = [NodeProcess(name, tmp_path / name, env) for name in ("node-a", "node-b")]
    await start_nodes(nodes)
    balancer.backends = [node.url for node in nodes]
    await balancer.start()
    yield Cluster(nodes, balancer)
    await balancer.close()
    for node in nodes:
        node.stop()


async def phone_through(cluster: Cluster, tmp_path: Path) -> PhoneSimulator:
    """Return a phone connected through the balancer, enrolled on the first node's host."""
    phone = PhoneSimulator(cluster.balancer.url, ACTIVE, tmp_path / "phone")
    if not phone.enrolled:
        # Enrollment accepts only unproxied same-host requests, so it goes to a node directly.
        # The saved device state is then pointed at the balancer, as the phone app would use.
        await PhoneSimulator(cluster.nodes[0].url, ACTIVE, tmp_path / "phone").enroll()
        state = json.loads(phone.state_file.read_text(encoding="utf-8"))
        state["server"] = cluster.balancer.url
        phone.state_file.write_text(json.dumps(state), encoding="utf-8")
        phone = PhoneSimulator(cluster.balancer.url, ACTIVE, tmp_path / "phone")
    await phone.connect()
    return phone


async def start_login(page: Page, cluster: Cluster) -> tuple[str, str]:
    """Start a login on the page; return its verification code and the node that started it."""
    await page.goto(cluster.balancer.url + "/")
    await page.locator("#id-number").fill(ACTIVE)
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/logins")
    ) as started:
        await page.locator("#mobile-submit").click()
    assert (await started.value).status == 201
    code = page.locator("#verification-code")
    await expect(code).to_have_text(re.compile(r"^\d{2}$"))
    starter = next(b for m, p, b in reversed(cluster.balancer.served) if p == "/api/logins")
    return (await code.text_content() or "").strip(), starter


async def expect_portal(page: Page, wait_ms: float = ACTION_TIMEOUT_MS) -> None:
    await page.wait_for_url("**/ebas/portal", timeout=wait_ms)
    await expect(page.locator("body")).to_contain_text("王小明")


async def test_push_approved_across_nodes_reaches_portal(
    page: Page, cluster: Cluster, tmp_path: Path
) -> None:
    phone = await phone_through(cluster, tmp_path)
    code, _ = await start_login(page, cluster)
    push = await phone.next_push(PUSH_TIMEOUT)
    assert code in push["choices"]
    await phone.approve(push, code)
    await expect_portal(page)
    await phone.close()
    # Both nodes served this browser: one origin, no sticky sessions.
    assert {backend for _, _, backend in cluster.balancer.served} == set(cluster.balancer.backends)


async def test_node_killed_mid_login_completes_on_the_other(
    page: Page, watch: PageWatch, cluster: Cluster, tmp_path: Path
) -> None:
    watch.allow(WEBSOCKET_CONSOLE_ERROR)
    phone = await phone_through(cluster, tmp_path)
    code, starter = await start_login(page, cluster)
    await phone.next_push(PUSH_TIMEOUT)

    cluster.node_at(starter).kill()  # it held the poll lease, maybe the sockets too
    await phone.close()

    # The phone app reopens (through the balancer, now reaching the survivor) and is prompted
    # again with the pending push; the page reconnects its events socket by itself.
    reopened = await phone_through(cluster, tmp_path)
    push = await reopened.next_push(PUSH_TIMEOUT)
    assert code in push["choices"]
    assert (await reopened.approve(push, code))["ok"] is True
    await expect_portal(page, TAKEOVER_MS)
    await reopened.close()
    survivor = next(node for node in cluster.nodes if node.url != starter)
    assert "adopting the poll" in survivor.log_text()
