"""The console's pages: server-rendered HTML over the same functions as the API.

Forms carry the session's CSRF token in a hidden field; an action's result is shown
on the next page (post, redirect, get), so a reload never repeats it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from dicombox.core.jobs import QUEUED, RUNNING
from dicombox.plugins.web import actions, auth
from dicombox.plugins.web.actions import ActionError
from dicombox.plugins.web.api_system import check_config_text
from dicombox.plugins.web.auth import LoginRefused, Principal
from dicombox.plugins.web.present import audit_records, config_view, job_views
from dicombox.plugins.web.search import FORM_KEYS, SearchError, search_studies, series_of
from dicombox.plugins.web.search import study_row as find_study
from dicombox.plugins.web.status import dashboard
from dicombox.plugins.web.verbs import VerbError
from dicombox.plugins.web.worklist import WorklistError, worklist_items

router = APIRouter(tags=["console pages"], default_response_class=HTMLResponse)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "–"


def _dicom_date(text: str | None) -> str:
    text = str(text or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _dicom_time(text: str | None) -> str:
    text = str(text or "")
    return f"{text[:2]}:{text[2:4]}" if len(text) >= 4 and text[:4].isdigit() else text


def _person(name: str | None) -> str:
    """DOE^JOHN^^DR as "DOE, JOHN DR" (the first group; the others are ideographic)."""
    parts = [p for p in str(name or "").split("=")[0].split("^")]
    family, rest = (parts[0], [p for p in parts[1:] if p]) if parts else ("", [])
    return f"{family}, {' '.join(rest)}" if rest else family


def _megabytes(size: int | None) -> str:
    return f"{(size or 0) / 1e6:.1f} MB"


templates.env.filters.update(
    when=_when, dicom_date=_dicom_date, dicom_time=_dicom_time, person=_person, mb=_megabytes
)


def page(request: Request, name: str, who: Principal, **context: Any) -> HTMLResponse:
    console = auth.console_of(request)
    notes = console.notes.pop(who.csrf, [])
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "csrf": who.csrf,
            "notes": notes,
            "ae_title": console.box.config.box.ae_title,
            "may_act": who.user.may("operator"),
            "is_admin": who.user.may("admin"),
            **context,
        },
    )


def note(request: Request, who: Principal, text: str, ok: bool = True) -> None:
    """Show ``text`` on this session's next page."""
    auth.console_of(request).notes.setdefault(who.csrf, []).append((text, ok))


def back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# ---------------------------------------------------------------- signing in and out
def _local_path(target: str) -> str:
    """Only a path of this console: never another site after logging in."""
    parts = urlsplit(target)
    ok = target.startswith("/") and not target.startswith(("//", "/\\"))
    return target if ok and not parts.scheme and not parts.netloc else "/"


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The login form. Anyone."""
    console = auth.console_of(request)
    if auth.identify(request) is not None:
        return back(_local_path(next))
    no_accounts = auth.NO_ACCOUNTS if console.accounts.count() == 0 else ""
    context = {"next": _local_path(next), "error": "", "no_accounts": no_accounts}
    return templates.TemplateResponse(request, "login.html", context)


@router.post("/login")
async def login_submit(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the form's name and password, open a session. Anyone (same origin)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "a login form of another site")  # login CSRF
    console = auth.console_of(request)
    try:
        user = await run_in_threadpool(auth.login, console, name, password)
    except LoginRefused as exc:
        context = {"next": _local_path(next), "error": str(exc), "no_accounts": "", "name": name}
        return templates.TemplateResponse(request, "login.html", context, status_code=403)
    response = back(_local_path(next))
    await run_in_threadpool(auth.start_session, console, user, response)
    return response


@router.post("/logout")
def logout(request: Request, who: auth.Viewer) -> Response:
    """Close the session. Any role."""
    response = back("/login")
    auth.end_session(auth.console_of(request), who, response)
    return response


# ---------------------------------------------------------------- looking
@router.get("/")
def dashboard_page(request: Request, who: auth.Viewer) -> Response:
    """The dashboard: what the front panel shows, throughput and disk. Viewer."""
    console = auth.console_of(request)
    data = dashboard(console.box, console.url)
    return page(request, "dashboard.html", who, d=data, devices=console.devices.all())


@router.get("/studies")
def studies_page(request: Request, who: auth.Viewer) -> Response:
    """Study list and search (C-FIND matching, names in any case). Viewer. Keys the
    form has no field for (from a bookmark) are searched too and listed; a wrong key or
    value is said, not searched for."""
    asked = {k: v.strip() for k, v in request.query_params.items()}
    query = {k: asked.get(k, "") for k in FORM_KEYS}
    more = {k: v for k, v in asked.items() if k not in FORM_KEYS and v}
    found: list[dict[str, Any]] = []
    error = wrong = ""
    try:
        found = search_studies(auth.console_of(request).box, {**query, **more}, limit=200)
    except SearchError as exc:
        error, wrong = str(exc), exc.key
    context = {"query": query, "more": more, "studies": found, "error": error, "wrong": wrong}
    return page(request, "studies.html", who, **context)


@router.get("/studies/{study_uid}")
def study_page(study_uid: str, request: Request, who: auth.Viewer) -> Any:
    """One study: its series with previews, and the actions. Viewer."""
    console = auth.console_of(request)
    study = find_study(console.box, study_uid)
    if study is None:
        raise HTTPException(404, f"no study {study_uid} is stored")
    printers = console.box.config.extra.get("printer")
    printers = printers if isinstance(printers, list) else [printers] if printers else []
    sticks = [d for d in console.devices.usb() if d.lines]
    return page(
        request,
        "study.html",
        who,
        study=study,
        series=series_of(console.box, study_uid),
        remotes=[r.name for r in console.box.config.remote],
        printers=[p.name for p in printers if getattr(p, "name", "")],
        sticks=[s.name for s in sticks],
    )


@router.post("/studies/{study_uid}/{action}")
async def study_action(
    study_uid: str, action: str, request: Request, who: auth.Operator
) -> Response:
    """Burn, print, send or export the study (form fields as the API's). Operator."""
    console = auth.console_of(request)
    form = await request.form()
    field = {k: str(v) for k, v in form.items()}
    user, studies = who.user.name, [study_uid]
    calls = {
        "burn": lambda: actions.burn(console, user, studies, int(field.get("copies") or 0)),
        "print": lambda: actions.print_films(
            console, user, studies, field.get("printer", ""), field.get("layout", "")
        ),
        "send": lambda: actions.send(console, user, field.get("remote", ""), studies),
        "export": lambda: actions.export_usb(console, user, studies, field.get("stick", "")),
    }
    if action not in calls:
        raise HTTPException(404, f"no action {action!r}: one of {', '.join(calls)}")
    try:
        outcome = await run_in_threadpool(calls[action])
        note(request, who, outcome.message)
    except (ActionError, ValueError) as exc:
        note(request, who, str(exc), ok=False)
    return back(f"/studies/{study_uid}")


@router.get("/jobs")
def jobs_page(request: Request, who: auth.Viewer) -> Response:
    """Jobs with live progress (server-sent events). Viewer."""
    box = auth.console_of(request).box
    jobs = job_views(box, box.jobs.list(limit=200))
    active = sum(1 for j in jobs if j["state"] in (QUEUED, RUNNING))
    return page(request, "jobs.html", who, jobs=jobs, active=active)


@router.post("/jobs/{job_id}/{verb}")
def job_action(job_id: int, verb: str, request: Request, who: auth.Operator) -> Response:
    """Cancel or retry a job. Operator."""
    box = auth.console_of(request).box
    if verb not in ("cancel", "retry"):
        raise HTTPException(404, f"no job action {verb!r}: cancel or retry")
    done = (box.jobs.cancel if verb == "cancel" else box.jobs.retry)(job_id)
    past = {"cancel": "cancelled", "retry": "retried"}[verb]
    text = f"job {job_id} {past}" if done else f"job {job_id} cannot be {past} now"
    note(request, who, text, ok=done)
    return back("/jobs")


@router.get("/worklist")
def worklist_page(request: Request, who: auth.Viewer) -> Response:
    """The worklist items the box serves. Viewer."""
    items: list[dict[str, Any]] = []
    error = ""
    try:
        items = worklist_items(auth.console_of(request), everything=True)
    except (VerbError, WorklistError) as exc:
        error = str(exc)
    return page(request, "worklist.html", who, items=items, error=error)


@router.post("/worklist/refresh")
async def worklist_refresh(request: Request, who: auth.Operator) -> Any:
    """Poll the RIS now. Operator."""
    console = auth.console_of(request)
    try:
        outcome = await run_in_threadpool(actions.refresh_worklist, console, who.user.name)
        note(request, who, outcome.message)
    except ActionError as exc:
        note(request, who, str(exc), ok=False)
    return back("/worklist")


@router.get("/devices")
def devices_page(request: Request, who: auth.Viewer) -> Response:
    """Burners, printers, USB sticks, front panel. Viewer."""
    return page(request, "devices.html", who, devices=auth.console_of(request).devices.all())


@router.get("/audit")
def audit_page(request: Request, who: auth.Viewer, event: str = "") -> Any:
    """The audit trail, newest first. Viewer."""
    path = auth.console_of(request).box.audit.path
    records = audit_records(path, 300, event)
    skip = {"time", "event", "pid"}
    rows = [(r, {k: v for k, v in r.items() if k not in skip}) for r in records]
    return page(request, "audit.html", who, rows=rows, event=event)


@router.get("/log")
def log_page(request: Request, who: auth.Viewer, level: str = "") -> Any:
    """The supervisor's recent log. Viewer."""
    records = auth.console_of(request).logs.records(300, level)
    return page(request, "log.html", who, records=records, level=level)


@router.get("/config")
def config_page(request: Request, who: auth.Viewer) -> Response:
    """The effective configuration (secrets masked); admins may check a proposed one."""
    view = config_view(auth.console_of(request).box.config)
    return page(request, "config.html", who, config=view, proposed="", result=None)


@router.post("/config/check")
def config_check_page(
    request: Request, who: auth.Admin, toml: Annotated[str, Form()] = ""
) -> Response:
    """Check a proposed configuration; nothing is changed. Admin."""
    view = config_view(auth.console_of(request).box.config)
    result = check_config_text(toml)
    return page(request, "config.html", who, config=view, proposed=toml, result=result)


@router.get("/api")
def api_page(request: Request, who: auth.Viewer) -> Response:
    """Every endpoint of the REST API, from its OpenAPI document. Viewer."""
    document = request.app.openapi()
    endpoints = [
        (method.upper(), path, op.get("summary", ""), op.get("description", ""))
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    return page(request, "api.html", who, endpoints=endpoints, version=document["info"])
