"""Logging in and out through the API (the console's pages have their own forms)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from dicombox.plugins.web import auth
from dicombox.plugins.web.auth import LoginRefused

router = APIRouter(prefix="/api", tags=["session"])


class Credentials(BaseModel):
    name: str
    password: str


@router.post("/login")
async def api_login(credentials: Credentials, request: Request, response: Response) -> Any:
    """Open a session: sets the session cookie and returns the CSRF token that every
    state-changing request with that cookie must send as ``X-CSRF-Token``. Anyone."""
    console = auth.console_of(request)
    try:
        user = await run_in_threadpool(auth.login, console, credentials.name, credentials.password)
    except LoginRefused as exc:
        raise HTTPException(403, str(exc)) from None
    csrf = await run_in_threadpool(auth.start_session, console, user, response)
    return {"name": user.name, "role": user.role, "csrf_token": csrf}


@router.post("/logout")
def api_logout(request: Request, response: Response, who: auth.Viewer) -> Any:
    """Close this session. Any role (with the CSRF token)."""
    auth.end_session(auth.console_of(request), who, response)
    return {"ok": True}


@router.get("/me")
def api_me(who: auth.Viewer) -> Any:
    """Who is signed in, their role, and (with a session) the CSRF token. Viewer."""
    return {"name": who.user.name, "role": who.user.role, "via": who.via, "csrf_token": who.csrf}
