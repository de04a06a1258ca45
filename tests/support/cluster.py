"""Several ebas-login nodes as real processes on loopback ports, and a balancer in front.

``NodeProcess`` runs ``python -m server serve`` with its own data directory and the settings
that several nodes share (Redis URL and key prefix, ``twfido.aes_key``, the assertion key file).
``Balancer`` is a tiny aiohttp reverse proxy (round robin, WebSocket pass-through, dead backends
skipped) so that a browser sees one origin, as behind nginx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web

from tests.support.process import end_process, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0  # seconds for a node to answer /healthz; a cold start takes about two
STOP_TIMEOUT = 10.0  # seconds for a clean stop before SIGKILL
PROBE_INTERVAL = 0.1  # seconds between health probes while a node starts
# Hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1), plus the length it recomputes.
HOP_HEADERS = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "content-length", "host",
    }
)  # fmt: skip


def shared_settings(
    redis_url: str, prefix: str, secrets_dir: Path, public_origin: str = ""
) -> dict[str, str]:
    """Return the environment every node of one cluster needs: same Redis, keys and secrets."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    aes_file = secrets_dir / "twfido-aes.key"
    if not aes_file.exists():
        aes_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    env = {
        "EBAS_LOGIN_STORE_BACKEND": "redis",
        "EBAS_LOGIN_STORE_REDIS_URL": redis_url,
        "EBAS_LOGIN_STORE_KEY_PREFIX": prefix,
        "EBAS_LOGIN_TWFIDO_AES_KEY": aes_file.read_text().strip(),
        "EBAS_LOGIN_ASSERTION_KEY_FILE": str(secrets_dir / "assertion-key.pem"),
    }
    if public_origin:
        env["EBAS_LOGIN_SERVER_PUBLIC_ORIGIN"] = public_origin
    return env


@dataclass
class NodeProcess:
    """One ``python -m server serve`` process; ``start`` again after ``kill`` reuses its port."""

    name: str
    data_dir: Path
    env: Mapping[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def start(self) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "server", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        environment = {k: v for k, v in os.environ.items() if not k.startswith("EBAS_LOGIN_")}
        environment.update(self.env)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=environment, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"node {self.name} did not start:\n{self.log_tail()}")
            time.sleep(PROBE_INTERVAL)
        return self

    def kill(self) -> None:
        """SIGKILL: the node dies with its logins pending, as in a crash."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        end_process(process, sig, STOP_TIMEOUT)

    def _healthy(self) -> bool:
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:  # noqa: S310
                return bool(answer.status == 200)
        return False

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


async def start_nodes(nodes: list[NodeProcess]) -> None:
    """Start nodes one after the other (the first creates the shared assertion key)."""
    for node in nodes:
        await asyncio.to_thread(node.start)


class Balancer:
    """Round-robin reverse proxy on a loopback port; a backend that refuses is skipped."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self._turn = itertools.count()
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.served: list[tuple[str, str, str]] = []  # (method, path, backend) of each request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Balancer:
        self._http = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30)
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def _order(self) -> list[str]:
        start = next(self._turn) % len(self.backends)
        return self.backends[start:] + self.backends[:start]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        body = b"" if websocket else await request.read()
        for backend in self._order():
            try:
                if websocket:
                    upstream = await self._connect_websocket(request, backend)
                    self.served.append((request.method, request.path, backend))
                    return await self._relay_websocket(request, upstream)
                response = await self._proxy_http(request, backend, body)
                self.served.append((request.method, request.path, backend))
                return response
            except aiohttp.ClientConnectorError:
                continue  # dead backend: try the next one
        return web.Response(status=502, text="no backend")

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Forwarded-For"] = request.remote or ""
        return headers

    async def _proxy_http(self, request: web.Request, backend: str, body: bytes) -> web.Response:
        assert self._http is not None
        async with self._http.request(
            request.method,
            backend + request.path_qs,
            headers=self._forward_headers(request),
            data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            response = web.Response(status=upstream.status, body=payload)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS:
                    response.headers.add(key, value)
            return response

    async def _connect_websocket(
        self, request: web.Request, backend: str
    ) -> aiohttp.ClientWebSocketResponse:
        assert self._http is not None
        headers = {
            k: v
            for k, v in self._forward_headers(request).items()
            if not k.lower().startswith("sec-websocket")
        }
        return await self._http.ws_connect(backend + request.path_qs, headers=headers)

    async def _relay_websocket(
        self, request: web.Request, upstream: aiohttp.ClientWebSocketResponse
    ) -> web.StreamResponse:
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)

        async def pump(
            source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
            sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break

        tasks = [
            asyncio.create_task(pump(upstream, downstream)),
            asyncio.create_task(pump(downstream, upstream)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            code = upstream.close_code or 1011  # an upstream that died gets 1011 to the browser
            await upstream.close()
            if not downstream.closed:
                await downstream.close(code=code)
        return downstream
