"""The buyer's invoices: list, detail with lines traced to usage records, the document, and how to pay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from billing import card_payments, documents, invoices
from billing.config import billing_settings
from billing.document_render import check_format, respond
from billing.endpoints import _out as present_invoices
from billing.models import Invoice, InvoiceStatus
from billing.schemas import InvoiceOut, UsageRecordOut
from billing.stripe_gateway import StripeGateway
from market.console.web import Console, ConsoleDep, check_csrf, page, redirect
from market.deps import SettingsDep, get_database
from market.errors import MarketError
from market.pagination import decode_cursor, encode_cursor

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

LINE_PAGE = 100


def _present(console: Console, found: list[Invoice]) -> list[InvoiceOut]:
    return present_invoices(console.session, found)


@router.get("/invoices")
def invoices_page(console: ConsoleDep) -> Response:
    """My invoices and public-interest statements, newest first."""
    found = invoices.list_invoices(
        console.session, console.user, status=None, period=None, overdue=False, buyer=None, limit=200, after=None
    )
    return page(
        console,
        "invoices.html",
        title="Invoices",
        crumbs=(("Invoices", None),),
        invoices=_present(console, list(found)),
    )


def _detail(console: Console, invoice_id: str, *, pay_error: str = "", status: int = 200) -> Response:
    settings = console.request.app.state.settings
    shown = _present(console, [invoices.visible_invoice(console.session, console.user, invoice_id)])[0]
    payable = shown.status == InvoiceStatus.FINALIZED.value and shown.due_minor > 0 and not shown.public_interest
    return page(
        console,
        "invoice.html",
        title="Invoice",
        subtitle=shown.number or shown.id,
        crumbs=(("Invoices", "/console/invoices"), (shown.number or shown.id, None)),
        invoice=shown,
        payable=payable,
        card=payable and StripeGateway.configured(settings),
        seller=billing_settings(),
        pay_error=pay_error,
        status_code=status,
    )


@router.get("/invoices/{invoice_id}")
def invoice_page(invoice_id: str, console: ConsoleDep) -> Response:
    """One invoice: its lines, each traced to its usage records, the document, and how to pay what is due."""
    return _detail(console, invoice_id[:40])


@router.get("/invoices/{invoice_id}/lines/{line_id}")
def line_page(invoice_id: str, line_id: str, console: ConsoleDep, cursor: str = "") -> Response:
    """The usage records one invoice line covers, a page at a time (oldest first)."""
    after = decode_cursor(cursor, 2) if cursor else None
    records = invoices.line_usage(console.session, console.user, invoice_id, line_id, LINE_PAGE + 1, after)
    shown = [UsageRecordOut.model_validate(r) for r in records[:LINE_PAGE]]
    last = records[LINE_PAGE - 1] if len(records) > LINE_PAGE else None
    return page(
        console,
        "invoice_line.html",
        title="Usage records of an invoice line",
        crumbs=(("Invoices", "/console/invoices"), (invoice_id, f"/console/invoices/{invoice_id}"), ("Line", None)),
        records=shown,
        next_cursor=encode_cursor((last.created_at, last.id)) if last else "",
    )


@router.get("/invoices/{invoice_id}/document")
def invoice_document(invoice_id: str, console: ConsoleDep, format: str = "html") -> Response:
    """The printable invoice, as HTML or PDF (the same documents as the API's)."""
    check_format(format)
    invoice = invoices.visible_invoice(console.session, console.user, invoice_id)
    return respond(documents.invoice_document(console.session, invoice, console.locale), format)


@router.post("/invoices/{invoice_id}/pay")
def pay_invoice(
    invoice_id: str,
    console: ConsoleDep,
    settings: SettingsDep,
    payment_method: Annotated[str, Form(min_length=1, max_length=200)],
) -> Response:
    """Pay what is due by card (where Stripe is configured); a declined card is shown on the invoice."""
    # The card path commits its attempt before calling Stripe and holds no transaction meanwhile.
    console.session.commit()
    try:
        outcome = card_payments.pay_by_card(
            get_database(console.request), settings, console.user, invoice_id, payment_method
        )
    except MarketError as error:
        console.session.rollback()
        return _detail(console, invoice_id, pay_error=console.message(error), status=error.status_code)
    if outcome.declined_code is not None:
        message = console.message(MarketError("card_declined", reason=outcome.declined_code))
        return _detail(console, invoice_id, pay_error=message, status=402)
    return redirect(console, f"/console/invoices/{invoice_id}?paid=1")
