"""Jobs: the list, one job, cancel, retry, and a live stream of their progress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dicombox.core.jobs import CANCELLED, DONE, DONE_WITH_PROBLEMS, FAILED, QUEUED, RUNNING
from dicombox.plugins.web import auth
from dicombox.plugins.web.auth import Principal
from dicombox.plugins.web.console import Console
from dicombox.plugins.web.present import job_views

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
STATES = (QUEUED, RUNNING, DONE, DONE_WITH_PROBLEMS, FAILED, CANCELLED)
STATE_HELP = f"any of {', '.join(STATES)}; none = all"
KEEPALIVE_S = 15.0


@router.get("", dependencies=[Depends(auth.viewer)])
def list_jobs(
    request: Request,
    state: Annotated[list[str] | None, Query(description=STATE_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[dict[str, Any]]:
    """Jobs, newest first, with their progress and percentage. Viewer."""
    state = state or []
    bad = [s for s in state if s not in STATES]
    if bad:
        raise HTTPException(400, f"state {bad[0]!r}: one of {', '.join(STATES)}")
    box = auth.console_of(request).box
    return job_views(box, box.jobs.list(tuple(state), limit=limit))


@router.get("/stream", dependencies=[Depends(auth.viewer)])
async def job_stream(request: Request) -> StreamingResponse:
    """Server-sent events: an ``event: job`` with the job as ``GET /api/jobs/{id}``
    shows it, each time a job starts, progresses, is retried, fails or is done. Viewer."""
    console = auth.console_of(request)
    return StreamingResponse(
        _events(console, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(console: Console, request: Request) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"  # the browser reconnects after 2 s if the stream breaks
    stopping = request.app.state.stopping
    with console.feed.listen() as queue:
        idle = 0.0
        while not stopping.is_set() and not await request.is_disconnected():
            try:
                event = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                idle += 1.0
                if idle >= KEEPALIVE_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                continue
            idle = 0.0
            job = await run_in_threadpool(console.box.jobs.get, int(event.get("job", 0)))
            if job is not None:
                view = {**job_views(console.box, [job])[0], "event": event["topic"]}
                yield f"event: job\ndata: {json.dumps(view)}\n\n"


@router.get("/{job_id}", dependencies=[Depends(auth.viewer)])
def get_job(job_id: int, request: Request) -> dict[str, Any]:
    """One job. Viewer."""
    job = auth.console_of(request).box.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job_views(auth.console_of(request).box, [job])[0]


def _change(request: Request, job_id: int, verb: str, who: Principal) -> dict[str, Any]:
    console = auth.console_of(request)
    box = console.box
    if box.jobs.get(job_id) is None:
        raise HTTPException(404, f"no job {job_id}")
    done = (box.jobs.cancel if verb == "cancel" else box.jobs.retry)(job_id)
    if not done:
        state = box.jobs.get(job_id).state  # type: ignore[union-attr]
        past = {"cancel": "cancelled", "retry": "retried"}[verb]
        raise HTTPException(409, f"job {job_id} is {state}: it cannot be {past} now")
    box.bus.publish("web.action", user=who.user.name, command=[verb, str(job_id)], ok=True)
    return {"ok": True, "message": f"job {job_id}: {verb} done", "job": job_id}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: int, request: Request, who: auth.Operator) -> Any:
    """Cancel a queued job (a running one finishes its step first). Operator."""
    return _change(request, job_id, "cancel", who)


@router.post("/{job_id}/retry")
def retry_job(job_id: int, request: Request, who: auth.Operator) -> Any:
    """Run a failed or cancelled job again, now, with its tries counted afresh. Operator."""
    return _change(request, job_id, "retry", who)
