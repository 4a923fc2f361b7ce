"""The web application: the REST API under /api, the console's pages, their static
files, and the OpenAPI document (served by the box itself: nothing from the internet)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicombox.core import __version__
from dicombox.plugins.web import (
    api_actions,
    api_jobs,
    api_session,
    api_studies,
    api_system,
    auth,
    pages,
)
from dicombox.plugins.web.console import Console

STATIC = Path(__file__).parent / "static"
MODULES = (api_session, api_system, api_studies, api_jobs, api_actions, pages)
ROUTERS = tuple(module.router for module in MODULES)  # every endpoint is in one of these
DESCRIPTION = """The REST API of a dicombox: what it stores, its jobs and devices, and what
an operator can do. Sign in with `POST /api/login` (a session cookie and a CSRF token to
send as `X-CSRF-Token` with every state-changing request) or send HTTP Basic credentials
with each request. Roles: viewer (GET), operator (actions, jobs), admin (configuration
check, users)."""

# Pages and API alike: no framing, no sniffing, nothing from elsewhere, no caching of
# patient data by the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS (and HSTS over HTTPS) to every response that lacks them."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.headers = dict(SECURITY_HEADERS)
        if https:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_api(request: Request) -> bool:
    return auth.is_api_path(request.url.path)


def create_app(console: Console) -> FastAPI:
    app = FastAPI(
        title=f"dicombox {console.box.config.box.ae_title}",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: not here
        redoc_url=None,
        openapi_url=None,  # served below, to signed-in users only
    )
    app.state.console = console
    app.state.stopping = threading.Event()  # set at stop: live streams end
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/openapi.json", tags=["box"], dependencies=[Depends(auth.viewer)])
    def openapi_document() -> dict[str, Any]:
        """This API's OpenAPI document: every endpoint. Viewer."""
        return app.openapi()

    @app.exception_handler(auth.NotSignedIn)
    async def not_signed_in(request: Request, exc: auth.NotSignedIn) -> Response:
        if _is_api(request):
            detail = "sign in first: POST /api/login, or send HTTP Basic credentials"
            return JSONResponse({"detail": detail}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        context = {"status": exc.status_code, "detail": exc.detail}
        html = pages.templates.get_template("error.html").render(**context)
        return HTMLResponse(html, status_code=exc.status_code)

    app.add_middleware(SecurityHeaders, https=console.secure)
    return app
