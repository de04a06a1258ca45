"""Phone simulator: its saved state and its CLI, run as subprocesses against a live authority."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import qr
from push import checksum
from push import ticket as ticket_codec
from push.authority import create_authority_app
from push.phone import PhoneSimulator

REPO = Path(__file__).resolve().parents[2]
KEY = bytes(range(1, 33))
SERVICE_ID = "cli-test-sp"
ID_NUMBER = "A123456789"
HINT = "全國主計網(eBAS) 登入，驗證碼 37"
CLI_TIMEOUT = 30.0  # seconds one CLI run may take before the test fails


class Server:
    def __init__(self, url: str, state_dir: Path) -> None:
        self.url = url
        self.state_dir = state_dir

    async def call(self, name: str, order: tuple[str, ...], **fields: Any) -> dict[str, Any]:
        body = {"transaction_id": str(uuid.uuid4()), "sp_service_id": SERVICE_ID, **fields}
        body["sp_checksum"] = checksum.make(KEY, body, order, random_iv=False)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/twfido/moise/sp/{name}", json=body) as response,
        ):
            answer: dict[str, Any] = await response.json()
        return answer

    async def push(self) -> str:
        answer = await self.call(
            "requestAthOrSignPush", checksum.ATH03_SP, id_num=ID_NUMBER, op_code="ATH", hint=HINT
        )
        assert answer["error_code"] == "0", answer
        return str(answer["result"]["sp_ticket"])

    async def result_code(self, sp_ticket: str) -> str:
        ticket = ticket_codec.decode(sp_ticket)
        answer = await self.call(
            "getAthOrSignResult",
            checksum.ATH02_SP,
            transaction_id=ticket.transaction_id,
            sp_ticket_id=ticket.sp_ticket_id,
        )
        return str(answer["error_code"])

    def cli(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "push.phone", *args, "--id", ID_NUMBER,
            "--server", self.url, "--state-dir", str(self.state_dir),
        ]  # fmt: skip


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    root = web.Application()
    authority = create_authority_app(
        data_dir=tmp_path / "data", sp_service_id=SERVICE_ID, aes_key=KEY
    )
    root.add_subapp("/twfido", authority)
    test_server = TestServer(root, host="127.0.0.1")
    await test_server.start_server()
    yield Server(str(test_server.make_url("")).rstrip("/"), tmp_path / "phone-state")
    await test_server.close()


async def run(command: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """Run a CLI command to the end; return its exit code and its JSON lines."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert stderr == b"" or process.returncode != 0, stderr.decode()
    return process.returncode, lines


async def start_listener(command: list[str]) -> asyncio.subprocess.Process:
    """Start ``listen`` and return once it prints that it is listening."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), CLI_TIMEOUT)
        assert line, (await process.stderr.read()).decode() if process.stderr else "no output"
        if json.loads(line)["event"] == "listening":
            return process


async def finish(process: asyncio.subprocess.Process) -> tuple[int, list[dict[str, Any]]]:
    stdout, _ = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in stdout.decode().splitlines()]


async def test_cli_enroll_saves_private_state(server: Server) -> None:
    code, lines = await run(server.cli("enroll"))

    state_file = server.state_dir / f"{ID_NUMBER}.json"
    assert code == 0
    assert lines[0]["event"] == "enrolled"
    assert state_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(state_file.read_text())["device_id"] == lines[0]["device_id"]


async def test_cli_listen_approves_with_code(server: Server) -> None:
    await run(server.cli("enroll"))
    listener = await start_listener(server.cli("listen", "--approve", "--code", "37"))

    sp_ticket = await server.push()
    code, lines = await finish(listener)

    assert code == 0
    assert [line["event"] for line in lines] == ["push", "result"]
    assert "37" in lines[0]["choices"]
    assert lines[1]["reason"] == "approved"
    assert await server.result_code(sp_ticket) == "0"


async def test_cli_listen_denies(server: Server) -> None:
    await run(server.cli("enroll"))
    listener = await start_listener(server.cli("listen", "--deny"))

    sp_ticket = await server.push()
    code, lines = await finish(listener)

    assert code == 0
    assert lines[-1]["reason"] == "denied"
    assert await server.result_code(sp_ticket) == "SP-API-ATH-02-APP_USER_CANCEL"


async def test_cli_listen_times_out(server: Server) -> None:
    code, lines = await run(server.cli("listen", "--timeout", "0.5"))

    assert code == 1
    assert [line["event"] for line in lines] == ["enrolled", "listening", "timeout"]


async def test_cli_scan_image_approves(server: Server, tmp_path: Path) -> None:
    await run(server.cli("enroll"))
    answer = await server.call(
        "getSpTicket", checksum.ATH01_SP, id_num=ID_NUMBER, op_code="ATH", op_mode="I-SCAN",
        hint=HINT,
    )  # fmt: skip
    sp_ticket = answer["result"]["sp_ticket"]
    image = tmp_path / "qr.png"
    qr.build(qr.qr_payload(sp_ticket)).save(
        str(image), kind="png", scale=qr.SCALE, border=qr.BORDER
    )

    code, lines = await run(server.cli("scan", "--image", str(image), "--code", "37"))

    assert code == 0
    assert lines[-1]["reason"] == "approved"
    assert await server.result_code(sp_ticket) == "0"


async def test_cli_scan_with_wrong_code_fails(server: Server) -> None:
    await run(server.cli("enroll"))
    answer = await server.call(
        "getSpTicket", checksum.ATH01_SP, id_num=ID_NUMBER, op_code="ATH", op_mode="I-SCAN",
        hint=HINT,
    )  # fmt: skip
    sp_ticket = answer["result"]["sp_ticket"]

    code, lines = await run(server.cli("scan", "--payload", sp_ticket, "--code", "99"))

    assert code == 1
    assert lines[-1]["reason"] == "wrong_code"
    assert await server.result_code(sp_ticket) == "SP-API-ATH-02-APP_USER_CANCEL"


async def test_simulator_reuses_saved_device(server: Server) -> None:
    first = PhoneSimulator(server.url, ID_NUMBER, server.state_dir)
    await first.enroll()
    second = PhoneSimulator(server.url, ID_NUMBER, server.state_dir)

    await second.connect()
    await second.close()

    assert second.device_id == first.device_id


async def test_simulator_ignores_state_of_other_server(server: Server) -> None:
    first = PhoneSimulator(server.url, ID_NUMBER, server.state_dir)
    await first.enroll()

    elsewhere = PhoneSimulator("http://127.0.0.1:1", ID_NUMBER, server.state_dir)

    assert not elsewhere.enrolled


# -- the browser page ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# The main app's policy: the page must work with no inline script or style.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@pytest.fixture
async def page_server(tmp_path: Path) -> AsyncIterator[Server]:
    @web.middleware
    async def strict_csp(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    async def phone_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(REPO / "static" / "phone.html")

    root = web.Application(middlewares=[strict_csp])
    root.router.add_get("/phone", phone_page)
    root.router.add_static("/static/", REPO / "static")
    root.add_subapp(
        "/twfido",
        create_authority_app(data_dir=tmp_path / "data", sp_service_id=SERVICE_ID, aes_key=KEY),
    )
    test_server = TestServer(root, host="127.0.0.1")
    await test_server.start_server()
    yield Server(str(test_server.make_url("")).rstrip("/"), tmp_path / "phone-state")
    await test_server.close()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
async def test_phone_page_approves_push_and_scan(page_server: Server) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = await browser.new_page(viewport={"width": 430, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

        await page.goto(page_server.url + "/phone")
        await page.fill("#id-number", ID_NUMBER)
        await page.click("#enroll-button")
        await page.locator("#status", has_text="已連線").wait_for(timeout=10_000)

        sp_ticket = await page_server.push()
        await page.locator("#prompt:not([hidden])").wait_for(timeout=10_000)
        hint = await page.text_content("#prompt-hint")
        codes = await page.locator(".choice").all_text_contents()
        await page.click(".choice[data-code='37']")
        await page.locator("#result", has_text="已確認登入").wait_for(timeout=10_000)
        push_result = await page_server.result_code(sp_ticket)

        answer = await page_server.call(
            "getSpTicket", checksum.ATH01_SP, id_num=ID_NUMBER, op_code="ATH",
            op_mode="I-SCAN", hint="全國主計網(eBAS) 登入",
        )  # fmt: skip
        qr_ticket = answer["result"]["sp_ticket"]
        await page.fill("#scan-payload", qr.qr_payload(qr_ticket))
        await page.click("#scan-button")
        await page.locator("#prompt-hint", has_text="全國主計網(eBAS)").wait_for(timeout=10_000)
        await page.click("#deny-button")
        await page.locator("#result", has_text="已拒絕").wait_for(timeout=10_000)
        qr_result = await page_server.result_code(qr_ticket)
        await browser.close()

    assert hint is not None and "37" not in hint
    assert "37" in codes
    assert push_result == "0"
    assert qr_result == "SP-API-ATH-02-APP_USER_CANCEL"
    assert problems == []
