"""Who is asking, and may they: sessions, HTTP Basic for scripts, roles and CSRF.

- A browser logs in once (``POST /login`` or ``POST /api/login``) and then carries the
  session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page
  sends it), Secure when the console speaks HTTPS.
- Every state-changing request made with the cookie must also carry the session's CSRF
  token: the ``X-CSRF-Token`` header (the console's scripts, API clients) or the
  ``csrf_token`` field of a form.
- A script may instead send HTTP Basic credentials with each API request (``/api/…``
  and ``/openapi.json``). Nothing is kept between requests then, and no browser sends
  them by itself (the box never asks for them with a challenge), so no CSRF token is
  needed.
- Roles: viewer may look (GET), operator may also act (actions, cancel and retry jobs),
  admin may also check configurations and manage users.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from dicombox.plugins.web.accounts import User
from dicombox.plugins.web.console import Console

log = logging.getLogger("dicombox.web")
COOKIE = "dicombox_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Shown on the login page: whoever reads it cannot log in, and has no shell on the box.
NO_ACCOUNTS = (
    "no console account exists yet: ask whoever installed or looks after this box to "
    "create the first administrator account"
)


@dataclass(frozen=True)
class Principal:
    user: User
    csrf: str  # the session's token; "" for HTTP Basic
    via: str  # session | basic
    session_id: str = ""


class NotSignedIn(Exception):
    """No session and no credentials: a page sends the browser to the login form, the
    API answers 401."""


class LoginRefused(Exception):
    """A login that did not succeed; the message is safe to show (it never says whether
    the name exists)."""


def console_of(request: Request) -> Console:
    return request.app.state.console


def login(console: Console, name: str, password: str) -> User:
    """The user ``name`` if ``password`` is theirs; LoginRefused otherwise."""
    if console.accounts.count() == 0:
        raise LoginRefused(NO_ACCOUNTS)
    if console.throttle.blocked(name):
        raise LoginRefused(f"too many failed logins as {name!r}: try again in a few minutes")
    user = console.accounts.authenticate(name, password)
    if user is None:
        console.throttle.failed(name)
        log.warning("console: failed login as %r", name)
        console.box.bus.publish("web.login_failed", user=name)
        raise LoginRefused("wrong name or password")
    console.throttle.succeeded(name)
    log.info("console: %s logged in (%s)", name, user.role)
    console.box.bus.publish("web.login", user=name, role=user.role)
    return user


def start_session(console: Console, user: User, response: Response) -> str:
    """Open a session for ``user`` and set its cookie on ``response``; returns its CSRF
    token."""
    session_id, session = console.sessions.open(user)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(console.settings.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=console.secure,
    )
    return session.csrf


def end_session(console: Console, principal: Principal, response: Response) -> None:
    if principal.session_id:
        console.sessions.close(principal.session_id)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def is_api_path(path: str) -> bool:
    """The API's paths, where scripts may send Basic credentials: /api/… and the OpenAPI
    document that describes them."""
    return path.startswith("/api/") or path == "/openapi.json"


def identify(request: Request) -> Principal | None:
    """The session of the request's cookie, or (API only) its Basic credentials."""
    console = console_of(request)
    session_id = request.cookies.get(COOKIE, "")
    session = console.sessions.get(session_id)
    if session is not None:
        return Principal(session.user, session.csrf, "session", session_id)
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic " and is_api_path(request.url.path):
        try:
            name, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise HTTPException(401, "malformed Basic credentials") from None
        try:
            return Principal(login(console, name, password), "", "basic")
        except LoginRefused as exc:
            raise HTTPException(401, str(exc)) from None
    return None


def requires(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the signed-in principal, if their role includes ``role`` and, for
    a state-changing request made with a session, the CSRF token is right."""

    async def dependency(request: Request) -> Principal:
        # Database look-ups and scrypt (Basic) are slow: off the event loop.
        principal = await run_in_threadpool(identify, request)
        if principal is None:
            raise NotSignedIn()
        if not principal.user.may(role):
            raise HTTPException(
                403, f"this needs the {role} role; {principal.user.name} is {principal.user.role}"
            )
        if request.method not in SAFE_METHODS and principal.via == "session":
            token = request.headers.get(CSRF_HEADER, "")
            if not token and _is_form(request):
                token = str((await request.form()).get(CSRF_FIELD, ""))
            if not token or not hmac.compare_digest(token, principal.csrf):
                raise HTTPException(
                    403,
                    f"missing or wrong CSRF token: send the session's token as {CSRF_HEADER} "
                    f"(or the {CSRF_FIELD} form field)",
                )
        return principal

    return dependency


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


viewer = requires("viewer")
operator = requires("operator")
admin = requires("admin")
# Endpoint parameters: ``who: Operator`` is the signed-in operator (or admin).
Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
Admin = Annotated[Principal, Depends(admin)]
