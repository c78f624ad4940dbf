"""HTTP routes for uploads: the request body is streamed to disk, never held in memory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from market.deps import PrincipalDep, SessionDep, SettingsDep
from market.pagination import CursorQuery, LimitQuery, Page, page_of
from products.pipeline import uploads
from products.schemas import UploadOut

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post("", response_model=UploadOut, status_code=201)
async def upload_file(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    filename: Annotated[str, Query(min_length=1, max_length=300, description="e.g. trips.csv or trips.parquet")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> UploadOut:
    """Upload one CSV or Parquet file as the raw request body. Retrying with the same Idempotency-Key
    (or the same bytes) returns the stored upload with 200 instead of storing it twice. A CSV may be UTF-8,
    GB18030 (GBK, GB2312) or UTF-16 with a byte order mark, also gzip-compressed (`.csv.gz`); it is stored as
    UTF-8. A spreadsheet (.xlsx, .xls, .ods) of one sheet is stored as the CSV of that sheet. `sha256` is that of
    the bytes sent."""
    received = await uploads.receive(settings, principal, request.stream())
    upload, created = await run_in_threadpool(
        uploads.register, session, settings, principal, received, filename=filename, idempotency_key=idempotency_key
    )
    if not created:
        response.status_code = 200
    return UploadOut.model_validate(upload)


@router.get("", response_model=Page[UploadOut])
def list_uploads(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[UploadOut]:
    """Your organisation's uploads, newest first."""
    found = uploads.of_org(session, principal)
    page, next_cursor = page_of(found, key=lambda u: (u.created_at, u.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=[UploadOut.model_validate(u) for u in page], next_cursor=next_cursor)
