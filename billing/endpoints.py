"""HTTP routes: billing runs and periods, invoices (JSON and printable), credit notes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from billing import document_render, documents, invoices, rating, reconciliation, repository
from billing.config import Period
from billing.models import Invoice, InvoiceLine, InvoiceStatus
from billing.schemas import (
    BuyerOut,
    FinalizedOut,
    InvoiceOut,
    LineOut,
    PeriodOut,
    ReasonIn,
    RunIn,
    RunOut,
    UsageRecordOut,
)
from market.clock import utcnow
from market.deps import PrincipalDep, SessionDep
from market.errors import BadRequest
from market.pagination import CursorQuery, Key, LimitQuery, Page, cut, decode_cursor, page_of

router = APIRouter(prefix="/v1", tags=["billing"])


def _after(cursor: str | None, types: tuple[type, ...]) -> Key | None:
    """The sort key a cursor of an SQL-paged route carries, checked against the types of its order."""
    if not cursor:
        return None
    key = decode_cursor(cursor, len(types))
    if not all(isinstance(value, kind) for value, kind in zip(key, types, strict=True)):
        raise BadRequest("invalid_cursor")
    return key


def invoice_out(
    invoice: Invoice,
    lines: list[InvoiceLine],
    buyer_name: str,
    slugs: dict[str, str],
    privacy: dict[str, int] | None = None,
) -> InvoiceOut:
    due = invoices.due_minor(invoice)
    return InvoiceOut(
        id=invoice.id,
        number=invoice.number,
        buyer=BuyerOut(id=invoice.buyer_org_id, name=buyer_name),
        period=invoice.period,
        status=invoice.status,
        public_interest=invoice.public_interest,
        currency=invoice.currency,
        total_minor=invoice.total_minor,
        credited_minor=invoice.credited_minor,
        paid_minor=invoice.paid_minor,
        due_minor=due,
        created_at=invoice.created_at,
        finalized_at=invoice.finalized_at,
        due_at=invoice.due_at,
        paid_at=invoice.paid_at,
        overdue=invoice.status == InvoiceStatus.FINALIZED.value
        and due > 0
        and invoice.due_at is not None
        and invoice.due_at < utcnow(),
        lines=[
            LineOut(
                id=line.id,
                agreement_id=line.agreement_id,
                product_id=line.product_id,
                product=slugs.get(line.product_id, ""),
                component=line.component,
                source_period=line.source_period,
                description=line.description,
                quantity=line.quantity,
                bytes_scanned=line.bytes_scanned,
                unit_price_minor=line.unit_price_minor,
                amount_minor=line.amount_minor,
                usage_records=f"/v1/invoices/{invoice.id}/lines/{line.id}/usage",
                privacy_rho_nano=(privacy or {}).get(line.id, 0),
            )
            for line in lines
        ],
        document=f"/v1/invoices/{invoice.id}/document",
    )


def _out(session: SessionDep, found: list[Invoice]) -> list[InvoiceOut]:
    lines = invoices.lines_by_invoice(session, found)
    names = repository.org_names(session, {i.buyer_org_id for i in found})
    slugs = repository.product_slugs(session, {line.product_id for i in found for line in lines[i.id]})
    privacy = privacy_by_line(session, [line.id for i in found for line in lines[i.id]])
    return [invoice_out(i, lines[i.id], names.get(i.buyer_org_id, ""), slugs, privacy) for i in found]


def privacy_by_line(session: SessionDep, line_ids: list[str]) -> dict[str, int]:
    """Privacy budget (rho nano-units) the usage records of each line spent; lines without DP usage are absent."""
    from sqlalchemy import func, select

    from billing.models import InvoiceLineUsage
    from metering.models import UsageRecord

    if not line_ids:
        return {}
    rows = session.execute(
        select(InvoiceLineUsage.line_id, func.sum(UsageRecord.privacy_rho_nano))
        .join(UsageRecord, UsageRecord.id == InvoiceLineUsage.usage_record_id)
        .where(InvoiceLineUsage.line_id.in_(line_ids), UsageRecord.privacy_rho_nano > 0)
        .group_by(InvoiceLineUsage.line_id)
    ).all()
    return {str(line): int(total or 0) for line, total in rows}


@router.post("/billing/runs", response_model=RunOut, tags=["finance"])
def run_billing(body: RunIn, session: SessionDep, principal: PrincipalDep) -> RunOut:
    """Finance rates a period's usage into draft invoices (the scheduler runs the same code)."""
    period = Period.parse(body.period)
    summary = rating.run_period(session, period, actor=principal)
    finalized = len(invoices.finalize_period(session, principal, period)) if body.finalize else 0
    return RunOut(**summary.__dict__, finalized=finalized)


@router.get("/billing/periods", response_model=Page[PeriodOut], tags=["finance"])
def list_periods(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[PeriodOut]:
    """Billing periods with their runs, schedule and closing state, newest first (finance only)."""
    found = reconciliation.periods(session, principal)
    page, next_cursor = page_of(found, key=lambda p: (p.period,), limit=limit, cursor=cursor, descending=True)
    return Page(items=[PeriodOut.model_validate(p) for p in page], next_cursor=next_cursor)


@router.post("/billing/periods/{period}/finalize", response_model=FinalizedOut, tags=["finance"])
def finalize_period(period: str, session: SessionDep, principal: PrincipalDep) -> FinalizedOut:
    """Finalize every draft invoice of the period; the answer lists the invoices this call finalized."""
    parsed = Period.parse(period)
    done = _out(session, invoices.finalize_period(session, principal, parsed))
    return FinalizedOut(period=parsed.key, finalized=len(done), invoices=done)


@router.get("/invoices", response_model=Page[InvoiceOut])
def list_invoices(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    status: str | None = None,
    period: str | None = None,
    overdue: bool = False,
    buyer: Annotated[str | None, Query(description="The buyer organisation's id (finance only).")] = None,
) -> Page[InvoiceOut]:
    """A buyer's own invoices; finance sees all, filtered by status, period, buyer or overdue. Newest period
    first."""
    after = _after(cursor, (str, datetime, str))
    found = invoices.list_invoices(
        session, principal, status=status, period=period, overdue=overdue, buyer=buyer, limit=limit + 1, after=after
    )
    page, next_cursor = cut(found, limit, lambda i: (i.period, i.created_at, i.id))
    return Page(items=_out(session, page), next_cursor=next_cursor)


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(invoice_id: str, session: SessionDep, principal: PrincipalDep) -> InvoiceOut:
    """One invoice with its lines; a buyer sees its own, finance any."""
    return _out(session, [invoices.visible_invoice(session, principal, invoice_id)])[0]


@router.get("/invoices/{invoice_id}/lines/{line_id}/usage", response_model=Page[UsageRecordOut])
def line_usage(
    invoice_id: str,
    line_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[UsageRecordOut]:
    """The usage records an invoice line covers, oldest first."""
    after = _after(cursor, (datetime, str))
    records = invoices.line_usage(session, principal, invoice_id, line_id, limit + 1, after)
    page, next_cursor = cut(records, limit, lambda r: (r.created_at, r.id))
    return Page(items=[UsageRecordOut.model_validate(r) for r in page], next_cursor=next_cursor)


@router.get("/invoices/{invoice_id}/document", response_class=HTMLResponse, response_model=None)
def invoice_document(
    invoice_id: str, session: SessionDep, principal: PrincipalDep, format: str = "html", lang: str | None = None
) -> Response:
    """The invoice as a printable document: `?format=html` (default) or `?format=pdf`, in the caller's
    language (`?lang=zh-CN|en`, else the language cookie or Accept-Language; zh-CN by default)."""
    document_render.check_format(format)
    invoice = invoices.visible_invoice(session, principal, invoice_id)
    document = documents.invoice_document(session, invoice, document_render.document_locale(lang))
    return document_render.respond(document, format)


@router.post("/invoices/{invoice_id}/finalize", response_model=InvoiceOut, tags=["finance"])
def finalize_invoice(invoice_id: str, session: SessionDep, principal: PrincipalDep) -> InvoiceOut:
    """Finalize a draft invoice: it gets its number and due date and can be paid."""
    return _out(session, [invoices.finalize(session, principal, invoice_id)])[0]


@router.post("/invoices/{invoice_id}/void", response_model=InvoiceOut, tags=["finance"])
def void_invoice(invoice_id: str, body: ReasonIn, session: SessionDep, principal: PrincipalDep) -> InvoiceOut:
    """Void a finalized invoice that has no payments, with the reason."""
    return _out(session, [invoices.void(session, principal, invoice_id, body.reason)])[0]


@router.post("/invoices/{invoice_id}/uncollectible", response_model=InvoiceOut, tags=["finance"])
def uncollectible(invoice_id: str, body: ReasonIn, session: SessionDep, principal: PrincipalDep) -> InvoiceOut:
    """Mark a finalized invoice uncollectible, with the reason."""
    return _out(session, [invoices.mark_uncollectible(session, principal, invoice_id, body.reason)])[0]
