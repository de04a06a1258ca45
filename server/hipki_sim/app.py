"""HTTP side of the HiPKI simulator, and the runner that starts it with the OCSP/CRL responder.

Routes, as on the real component: ``GET /popupForm`` (the popup page), ``GET /pkcs11info``
(reader, card and certificates) and ``POST /sign`` (``MakeSignature``). Like the real component
it sends no CORS headers, so a web page can reach it only through the popup. ``/sign`` also
accepts only requests from its own origin, so no other page can use the software token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature

from server.hipki_sim.token import BAD_REQUEST, SoftToken
from server.ocsp_responder import OcspResponder
from server.testpki import Holder, TestPki, load_holder, save_holder

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_REQUEST_BYTES = 16 * 1024  # a MakeSignature request with a login challenge is well under 1 KB
LOOPBACK = "127.0.0.1"
POPUP_CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PKI_FOLDER = "card-simulator"
DEMO_HOLDER_NAME = "王小明"


def create_simulator_app(token: SoftToken) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)

    async def popup(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "popupForm.html", headers={"Content-Security-Policy": POPUP_CSP}
        )

    async def asset(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        return web.FileResponse(STATIC / name, headers={"Content-Security-Policy": POPUP_CSP})

    async def pkcs11info(request: web.Request) -> web.Response:
        return web.json_response(token.pkcs11info())

    async def sign(request: web.Request) -> web.Response:
        own_origin = f"{request.scheme}://{request.host}"
        if request.headers.get("Origin", own_origin) != own_origin:
            raise web.HTTPForbidden(text="requests are accepted only from the popup")
        try:
            body: Any = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            return web.json_response(
                {"func": "sign", "ret_code": BAD_REQUEST, "last_error": BAD_REQUEST}
            )
        return web.json_response(token.make_signature(body))

    async def card(request: web.Request) -> web.Response:
        """Insert or remove the simulated card: {"present": true|false}."""
        body = await request.json()
        token.present = bool(body.get("present", True))
        return web.json_response({"present": token.present})

    app.router.add_get("/popupForm", popup)
    app.router.add_get("/{name:popupForm\\.(js|css)}", asset)
    app.router.add_get("/pkcs11info", pkcs11info)
    app.router.add_post("/sign", sign)
    app.router.add_post("/simulator/card", card)
    return app


@dataclass
class LocalServices:
    """The simulator and the responder on loopback; ``component_url`` is the popup's origin."""

    pki: TestPki
    token: SoftToken
    responder: OcspResponder
    component_url: str
    runners: list[web.AppRunner]

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        log.info("HiPKI simulator and OCSP responder stopped")


async def start_local_services(
    data_dir: Path, *, pin: str, port: int = 0, responder_port: int = 0, id_number: str | None
) -> LocalServices:
    """Start the responder and the simulator on loopback, with the test PKI kept in ``data_dir``.

    A responder port of 0 is picked before the PKI is loaded, because the holder certificate
    carries the responder's URL; the PKI is reissued when that URL changes.
    """
    responder_port = responder_port or _free_port()
    responder_url = f"http://{LOOPBACK}:{responder_port}"
    folder = data_dir / PKI_FOLDER
    pki, holder = await asyncio.to_thread(_load_pki, folder, responder_url, id_number)

    token = SoftToken(holder, pin)
    responder = OcspResponder(pki)
    runners = []
    try:
        runners.append(await _serve(responder.app(), responder_port))
        simulator_runner = await _serve(create_simulator_app(token), port)
        runners.append(simulator_runner)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        raise
    actual_port = _bound_port(simulator_runner)
    component_url = f"http://{LOOPBACK}:{actual_port}"
    log.info("HiPKI simulator at %s, OCSP/CRL responder at %s", component_url, responder_url)
    return LocalServices(pki, token, responder, component_url, runners)


def _load_pki(folder: Path, responder_url: str, id_number: str | None) -> tuple[TestPki, Holder]:
    pki = TestPki.load_or_create(folder, responder_url)
    holder = load_holder(folder)
    if holder is None or holder.certificate.issuer != pki.ca.subject or not _same_ca(holder, pki):
        holder = pki.issue(DEMO_HOLDER_NAME, id_number)
        save_holder(folder, holder)
    return pki, holder


def _same_ca(holder: Holder, pki: TestPki) -> bool:
    try:
        holder.certificate.verify_directly_issued_by(pki.ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    return runner


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("the simulator is not listening")


def _free_port() -> int:
    # NOTE: another process could take the port between this probe and the bind. The demo then
    # fails to start, and a restart picks a new port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


async def run_until_stopped(
    data_dir: Path, *, pin: str, port: int, responder_port: int, id_number: str
) -> None:
    """Run the simulator and the responder in the foreground until the task is cancelled."""
    services = await start_local_services(
        data_dir, pin=pin, port=port, responder_port=responder_port, id_number=id_number
    )
    folder = data_dir / PKI_FOLDER
    print(f"HiPKI 元件模擬器：{services.component_url}/popupForm", flush=True)
    print(f"OCSP/CRL responder: {services.pki.responder_url}", flush=True)
    print(f"trust anchor (card.trust_anchors): {folder / 'root.pem'}", flush=True)
    print(f"issuing CA (card.intermediates): {folder / 'ca.pem'}", flush=True)
    print(f"holder certificate to enroll: {folder / 'holder.pem'}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await services.close()
