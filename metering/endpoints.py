"""HTTP routes: access requests, agreements, queries, usage and the regulator's audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from market import phases
from market.accounts.service import Principal
from market.db import Database
from market.deps import DatabaseDep, PrincipalDep, SessionDep, SettingsDep, get_database, get_settings_dep
from market.errors import BadRequest
from market.pagination import CursorQuery, LimitQuery, Page, cut, decode_cursor, page_of
from market.settings import Settings
from metering import access, agreements, audit, service, usage
from metering.models import Purpose, RequestStatus
from metering.schemas import (
    AccessRequestIn,
    AccessRequestOut,
    AccessSettingsIn,
    AccessSettingsOut,
    AgreementOut,
    AuditRecordOut,
    DailyUsageOut,
    DecisionIn,
    FlagIn,
    FlagOut,
    FlagResolveIn,
    QueryCancelOut,
    QueryIn,
    QueryResultOut,
    RevokeIn,
    UsageOut,
)

router = APIRouter(prefix="/v1", tags=["access, queries and usage"])
queries_router = APIRouter(prefix="/v1", tags=["access, queries and usage"])
"""`POST /v1/queries` alone, included before every other router (market.app.HOT_ROUTERS): a query, the
busiest request, is then matched by the first route tried instead of after ~60 others (branch pg-dash)."""

SinceQuery = Annotated[date | None, Query(alias="from", description="First UTC day included, YYYY-MM-DD.")]
UntilQuery = Annotated[date | None, Query(alias="to", description="Last UTC day included, YYYY-MM-DD.")]


def _day_range(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    if since and until and until < since:
        raise BadRequest("invalid_date_range", since=since.isoformat(), until=until.isoformat())
    start = datetime.combine(since, time(0), UTC) if since else None
    # The last calendar day has no next day to end before: it bounds nothing.
    end = datetime.combine(until + timedelta(days=1), time(0), UTC) if until and until < date.max else None
    return start, end


# -- access requests -------------------------------------------------------------------------------


@router.post("/access-requests", response_model=AccessRequestOut, status_code=201)
def request_access(body: AccessRequestIn, session: SessionDep, principal: PrincipalDep) -> AccessRequestOut:
    """Ask for access with a purpose, scenario, justification and plan; see who reviews it and by when."""
    request = service.request_access(
        session,
        principal,
        product_slug=body.product,
        plan_code=body.plan,
        purpose=body.purpose,
        scenario=body.scenario,
        justification=body.justification,
    )
    return access.present(session, [request])[0]


@router.get("/access-requests", response_model=Page[AccessRequestOut])
def list_requests(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    status: RequestStatus | None = None,
) -> Page[AccessRequestOut]:
    """Requests the caller made or reviews, newest first, with state, age and review deadline."""
    found = access.visible_requests(session, principal, status.value if status else None)
    page, next_cursor = page_of(found, key=lambda r: (r.created_at, r.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=access.present(session, page), next_cursor=next_cursor)


@router.get("/access-requests/{request_id}", response_model=AccessRequestOut)
def get_request(request_id: str, session: SessionDep, principal: PrincipalDep) -> AccessRequestOut:
    """One access request the caller made or reviews."""
    return access.present(session, [access.visible_request(session, principal, request_id)])[0]


@router.post("/access-requests/{request_id}/decision", response_model=AccessRequestOut)
def decide(request_id: str, body: DecisionIn, session: SessionDep, principal: PrincipalDep) -> AccessRequestOut:
    """Approve (with quota and period) or reject (with a reason) a pending request."""
    request = service.decide_request(
        session,
        principal,
        request_id,
        approve=body.decision == "approve",
        reason=body.reason,
        monthly_query_quota=body.monthly_query_quota,
        monthly_row_quota=body.monthly_row_quota,
        monthly_byte_quota=body.monthly_byte_quota,
        valid_days=body.valid_days,
    )
    return access.present(session, [request])[0]


@router.get("/products/{slug}/access-settings", response_model=AccessSettingsOut)
def get_access_settings(slug: str, session: SessionDep, principal: PrincipalDep) -> AccessSettingsOut:
    """Whether commercial access requests for the product are approved automatically."""
    return access.get_settings(session, principal, slug)


@router.put("/products/{slug}/access-settings", response_model=AccessSettingsOut)
def put_access_settings(
    slug: str, body: AccessSettingsIn, session: SessionDep, principal: PrincipalDep
) -> AccessSettingsOut:
    """The operator chooses whether commercial requests for its product are approved automatically."""
    return access.set_settings(session, principal, slug, auto_approve_commercial=body.auto_approve_commercial)


# -- agreements ------------------------------------------------------------------------------------


@router.get("/agreements", response_model=Page[AgreementOut])
def list_agreements(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[AgreementOut]:
    """Agreements the caller holds, grants (operator) or supervises (regulator), newest first."""
    found = agreements.visible_agreements(session, principal)
    page, next_cursor = page_of(found, key=lambda a: (a.created_at, a.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=agreements.present(session, page), next_cursor=next_cursor)


@router.get("/agreements/{agreement_id}", response_model=AgreementOut)
def get_agreement(agreement_id: str, session: SessionDep, principal: PrincipalDep) -> AgreementOut:
    """One agreement: plan terms frozen at approval, quotas, validity and status."""
    return agreements.present(session, [agreements.visible_agreement(session, principal, agreement_id)])[0]


@router.get(
    "/agreements/{agreement_id}/odrl",
    response_class=JSONResponse,
    responses={200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}}},
)
def agreement_odrl(agreement_id: str, session: SessionDep, principal: PrincipalDep) -> JSONResponse:
    """The agreement as an ODRL policy (JSON-LD)."""
    return JSONResponse(agreements.odrl_document(session, principal, agreement_id), media_type="application/ld+json")


@router.post("/agreements/{agreement_id}/revoke", response_model=AgreementOut)
def revoke_agreement(agreement_id: str, body: RevokeIn, session: SessionDep, principal: PrincipalDep) -> AgreementOut:
    """The regulator or the product's operator ends the agreement now; later queries get 403."""
    return agreements.present(session, [agreements.revoke(session, principal, agreement_id, body.reason)])[0]


# -- queries and usage ---------------------------------------------------------------------------


@queries_router.post("/queries", responses={200: {"model": QueryResultOut}})
def run_query(
    body: QueryIn,
    request: Request,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> JSONResponse:
    """Run one aggregate SELECT under the caller's agreement; every attempt is metered.

    The route opens its own short transactions (no request session): none is held while the query
    waits for or runs in a sandbox worker, and the usage record is committed before the answer.
    """
    # The app's database and settings read here rather than as two more dependencies (DatabaseDep,
    # SettingsDep): each dependency FastAPI solves per request costs CPU on the event loop (branch lean13).
    return answer_query(get_database(request), get_settings_dep(request), principal, body, idempotency_key)


def answer_query(
    database: Database, settings: Settings, principal: Principal, body: QueryIn, idempotency_key: str | None
) -> JSONResponse:
    """The body of `POST /v1/queries`, shared by FastAPI's route (`run_query`) and the lean ASGI fast path
    (market.fast_path), so that the two cannot answer differently. Runs in a worker thread."""
    phases.on_thread("run_query")
    with phases.phase("0 run_metered_query (1-6 inside)"):
        outcome = service.run_metered_query(
            database,
            settings,
            principal,
            product_slug=body.product,
            sql=body.to_sql(),
            idempotency_key=idempotency_key,
            agreement_id=body.agreement,
            epsilon=body.epsilon,
            dry_run=body.dry_run,
        )
    with phases.phase("7 serialise (JSONResponse)"):
        return JSONResponse(status_code=outcome.status_code, content=outcome.body, headers=outcome.headers)


@router.post(
    "/queries/{key}/cancel",
    response_model=QueryCancelOut,
    responses={202: {"model": QueryCancelOut, "description": "The query has not started yet."}},
)
def cancel_query(
    key: Annotated[str, Path(max_length=200, description="The Idempotency-Key the query was sent with.")],
    database: DatabaseDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Cancel my query, sent with this Idempotency-Key, while it waits for or runs in a sandbox worker.

    DuckDB is interrupted, the sandbox slots are released, and the attempt is recorded as `rejected`
    with `query_cancelled`, never charged; the answer comes once that record is committed. A query
    that had already finished is left as it was (`finished`); one not started yet is cancelled as
    soon as it starts (202, `requested`).
    """
    found = service.cancel_query(database, settings, principal, key)
    record = found.record
    body = QueryCancelOut(
        state=found.state,
        query_id=record.id if record else None,
        charge_type=record.charge_type if record else None,
        amount_minor=record.amount_minor if record else None,
        currency=record.currency if record else None,
        error_code=record.error_code if record else None,
    )
    return JSONResponse(status_code=202 if found.state == "requested" else 200, content=body.model_dump())


def _before(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    moment, record_id = decode_cursor(cursor, 2)
    if not isinstance(moment, datetime) or not isinstance(record_id, str):
        raise BadRequest("invalid_cursor")
    return moment, record_id


@router.get("/usage", response_model=Page[UsageOut])
def list_usage(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    product: str | None = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[UsageOut]:
    """Usage records newest first, a page at a time: a buyer's own; an operator's products' (no SQL)."""
    before = _before(cursor)
    start, end = _day_range(since, until)
    where = usage.scope(session, principal, product_slug=product, since=start, until=end)
    records = usage.page(session, principal, where, limit=limit + 1, before=before)
    page, next_cursor = cut(records, limit, lambda r: (r.created_at, r.id))
    return Page(items=usage.present(session, principal, page), next_cursor=next_cursor)


@router.get("/usage/summary", response_model=Page[DailyUsageOut])
def usage_summary(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    product: str | None = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[DailyUsageOut]:
    """Per UTC day, product and charge type: queries, rows and bytes scanned, and amount; newest day first
    (within a day, by product, charge type and currency, all descending)."""
    start, end = _day_range(since, until)
    rows = usage.daily_summary(session, usage.scope(session, principal, product_slug=product, since=start, until=end))
    page, next_cursor = page_of(
        rows,
        key=lambda r: (r.day.isoformat(), r.product, r.charge_type, r.currency),
        limit=limit,
        cursor=cursor,
        descending=True,
    )
    return Page(items=page, next_cursor=next_cursor)


@router.get(
    "/usage/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def usage_export(
    session: SessionDep,
    principal: PrincipalDep,
    product: str | None = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Response:
    """The same records as CSV (at most 100,000; narrow the dates for more)."""
    start, end = _day_range(since, until)
    where = usage.scope(session, principal, product_slug=product, since=start, until=end)
    return Response(
        usage.to_csv(session, principal, where),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )


# -- audit -----------------------------------------------------------------------------------------


@router.get("/audit/queries", response_model=Page[AuditRecordOut])
def audit_queries(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    product: str | None = None,
    buyer: Annotated[str | None, Query(description="The buyer organisation's id.")] = None,
    purpose: Purpose | None = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    flagged: bool = False,
) -> Page[AuditRecordOut]:
    """Every query on the platform (regulator only), newest first, filtered by product, buyer, purpose, dates."""
    before = _before(cursor)
    start, end = _day_range(since, until)
    where = audit.audit_filter(
        session,
        principal,
        product_slug=product,
        buyer_org_id=buyer,
        purpose=purpose,
        since=start,
        until=end,
        flagged_only=flagged,
    )
    records = audit.page(session, where, limit=limit + 1, before=before)
    page, next_cursor = cut(records, limit, lambda r: (r.created_at, r.id))
    return Page(items=audit.present(session, page), next_cursor=next_cursor)


@router.post("/audit/flags/{flag_id}/resolve", response_model=FlagOut)
def resolve_flag(flag_id: str, body: FlagResolveIn, session: SessionDep, principal: PrincipalDep) -> FlagOut:
    """The regulator closes a flagged query's follow-up, saying what it found."""
    return FlagOut.model_validate(audit.resolve_flag(session, principal, flag_id, body.resolution))


@router.post("/audit/queries/{record_id}/flags", response_model=FlagOut, status_code=201)
def flag_query(record_id: str, body: FlagIn, session: SessionDep, principal: PrincipalDep) -> FlagOut:
    """Flag a query for follow-up, with the reason."""
    return FlagOut.model_validate(audit.flag(session, principal, record_id, body.reason))
