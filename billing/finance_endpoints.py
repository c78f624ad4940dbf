"""HTTP routes for finance and the parties: reconciliation and its exports, period closing, the
ledger, revenue shares per product and settlement statements."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from billing import reconciliation, revenue, statements
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
    ShareOut,
    SharesIn,
    StatementOut,
)
from market.deps import PrincipalDep, SessionDep
from market.errors import Unprocessable

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


@router.get("/ledger/balances", response_model=list[BalanceOut])
def balances(session: SessionDep, principal: PrincipalDep, currency: str | None = None) -> list[BalanceOut]:
    """Account balances, computed from the journal."""
    return [
        BalanceOut(account=a, currency=c, balance_minor=b)
        for a, c, b in reconciliation.balances(session, principal, currency)
    ]


@router.get("/ledger/entries", response_model=list[JournalEntryOut])
def entries(
    session: SessionDep,
    principal: PrincipalDep,
    reference: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[JournalEntryOut]:
    """Journal entries of the ledger, newest first, optionally for one reference (finance only)."""
    found, journal_lines = reconciliation.journal(session, principal, reference, limit)
    lines: dict[str, list[JournalLineOut]] = {e.id: [] for e in found}
    for line in journal_lines:
        lines[line.entry_id].append(JournalLineOut(account=line.account, amount_minor=line.amount_minor))
    return [
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
    ]


def _shares_out(shares: list[revenue.Share]) -> list[ShareOut]:
    return [ShareOut(party=s.party_kind, org_id=s.party_org_id, basis_points=s.basis_points) for s in shares]


@router.get("/products/{slug}/revenue-shares", response_model=list[ShareOut])
def get_shares(slug: str, session: SessionDep, principal: PrincipalDep) -> list[ShareOut]:
    """The product's revenue shares in basis points, per party."""
    return _shares_out(revenue.shares_for_reader(session, principal, slug))


@router.put("/products/{slug}/revenue-shares", response_model=list[ShareOut])
def put_shares(slug: str, body: SharesIn, session: SessionDep, principal: PrincipalDep) -> list[ShareOut]:
    """The regulator or finance sets a product's revenue shares (basis points summing to 10,000).
    New agreements freeze them; existing agreements keep theirs."""
    shares = revenue.set_shares(session, principal, slug, [(s.party, s.org_id, s.basis_points) for s in body.shares])
    return _shares_out(shares)


@router.get("/settlements", response_model=list[StatementOut])
def settlements(period: str, session: SessionDep, principal: PrincipalDep) -> list[StatementOut]:
    """Settlement statements per party for the period: operators and sources see their own."""
    return [
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
        )
        for s in statements.statements(session, principal, Period.parse(period))
    ]
