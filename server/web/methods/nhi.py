"""Routes of the NHI card method: the card component's address for the page.

The page's Content-Security-Policy allows connections to this site only (``connect-src
'self'``). The response hook below adds the card component's origin to ``connect-src``, so the
page may open the component's WebSocket.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from server.errors import UnknownMethod
from server.methods.nhi import NhiMethod
from server.web.keys import METHODS

CSP_HEADER = "Content-Security-Policy"


def nhi_method(app: web.Application) -> NhiMethod | None:
    method = app.get(METHODS, {}).get("nhi")
    return method if isinstance(method, NhiMethod) else None


async def get_config(request: web.Request) -> web.Response:
    method = nhi_method(request.app)
    if method is None:
        raise UnknownMethod()
    return web.json_response(
        {
            "component_url": method.component_url,
            "simulator": method.simulator is not None,
            "max_failures": method.settings.max_failures,
            "suspend_minutes": method.settings.suspend_seconds // 60,
        },
        headers={"Cache-Control": "no-store"},
    )


def component_origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of a WebSocket URL, as CSP source expressions write it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def allow_component(request: web.Request, response: web.StreamResponse) -> None:
    """Add the card component's origin to connect-src of every page the app serves."""
    policy = response.headers.get(CSP_HEADER)
    method = nhi_method(request.app)
    if not policy or method is None or "connect-src 'self'" not in policy:
        return
    origin = component_origin(method.component_url)
    response.headers[CSP_HEADER] = policy.replace(
        "connect-src 'self'", f"connect-src 'self' {origin}", 1
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/nhi/config", get_config)
    app.on_response_prepare.append(allow_component)
