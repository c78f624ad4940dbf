"""The buyer's invoices: list, detail with lines traced to usage records, the document, and how to pay."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from billing import card_payments, documents, invoices
from billing.config import billing_settings
from billing.document_render import check_format, respond
from billing.endpoints import _out as present_invoices
from billing.models import Invoice, InvoiceStatus
from billing.schemas import InvoiceOut, UsageRecordOut
from billing.stripe_gateway import CardDeclined, StripeGateway
from market.console.web import Console, ConsoleDep, ReadConsoleDep, check_csrf, page, redirect
from market.deps import SettingsDep, get_database
from market.errors import MarketError
from market.i18n import N_
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


def _detail(
    console: Console,
    invoice_id: str,
    *,
    pay_error: str = "",
    card_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
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
        card_errors=card_errors or {},
        this_year=console.now_year(),
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


@dataclass(frozen=True)
class CardForm:
    """The card form's fields as typed (card data is kept in memory for this request only)."""

    number: str
    exp_month: str
    exp_year: str
    cvc: str


async def card_form(request: Request) -> CardForm:
    form = await request.form()

    def field(name: str) -> str:
        value = form.get(name)
        return value.strip()[:40] if isinstance(value, str) else ""

    return CardForm(field("card_number"), field("exp_month"), field("exp_year"), field("cvc"))


def _card(sent: CardForm, year: int) -> tuple[card_payments.CardDetails | None, dict[str, str]]:
    """The card's details, or the messages to show next to the fields that are not right."""
    errors: dict[str, str] = {}
    number = re.sub(r"[\s-]", "", sent.number)
    if not re.fullmatch(r"\d{12,19}", number):
        errors["card_number"] = N_("Enter the card number: 12 to 19 digits, as printed on the card.")
    month = int(sent.exp_month) if sent.exp_month.isdigit() else 0
    if not 1 <= month <= 12:
        errors["exp_month"] = N_("Choose the month the card expires.")
    full_year = int(sent.exp_year) if sent.exp_year.isdigit() else 0
    full_year += 2000 if 0 < full_year < 100 else 0
    if not year <= full_year <= year + 20:
        errors["exp_year"] = N_("Enter the year the card expires, e.g. {year}.")
    if not re.fullmatch(r"\d{3,4}", sent.cvc):
        errors["cvc"] = N_("Enter the 3 or 4 digits of the security code on the back of the card.")
    if errors:
        return None, errors
    return card_payments.CardDetails(number, month, full_year, sent.cvc), {}


@router.post("/invoices/{invoice_id}/pay")
def pay_invoice(
    invoice_id: str,
    sent: Annotated[CardForm, Depends(card_form)],
    console: ReadConsoleDep,
    settings: SettingsDep,
) -> Response:
    """Pay what is due by card (where Stripe is configured): the card form's details become a Stripe payment
    method, charged once through a PaymentIntent; a declined card is shown on the invoice."""
    year = console.now_year()
    card, errors = _card(sent, year)
    if card is None:
        shown = {name: console.translate(text, year=year) for name, text in errors.items()}
        return _detail(console, invoice_id, card_errors=shown, status=422)
    # The card path commits its attempt before calling Stripe and holds no transaction meanwhile.
    console.session.commit()
    try:
        payment_method = card_payments.card_payment_method(settings, card)
        outcome = card_payments.pay_by_card(
            get_database(console.request), settings, console.user, invoice_id, payment_method
        )
    except CardDeclined as refused:
        message = console.message(MarketError("card_declined", reason=refused.code))
        return _detail(console, invoice_id, pay_error=message, status=402)
    except MarketError as error:
        console.session.rollback()
        return _detail(console, invoice_id, pay_error=console.message(error), status=error.status_code)
    if outcome.declined_code is not None:
        message = console.message(MarketError("card_declined", reason=outcome.declined_code))
        return _detail(console, invoice_id, pay_error=message, status=402)
    return redirect(console, f"/console/invoices/{invoice_id}?paid=1")
