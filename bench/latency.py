"""Approval → browser notified latency with many browsers waiting, beside a raw relay baseline.

Three set-ups, measured in one run on loopback:

(a) one node, memory store: browsers and phones on the same ``python -m server serve``;
(b) two nodes with one Redis: logins started on node A, browsers' WebSockets on node A, phones
    (and so the approvals) on node B;
(c) baseline: a minimal aiohttp server that relays a message from one sender socket to one of
    the waiting sockets, with as many sockets waiting.

For (a) and (b), every browser starts a mobile login (own valid ID number, own enrolled phone),
opens its events WebSocket and waits. Then the phones approve one after another; each sample is
the time from the approve frame leaving the phone to the ``approved`` state reaching that
login's browser socket. The poll interval is set far above the run, so every figure is the
event path, never a poll. Everything listens on 127.0.0.1.

    .venv/bin/python -m bench.latency --browsers 1000

The figures depend on the machine; bench/README.md records them with its description.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from push.phone import PhoneSimulator
from server.idnumber import checksum_ok
from tests.support.cluster import NodeProcess, free_port, shared_settings
from tests.support.redis_server import start_redis_server

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_BROWSERS = 5000  # bounds sockets and memory of one run
SETUP_CONCURRENCY = 50  # enrollments, connections and starts in flight at once
STEP_TIMEOUT = 15.0  # seconds one approval may take to reach its browser before the run fails
RUN_DEADLINE = 900.0  # seconds for the whole run; a hung set-up ends it
POLL_INTERVAL = "600"  # seconds: far above a run, so no result arrives by polling
FILES_PER_BROWSER = 4  # browser socket + phone socket, on both ends, in this process and children


def valid_id_numbers(count: int) -> list[str]:
    """Return ``count`` distinct valid ID numbers (letter A, sex digit 1, serial, check digit)."""
    numbers = []
    for serial in range(count):
        stem = f"A1{serial:07d}"
        numbers.append(next(stem + str(d) for d in range(10) if checksum_ok(stem + str(d))))
    return numbers


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def raise_open_file_limit(needed: int) -> int:
    """Raise the soft open-file limit toward ``needed`` within the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def bounded(count: int, work: Callable[[int], Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(index: int) -> Any:
        async with gate:
            return await work(index)

    return await asyncio.gather(*(one(i) for i in range(count)))


# -- (a) and (b): the product ------------------------------------------------------------------


async def measure_product(
    browser_url: str, phone_url: str, id_numbers: list[str], state_dir: Path
) -> list[float]:
    """Start one login per ID on ``browser_url``, phones on ``phone_url``; return latencies."""
    count = len(id_numbers)
    phones = [PhoneSimulator(phone_url, n, state_dir) for n in id_numbers]
    await bounded(count, lambda i: phones[i].enroll(f"bench-{i}"))
    await bounded(count, lambda i: phones[i].connect())

    connector = aiohttp.TCPConnector(limit=0)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http:

        async def start(i: int) -> dict[str, Any]:
            async with http.post(
                f"{browser_url}/api/logins",
                json={"method": "mobile", "id_number": id_numbers[i]},
                headers={"Origin": browser_url},
            ) as response:
                login = dict(await response.json())
            if response.status != 201 or login.get("push_status") != "sent":
                raise RuntimeError(f"login start failed: {response.status} {login}")
            return login

        first = await start(0)  # sets the binding cookie that every later start reuses
        logins = [first, *await bounded(count - 1, lambda i: start(i + 1))]
        pushes = await bounded(count, lambda i: phones[i].next_push(STEP_TIMEOUT))
        arrived = [asyncio.get_running_loop().create_future() for _ in range(count)]

        async def wait_browser(i: int) -> aiohttp.ClientWebSocketResponse:
            ws_url = browser_url.replace("http", "ws", 1) + logins[i]["events_url"]
            ws = await http.ws_connect(ws_url, origin=browser_url)
            first = json.loads((await ws.receive()).data)
            if first["state"] != "pending":
                raise RuntimeError(f"login {i} not pending: {first['state']}")
            return ws

        sockets = await bounded(count, wait_browser)

        async def read(i: int) -> None:
            async for message in sockets[i]:
                if json.loads(message.data)["state"] == "approved":
                    arrived[i].set_result(time.perf_counter())
                    return

        readers = [asyncio.create_task(read(i)) for i in range(count)]
        latencies = []
        try:
            for i in range(count):
                sent = time.perf_counter()
                result = await phones[i].approve(pushes[i], logins[i]["verification_code"])
                if not result.get("ok"):
                    raise RuntimeError(f"approval {i} rejected: {result}")
                latencies.append(await asyncio.wait_for(arrived[i], STEP_TIMEOUT) - sent)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            await asyncio.gather(*(p.close() for p in phones), return_exceptions=True)
    return latencies


def node_env(**extra: str) -> dict[str, str]:
    return {
        "EBAS_LOGIN_SERVER_START_LIMIT": "1000000",  # every browser starts from 127.0.0.1
        "EBAS_LOGIN_TWFIDO_PUSH_LIMIT": "1000",
        "EBAS_LOGIN_TWFIDO_POLL_INTERVAL": POLL_INTERVAL,
        "EBAS_LOGIN_ACCOUNTS_SEED_DEMO": "false",
        **extra,
    }


async def single_node(count: int, work: Path) -> list[float]:
    node = NodeProcess("single", work / "single", node_env())
    await asyncio.to_thread(node.start)
    try:
        return await measure_product(node.url, node.url, valid_id_numbers(count), work / "p1")
    finally:
        node.stop()


async def two_nodes(count: int, work: Path) -> list[float]:
    redis_server = await asyncio.to_thread(start_redis_server, work / "redis")
    env = node_env(**shared_settings(redis_server.url, "bench:", work / "secrets"))
    a = NodeProcess("node-a", work / "node-a", env)
    b = NodeProcess("node-b", work / "node-b", env)
    try:
        await asyncio.to_thread(a.start)
        await asyncio.to_thread(b.start)
        return await measure_product(a.url, b.url, valid_id_numbers(count), work / "p2")
    finally:
        a.stop()
        b.stop()
        redis_server.stop()


# -- (c): the raw relay baseline ---------------------------------------------------------------


def relay_app() -> web.Application:
    """GET /wait/{n}: a waiting socket. GET /send: each text frame "n" goes to socket n."""
    waiting: dict[str, web.WebSocketResponse] = {}

    async def wait(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        waiting[request.match_info["n"]] = ws
        await ws.send_str("ready")
        async for _ in ws:
            pass
        return ws

    async def send(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await waiting[message.data].send_str("approved")
        return ws

    app = web.Application()
    app.router.add_get("/wait/{n}", wait)
    app.router.add_get("/send", send)
    return app


async def relay_baseline(count: int) -> list[float]:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.latency", "--relay-server", str(port), cwd=REPO_ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for _ in range(100):
                try:
                    sender = await http.ws_connect(f"{base}/send")
                    break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError("relay server did not start")

            async def join(i: int) -> aiohttp.ClientWebSocketResponse:
                ws = await http.ws_connect(f"{base}/wait/{i}")
                assert (await ws.receive()).data == "ready"
                return ws

            receivers = await bounded(count, join)
            latencies = []
            for i in range(count):
                sent = time.perf_counter()
                await sender.send_str(str(i))
                await asyncio.wait_for(receivers[i].receive(), STEP_TIMEOUT)
                latencies.append(time.perf_counter() - sent)
            await asyncio.gather(*(ws.close() for ws in receivers), sender.close())
            return latencies
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


# -- report ------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()}"
    )


def report(figures: dict[str, list[float]], count: int) -> None:
    baseline = figures["(c) raw aiohttp relay (baseline)"]
    base50, base99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    print(f"machine: {machine()}")
    print(f"browsers waiting: {count}; samples per set-up: {count}")
    print(f"{'set-up':46} {'p50 ms':>9} {'p99 ms':>9} {'p50 ×':>7} {'p99 ×':>7}")
    for name, samples in figures.items():
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        print(
            f"{name:46} {p50 * 1000:9.2f} {p99 * 1000:9.2f} {p50 / base50:7.1f} {p99 / base99:7.1f}"
        )


async def run(count: int) -> None:
    limit = raise_open_file_limit(count * FILES_PER_BROWSER + 1024)
    if limit < count * FILES_PER_BROWSER:
        print(f"warning: open-file limit {limit} may be too low for {count} browsers")
    with tempfile.TemporaryDirectory(prefix="ebas-bench-") as folder:
        work = Path(folder)
        figures = {
            "(a) one node, memory store": await single_node(count, work),
            "(b) two nodes via Redis (phone B, browser A)": await two_nodes(count, work),
            "(c) raw aiohttp relay (baseline)": await relay_baseline(count),
        }
    report(figures, count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browsers", type=int, default=1000)
    parser.add_argument("--relay-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.relay_server:
        web.run_app(relay_app(), host="127.0.0.1", port=args.relay_server, print=None)
        return 0
    if not 1 <= args.browsers <= MAX_BROWSERS:
        parser.error(f"--browsers must be between 1 and {MAX_BROWSERS}")
    asyncio.run(asyncio.wait_for(run(args.browsers), RUN_DEADLINE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
