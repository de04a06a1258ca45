"""Pages and files: the login page, the phone simulator, static files, JWKS, health probes."""

from __future__ import annotations

from aiohttp import web

from server.web.keys import ASSERTIONS, METHODS, SETTINGS, STORE


def setup_site_routes(app: web.Application) -> None:
    static_dir = app[SETTINGS].server.static_dir

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static_dir / "index.html")

    async def phone(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static_dir / "phone.html")

    async def openapi(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            static_dir / "openapi.yaml", headers={"Content-Type": "application/yaml"}
        )

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(
            request.app[ASSERTIONS].jwks(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def methods(request: web.Request) -> web.Response:
        enabled = request.app[METHODS]
        return web.json_response({"methods": list(enabled.keys())})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = await request.app[STORE].ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    app.router.add_get("/", index)
    app.router.add_get("/phone", phone)
    app.router.add_get("/api/openapi.yaml", openapi)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/api/methods", methods)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_static("/static/", static_dir, follow_symlinks=False)
