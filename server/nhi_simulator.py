"""A local stand-in for the NHI card component: a WebSocket at ``/echo`` with test cards.

It speaks the component's text protocol (see ``server.nhi_card``) with one card "inserted" at
a time, so the login page, the demo and the browser tests run the NHI method for real. Tests
start it in-process (``async with NhiCardSimulator(cards) as simulator``); the demo starts it
from the NHI method; ``ebas-login nhi-simulator`` runs it alone.

Control routes for tests and the demo: ``GET /cards`` lists the cards, ``POST /card`` with
``{"card_number": "..."}`` inserts one and ``{"card_number": null}`` removes it.

NOTE: the simulator accepts WebSocket connections from any Origin. The real component accepts
only pages on ``*.gov.tw``, as one public reimplementation (Inndy/twnhi-smartcard-agent) shows,
so a production login page must be served from a government site.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from datetime import date
from types import TracebackType

from aiohttp import WSMsgType, web

from server.nhi_card import (
    COMPONENT_VERSION,
    H_SIGN_LENGTH,
    RANDOM_DIGITS,
    BasicData,
    encode_basic_reply,
    is_random,
)

log = logging.getLogger(__name__)

ECHO_PATH = "/echo"
MAX_COMMAND_LENGTH = 256  # the longest command, H_Sign?Random=..., is under 40 characters
# Error codes the simulator sends. NOTE: the real component's codes are not published; these two
# are the ones a public reimplementation (Inndy/twnhi-smartcard-agent) uses.
ERROR_NO_CARD = "8013"  # no reader or no card
ERROR_UNKNOWN_COMMAND = "9999"


def demo_cards() -> list[BasicData]:
    """Return the test cards: two for demo ID numbers with registrations, one with none."""
    from server.demo import DEMO_IDS

    return [
        BasicData(
            "000011112222", "王小明", DEMO_IDS["active"], date(1979, 3, 15), "M", date(2015, 6, 1)
        ),
        BasicData(
            "000033334444",
            "林美玉",
            DEMO_IDS["no_account"],
            date(1988, 11, 2),
            "F",
            date(2019, 1, 20),
        ),
        BasicData(
            "000055556666",
            "陳安娜",
            DEMO_IDS["active_resident"],
            date(1992, 7, 30),
            "F",
            date(2021, 3, 5),
        ),
    ]


def h_sign_value(card: BasicData, random: str) -> str:
    """Return the simulated card's 256-character H_Sign over ``random``.

    A stand-in only: 128 bytes derived by HMAC-SHA-512 from the card number, written as hex.
    """
    key = hashlib.sha256(b"nhi-simulator:" + card.card_number.encode()).digest()
    first = hmac.new(key, b"1" + random.encode(), hashlib.sha512).digest()
    second = hmac.new(key, b"2" + random.encode(), hashlib.sha512).digest()
    value = (first + second).hex().upper()
    assert len(value) == H_SIGN_LENGTH
    return value


class NhiCardSimulator:
    def __init__(
        self,
        cards: Sequence[BasicData],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        inserted: str | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the NHI card simulator listens on a loopback address only")
        self.cards = {card.card_number: card for card in cards}
        if inserted is None and cards:
            inserted = cards[0].card_number
        self.inserted = inserted
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{ECHO_PATH}"

    @property
    def control_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/card"

    def insert(self, card_number: str | None) -> None:
        """Insert a known card, or remove the card with None."""
        if card_number is not None and card_number not in self.cards:
            raise KeyError(card_number)
        self.inserted = card_number

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(ECHO_PATH, self._echo)
        app.router.add_get("/", self._hello)
        app.router.add_get("/cards", self._list)
        app.router.add_post("/card", self._insert)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn the port picked for port 0
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]
        log.info("NHI card simulator listening at %s (%d cards)", self.url, len(self.cards))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("NHI card simulator stopped")

    async def __aenter__(self) -> NhiCardSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- protocol --------------------------------------------------------------------------------

    def answer(self, command: str) -> str:
        """Return the reply to one command, as the component would send it."""
        if command == "GetVersion":
            return f"GetVersion:{COMPONENT_VERSION}"
        if command == "GetRandom":
            digits = "".join(secrets.choice("0123456789") for _ in range(RANDOM_DIGITS))
            return f"GetRandom:{digits}"
        if command not in ("GetBasic",) and not command.startswith("H_Sign?Random="):
            return ERROR_UNKNOWN_COMMAND

        card = self.cards.get(self.inserted) if self.inserted else None
        if card is None:
            return ERROR_NO_CARD
        if command == "GetBasic":
            return encode_basic_reply(card)
        random = command.partition("=")[2]
        if not is_random(random):
            return ERROR_UNKNOWN_COMMAND
        return f"H_Sign:{h_sign_value(card, random)}"

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_COMMAND_LENGTH)
        await ws.prepare(request)
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            await ws.send_str(self.answer(message.data.strip()))
        return ws

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(text="NHI card component simulator\n")

    async def _list(self, request: web.Request) -> web.Response:
        cards = [{"card_number": c.card_number, "name": c.name} for c in self.cards.values()]
        return web.json_response({"inserted": self.inserted, "cards": cards})

    async def _insert(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            self.insert(body.get("card_number"))
        except (ValueError, AttributeError, KeyError):
            return web.json_response({"error": "unknown_card"}, status=400)
        return web.json_response({"inserted": self.inserted})
