"""Studies: search (C-FIND matching), detail, and thumbnails of their images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dicombox.plugins.web import auth
from dicombox.plugins.web.search import (
    SearchError,
    first_series,
    search_studies,
    series_of,
    study_row,
)
from dicombox.plugins.web.thumbnails import DEFAULT_SIZE, NoImage

router = APIRouter(prefix="/api", tags=["studies"], dependencies=[Depends(auth.viewer)])
PNG_CACHE = "private, max-age=3600"
Size = Annotated[int, Query(ge=32, le=1024, description="the longer side, in pixels")]


@router.get("/studies")
def list_studies(
    request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 200
) -> list[dict[str, Any]]:
    """Stored studies matching the query parameters, each a DICOM keyword of a patient
    or study key with a C-FIND value: ``PatientName=DOE*``, ``StudyDate=20260101-``,
    ``ModalitiesInStudy=CT``, ``AccessionNumber=A?1``, ``StudyInstanceUID=1.2\\1.3``.
    Matching is the Q/R SCP's (what findscu finds at STUDY level), except that person
    names match whatever their case and codes are taken in capitals. An unknown key or a
    value its VR cannot have is a 400: ``{"detail", "key", "value", "allowed"}``. Viewer."""
    query = {k: v for k, v in request.query_params.items() if k != "limit"}
    try:
        return search_studies(auth.console_of(request).box, query, limit)
    except SearchError as exc:
        # detail, and the key, its value and what it may be: a script can tell which.
        return JSONResponse(exc.as_dict(), status_code=400)  # type: ignore[return-value]


@router.get("/studies/{study_uid}")
def study_detail(study_uid: str, request: Request) -> dict[str, Any]:
    """One study: patient, study keys, counts, and its series with their instances (in
    Instance Number order) and the middle one as preview. Viewer."""
    box = auth.console_of(request).box
    study = study_row(box, study_uid)
    if study is None:
        raise HTTPException(404, f"no study {study_uid} is stored")
    return {**study, "series": series_of(box, study_uid)}


async def _png(request: Request, sop_uid: str, size: int) -> Response:
    thumbnails = auth.console_of(request).thumbnails
    try:
        data = await run_in_threadpool(thumbnails.png, sop_uid, size)
    except NoImage as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(data, media_type="image/png", headers={"Cache-Control": PNG_CACHE})


@router.get("/instances/{sop_uid}/thumbnail.png", response_class=Response)
async def instance_thumbnail(sop_uid: str, request: Request, size: Size = DEFAULT_SIZE) -> Response:
    """A stored image as PNG, its longer side ``size`` pixels, windowed as printed
    (its middle frame if it has several). Viewer."""
    return await _png(request, sop_uid, size)


@router.get("/series/{series_uid}/thumbnail.png", response_class=Response)
async def series_thumbnail(
    series_uid: str, request: Request, size: Size = DEFAULT_SIZE
) -> Response:
    """The preview of a series: its middle image, as PNG. Viewer."""
    box = auth.console_of(request).box
    uids = [uid for uid, _ in await run_in_threadpool(box.index.instances_of, [series_uid])]
    if not uids:
        raise HTTPException(404, f"no series {series_uid} is stored")
    return await _png(request, uids[len(uids) // 2], size)


@router.get("/studies/{study_uid}/thumbnail.png", response_class=Response)
async def study_thumbnail(study_uid: str, request: Request, size: Size = DEFAULT_SIZE) -> Response:
    """The preview of a study: the middle image of its first series, as PNG. Viewer."""
    box = auth.console_of(request).box
    series = await run_in_threadpool(first_series, box, study_uid)
    if series is None:
        raise HTTPException(404, f"no study {study_uid} is stored")
    return await series_thumbnail(series, request, size)
