"""Actions on studies (burn, print, send, export to USB) and the worklist."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dicombox.plugins.web import actions, auth
from dicombox.plugins.web.actions import ActionError
from dicombox.plugins.web.verbs import VerbError
from dicombox.plugins.web.worklist import WorklistError, worklist_items

router = APIRouter(prefix="/api", tags=["actions"])


class Burn(BaseModel):
    studies: list[str] = Field(description="Study Instance UIDs, onto one disc set")
    copies: int = Field(0, ge=0, le=99, description="0 = [media] copies")


class Print(BaseModel):
    uids: list[str] = Field(description="study, series or SOP instance UIDs")
    printer: str = Field("", description='a [[printer]] name; "" = the default one')
    layout: str = Field("", description="2x3 (columns x rows) or an Image Display Format")


class Send(BaseModel):
    remote: str = Field(description="a [[remote]] name")
    studies: list[str]


class Export(BaseModel):
    studies: list[str]
    stick: str = Field("", description='which stick, when several are plugged in; "" = the only')


async def _do(call: Any, *args: Any) -> dict[str, Any]:
    try:
        outcome = await run_in_threadpool(call, *args)
    except ActionError as exc:
        raise HTTPException(400, str(exc)) from None
    return outcome.as_dict()


@router.post("/actions/burn")
async def burn(body: Burn, request: Request, who: auth.Operator) -> Any:
    """Queue a burn of these studies (``dicombox burn``); returns the job. Operator."""
    console = auth.console_of(request)
    return await _do(actions.burn, console, who.user.name, body.studies, body.copies)


@router.post("/actions/print")
async def print_(body: Print, request: Request, who: auth.Operator) -> Any:
    """Queue a print (``dicombox print``); returns the job. Operator."""
    console = auth.console_of(request)
    args = (console, who.user.name, body.uids, body.printer, body.layout)
    return await _do(actions.print_films, *args)


@router.post("/actions/send")
async def send(body: Send, request: Request, who: auth.Operator) -> Any:
    """Send studies to a [[remote]] (``dicombox send``) as a background job. Operator."""
    console = auth.console_of(request)
    return await _do(actions.send, console, who.user.name, body.remote, body.studies)


@router.post("/actions/export")
async def export(body: Export, request: Request, who: auth.Operator) -> Any:
    """Write studies onto a USB stick (``dicombox export usb``) as a background job.
    Operator."""
    console = auth.console_of(request)
    return await _do(actions.export_usb, console, who.user.name, body.studies, body.stick)


@router.post("/actions/worklist-refresh")
async def worklist_refresh(request: Request, who: auth.Operator) -> Any:
    """Poll the RIS for the worklist now (``dicombox worklist refresh``). Operator."""
    return await _do(actions.refresh_worklist, auth.console_of(request), who.user.name)


@router.get("/worklist", dependencies=[Depends(auth.viewer)])
def worklist(
    request: Request, retired: Annotated[bool, Query(alias="all")] = False
) -> list[dict[str, Any]]:
    """The scheduled worklist items (``dicombox worklist list --json``), retired ones
    too with ``all``. Each has the listing's columns in lower case, the state its
    modalities reported (``mpps``: IN PROGRESS, COMPLETED, DISCONTINUED or empty), the
    ``series`` they performed, the ``performed_steps``, and whether the box still
    ``answered`` it to a worklist query. Viewer."""
    try:
        return worklist_items(auth.console_of(request), retired)
    except VerbError as exc:
        raise HTTPException(400, str(exc)) from None
    except WorklistError as exc:
        raise HTTPException(500, str(exc)) from None
