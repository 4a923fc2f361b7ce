"""The box as a whole: status, devices, audit trail, log, configuration, users."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from dicombox.core.box import load_plugins_and_config
from dicombox.core.config import ConfigError
from dicombox.plugins.web import auth
from dicombox.plugins.web.accounts import ROLES, AccountError
from dicombox.plugins.web.present import audit_records, config_view
from dicombox.plugins.web.status import dashboard

router = APIRouter(prefix="/api", tags=["box"])


@router.get("/status", dependencies=[Depends(auth.viewer)])
def status(request: Request) -> dict[str, Any]:
    """What the dashboard shows: identity, totals, throughput (images per minute over
    the last hour), disk, jobs, last failure, and every plugin's status lines. Viewer."""
    console = auth.console_of(request)
    return {**dashboard(console.box, console.url), "devices": _devices(request)}


def _devices(request: Request) -> list[dict[str, Any]]:
    return [d.as_dict() for d in auth.console_of(request).devices.all()]


@router.get("/devices", dependencies=[Depends(auth.viewer)])
def devices(request: Request) -> list[dict[str, Any]]:
    """Burners and printers (as their plugins describe them for the front panel), USB
    sticks, the front panel: each with its kind, name and state. Viewer."""
    return _devices(request)


@router.get("/audit", dependencies=[Depends(auth.viewer)])
def audit(
    request: Request, limit: Annotated[int, Query(ge=1, le=10000)] = 200, event: str = ""
) -> list[dict[str, Any]]:
    """The newest audit records (newest first), of one ``event`` kind if given
    (association-start, instance-stored, instances-forwarded, job-failed …). Viewer."""
    return audit_records(auth.console_of(request).box.audit.path, limit, event)


@router.get("/log", dependencies=[Depends(auth.viewer)])
def log_records(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 200, level: str = ""
) -> list[dict[str, Any]]:
    """The supervisor's newest log records (newest first), at ``level`` or above.
    Viewer."""
    return auth.console_of(request).logs.records(limit, level)


@router.get("/config", dependencies=[Depends(auth.viewer)])
def config(request: Request) -> dict[str, Any]:
    """The effective configuration, every section with its defaults filled in; values
    named *key*, *password*, *secret* or *token* are masked. Read-only. Viewer."""
    return config_view(auth.console_of(request).box.config)


class ProposedConfig(BaseModel):
    toml: str = Field(description="a whole configuration file, as TOML text")


@router.post("/config/check", dependencies=[Depends(auth.admin)])
def config_check(body: ProposedConfig) -> dict[str, Any]:
    """``dicombox config check`` of a proposed configuration: {"ok": true, "summary"} or
    {"ok": false, "error"} naming the key, the value and what is allowed. Nothing is
    changed. Admin."""
    return check_config_text(body.toml)


def check_config_text(text: str) -> dict[str, Any]:
    """Validate ``text`` as the box would at start, with the plugins it would load."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "proposed.toml"
        path.write_text(text, encoding="utf-8")
        try:
            proposed, _, infos = load_plugins_and_config(path)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc).replace(f"{path}: ", "", 1)}
    plugins = ", ".join(i.name for i in infos if i.enabled)
    summary = (
        f"OK ({len(proposed.remote)} remote(s), {len(proposed.route)} route(s), plugins: {plugins})"
    )
    return {"ok": True, "summary": summary}


class NewUser(BaseModel):
    name: str
    role: str = Field(description=" | ".join(ROLES))
    password: str = Field(min_length=1)


@router.get("/users", dependencies=[Depends(auth.admin)])
def users(request: Request) -> list[dict[str, Any]]:
    """The console's accounts and their roles (never their passwords). Admin."""
    found = auth.console_of(request).accounts.list()
    return [{"name": u.name, "role": u.role, "created_at": u.created_at,
             "last_login": u.last_login} for u in found]  # fmt: skip


@router.post("/users", status_code=201)
def add_user(body: NewUser, request: Request, who: auth.Admin) -> Any:
    """Add an account. Admin."""
    console = auth.console_of(request)
    try:
        user = console.accounts.add(body.name, body.role, body.password)
    except AccountError as exc:
        raise HTTPException(400, str(exc)) from None
    console.box.bus.publish("web.user_added", user=who.user.name, name=user.name, role=user.role)
    return {"name": user.name, "role": user.role}


@router.delete("/users/{name}")
def remove_user(name: str, request: Request, who: auth.Admin) -> Any:
    """Remove an account and end its sessions. Admin (not their own)."""
    if name == who.user.name:
        raise HTTPException(400, "you cannot remove your own account")
    console = auth.console_of(request)
    try:
        console.accounts.remove(name)
    except AccountError as exc:
        raise HTTPException(404, str(exc)) from None
    console.box.bus.publish("web.user_removed", user=who.user.name, name=name)
    return {"ok": True}
