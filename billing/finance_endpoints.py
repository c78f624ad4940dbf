"""HTTP routes for finance and the parties: reconciliation and its exports, period closing, the
ledger, revenue shares per product and settlement statements."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from billing import document_render, documents, reconciliation, repository, revenue, statements
from billing.config import Period
from billing.schemas import (
    AcknowledgementIn,
    AcknowledgementOut,
    BalanceOut,
    JournalEntryOut,
    JournalLineOut,
    PeriodClosingOut,
    PeriodOut,
    ReconciliationOut,
    RevenueSharesOut,
    ShareOut,
    SharesIn,
    StatementOut,
)
from market.deps import PrincipalDep, SessionDep
from market.errors import BadRequest, Unprocessable
from market.pagination import CursorQuery, LimitQuery, Page, cut, decode_cursor, page_of

router = APIRouter(prefix="/v1", tags=["finance"])


@router.get("/reconciliation", response_model=ReconciliationOut)
def reconcile(period: str, session: SessionDep, principal: PrincipalDep) -> ReconciliationOut:
    """Usage rated, invoiced, paid and distributed for the period, with every mismatch explained."""
    report = reconciliation.reconcile(session, principal, Period.parse(period))
    return ReconciliationOut.model_validate(report.as_dict())


@router.get(
    "/reconciliation/export",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            }
        }
    },
)
def export(period: str, session: SessionDep, principal: PrincipalDep, format: str = "csv") -> Response:
    """The reconciliation as CSV or XLSX, for accounting."""
    if format not in ("csv", "xlsx"):
        raise Unprocessable("invalid_export_format", format=format)
    report = reconciliation.reconcile(session, principal, Period.parse(period))
    name = f"reconciliation-{report.period}.{format}"
    if format == "csv":
        body, media = reconciliation.to_csv(report), "text/csv"
    else:
        body, media = (
            reconciliation.to_xlsx(report),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/billing/periods/{period}/close", response_model=PeriodOut)
def close(period: str, session: SessionDep, principal: PrincipalDep) -> PeriodOut:
    """Lock the period against any further change."""
    return PeriodOut.model_validate(reconciliation.close_period(session, principal, Period.parse(period)))


@router.post("/billing/periods/{period}/acknowledgements", response_model=AcknowledgementOut)
def acknowledge(
    period: str, body: AcknowledgementIn, session: SessionDep, principal: PrincipalDep
) -> AcknowledgementOut:
    """Finance accepts one reconciliation mismatch with a reason, so that the period may close."""
    ack = reconciliation.acknowledge(session, principal, Period.parse(period), body.mismatch_key, body.note)
    return AcknowledgementOut.model_validate(ack)


@router.get("/billing/periods/{period}/acknowledgements", response_model=PeriodClosingOut)
def closing(period: str, session: SessionDep, principal: PrincipalDep) -> PeriodClosingOut:
    """The period's state and every mismatch finance acknowledged, with its reason (finance and the regulator)."""
    parsed = Period.parse(period)
    row, acks = reconciliation.acknowledgements(session, principal, parsed)
    return PeriodClosingOut(
        period=parsed.key,
        status=row.status if row else "open",
        closed_at=row.closed_at if row else None,
        closed_by=row.closed_by if row else None,
        acknowledgements=[AcknowledgementOut.model_validate(a) for a in acks],
    )


@router.get("/ledger/balances", response_model=Page[BalanceOut])
def balances(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    currency: str | None = None,
) -> Page[BalanceOut]:
    """Account balances, computed from the journal, by account and currency."""
    found = [
        BalanceOut(account=a, currency=c, balance_minor=b)
        for a, c, b in reconciliation.balances(session, principal, currency)
    ]
    page, next_cursor = page_of(found, key=lambda b: (b.account, b.currency), limit=limit, cursor=cursor)
    return Page(items=page, next_cursor=next_cursor)


@router.get("/ledger/entries", response_model=Page[JournalEntryOut])
def entries(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    reference: str | None = None,
) -> Page[JournalEntryOut]:
    """Journal entries of the ledger, newest first, optionally for one reference (finance only)."""
    after = decode_cursor(cursor, 2) if cursor else None
    if after is not None and not (isinstance(after[0], datetime) and isinstance(after[1], str)):
        raise BadRequest("invalid_cursor")
    rows, journal_lines = reconciliation.journal(session, principal, reference, limit + 1, after)
    found, next_cursor = cut(rows, limit, lambda e: (e.created_at, e.id))
    lines: dict[str, list[JournalLineOut]] = {e.id: [] for e in rows}
    for line in journal_lines:
        lines[line.entry_id].append(JournalLineOut(account=line.account, amount_minor=line.amount_minor))
    return Page(
        items=[
            JournalEntryOut(
                id=e.id,
                kind=e.kind,
                reference=e.reference,
                period=e.period,
                currency=e.currency,
                memo=e.memo,
                created_at=e.created_at,
                lines=lines[e.id],
            )
            for e in found
        ],
        next_cursor=next_cursor,
    )


def _shares_out(session: SessionDep, slug: str, shares: list[revenue.Share]) -> RevenueSharesOut:
    names = repository.org_names(session, {s.party_org_id for s in shares if s.party_org_id})
    return RevenueSharesOut(
        product=slug,
        shares=[
            ShareOut(
                party=s.party_kind,
                org_id=s.party_org_id,
                name=names.get(s.party_org_id or "", ""),
                basis_points=s.basis_points,
            )
            for s in shares
        ],
    )


@router.get("/products/{slug}/revenue-shares", response_model=RevenueSharesOut)
def get_shares(slug: str, session: SessionDep, principal: PrincipalDep) -> RevenueSharesOut:
    """The product's revenue shares in basis points, per party."""
    return _shares_out(session, slug, revenue.shares_for_reader(session, principal, slug))


@router.put("/products/{slug}/revenue-shares", response_model=RevenueSharesOut)
def put_shares(slug: str, body: SharesIn, session: SessionDep, principal: PrincipalDep) -> RevenueSharesOut:
    """The regulator or finance sets a product's revenue shares (basis points summing to 10,000).
    New agreements freeze them; existing agreements keep theirs."""
    shares = revenue.set_shares(session, principal, slug, [(s.party, s.org_id, s.basis_points) for s in body.shares])
    return _shares_out(session, slug, shares)


@router.get("/settlements", response_model=Page[StatementOut])
def settlements(
    period: str, session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[StatementOut]:
    """Settlement statements per party for the period, by party, organisation and currency: operators and sources
    see their own."""
    found = [
        StatementOut(
            period=s.period,
            party=s.party_kind,
            org_id=s.party_org_id,
            name=s.party_name,
            currency=s.currency,
            amount_minor=s.amount_minor,
            payments=s.payments,
            year_to_date_minor=s.year_to_date_minor,
            ceiling_minor=s.ceiling_minor,
            over_ceiling=s.over_ceiling,
            used_basis_points=s.used_basis_points,
            warning=s.warning,
        )
        for s in statements.statements(session, principal, Period.parse(period))
    ]
    page, next_cursor = page_of(found, key=lambda s: (s.party, s.org_id or "", s.currency), limit=limit, cursor=cursor)
    return Page(items=page, next_cursor=next_cursor)


@router.get("/settlements/document", response_class=HTMLResponse, response_model=None)
def settlement_document(
    period: str, session: SessionDep, principal: PrincipalDep, format: str = "html", lang: str | None = None
) -> Response:
    """The period's settlement statement (收益分配结算单) as a document (`?format=html|pdf`, `?lang=zh-CN|en`):
    operators and source departments get their own; finance and the regulator every party's."""
    document_render.check_format(format)
    found = statements.statements(session, principal, Period.parse(period))
    document = documents.statement_document(
        session, period, found, documents.statement_recipient(principal), document_render.document_locale(lang)
    )
    return document_render.respond(document, format)
