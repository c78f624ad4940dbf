"""HTTP routes: access requests, agreements, queries and usage."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from market.deps import PrincipalDep, SessionDep, SettingsDep
from market.errors import BadRequest
from metering import service
from metering.schemas import (
    AccessRequestIn,
    AccessRequestOut,
    AgreementOut,
    DecisionIn,
    QueryIn,
    UsageOut,
    UsagePage,
)

router = APIRouter(prefix="/v1", tags=["queries and usage"])


@router.post("/access-requests", response_model=AccessRequestOut, status_code=201)
def request_access(body: AccessRequestIn, session: SessionDep, principal: PrincipalDep) -> AccessRequestOut:
    request = service.request_access(
        session,
        principal,
        product_slug=body.product,
        plan_code=body.plan,
        purpose=body.purpose,
        scenario=body.scenario,
        justification=body.justification,
    )
    return AccessRequestOut.model_validate(request)


@router.get("/access-requests", response_model=list[AccessRequestOut])
def list_requests(session: SessionDep, principal: PrincipalDep) -> list[AccessRequestOut]:
    return [AccessRequestOut.model_validate(r) for r in service.visible_requests(session, principal)]


@router.post("/access-requests/{request_id}/decision", response_model=AccessRequestOut)
def decide(request_id: str, body: DecisionIn, session: SessionDep, principal: PrincipalDep) -> AccessRequestOut:
    request = service.decide_request(
        session,
        principal,
        request_id,
        approve=body.decision == "approve",
        reason=body.reason,
        monthly_query_quota=body.monthly_query_quota,
        valid_days=body.valid_days,
    )
    return AccessRequestOut.model_validate(request)


@router.get("/agreements", response_model=list[AgreementOut])
def list_agreements(session: SessionDep, principal: PrincipalDep) -> list[AgreementOut]:
    return [AgreementOut.model_validate(a) for a in service.visible_agreements(session, principal)]


@router.post("/queries")
def run_query(
    body: QueryIn,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Run one aggregate SELECT under the caller's agreement; every attempt is metered."""
    outcome = service.run_metered_query(
        session, settings, principal, product_slug=body.product, sql=body.to_sql(), idempotency_key=idempotency_key
    )
    return JSONResponse(status_code=outcome.status_code, content=outcome.body)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, record_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), record_id
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("invalid_request", detail="cursor is not one this API returned") from error


def _encode_cursor(created_at: datetime, record_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{record_id}".encode()).decode()


@router.get("/usage", response_model=UsagePage)
def list_usage(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> UsagePage:
    """The caller's own usage records, newest first, a page at a time."""
    before = _decode_cursor(cursor) if cursor else None
    records = service.usage_page(session, principal, limit=limit + 1, before=before)
    page = records[:limit]
    next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if len(records) > limit else None
    return UsagePage(items=[UsageOut.model_validate(r) for r in page], next_cursor=next_cursor)
