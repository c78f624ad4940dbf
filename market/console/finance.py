"""Finance's pages: periods (run, finalize, reconcile, acknowledge, close), invoices, payments and credit
notes, the ledger, settlement statements and the charts. Every action calls the same services as /v1."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from billing import invoices, overview, payments, rating, reconciliation, repository, statements
from billing.config import Period
from billing.endpoints import _out as present_invoices
from billing.models import InvoiceStatus, PaymentStatus
from billing.recon_checks import Mismatch
from market import i18n
from market.console.filters import ListFilters
from market.console.vocabulary import N_
from market.console.web import Console, ConsoleDep, check_csrf, form_errors, page, redirect
from market.errors import MarketError, Unprocessable
from market.money import MINOR_UNITS
from market.pagination import decode_cursor, encode_cursor

router = APIRouter(prefix="/console/finance", include_in_schema=False, dependencies=[Depends(check_csrf)])

INVOICE_PAGE = 200
ENTRY_PAGE = 50
EXPORT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
DRILL_DOWN = {
    "invoice": "/console/finance/invoices/{}",
    "buyer": "/console/finance/invoices?buyer={}",
    "payment": "/console/finance/payments#{}",
    "journal_entry": "/console/finance/ledger#{}",
}
"""Where each object a mismatch names is shown (the others are shown as text)."""
WORDS = (
    N_("open"),
    N_("ended"),
    N_("billed"),
    N_("finalized"),
    N_("closed"),
    N_("succeeded"),
    N_("failed"),
    N_("acknowledged"),
    N_("bank_transfer"),
    N_("stripe"),
    N_("invoice"),
    N_("number"),
    N_("payment"),
    N_("reference"),
    N_("journal_entry"),
    N_("seller_name"),
    N_("seller_tax_id"),
    N_("seller_address"),
    N_("seller_bank"),
    N_("seller_bank_account"),
    N_("operator"),
    N_("source"),
    N_("platform"),
    N_("Finance"),
    N_("Billing periods"),
    N_("Payments received"),
    N_("Ledger"),
    N_("Settlement statements"),
    N_("Charts"),
    N_("Billed, paid and receivables"),
)
"""Words the templates translate from data: period, payment and party states and kinds, field names."""
AGE_LABELS = {
    "0-30": N_("0–30 days"),
    "31-60": N_("31–60 days"),
    "61-90": N_("61–90 days"),
    ">90": N_("over 90 days"),
}


def to_minor(text: str, currency: str) -> int:
    """An amount typed in major units ("120.50") as integer minor units; Unprocessable unless it fits."""
    digits = MINOR_UNITS.get(currency, 2)
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise Unprocessable("invalid_amount", amount=text[:40]) from None
    scaled = value.scaleb(digits)
    if not value.is_finite() or scaled != scaled.to_integral_value() or abs(scaled) > 10**15:
        raise Unprocessable("invalid_amount", amount=text[:40])
    return int(scaled)


def links(mismatch: Mismatch) -> list[tuple[str, str, str | None]]:
    """The objects a mismatch names, each with the page that shows it (or None)."""
    return [
        (kind, value, DRILL_DOWN[kind].format(value) if kind in DRILL_DOWN and value else None)
        for kind, value in mismatch.objects.items()
    ]


# -- periods ------------------------------------------------------------------------------------------


@router.get("")
@router.get("/periods")
def periods_page(console: ConsoleDep) -> Response:
    """Every period with its state, newest first, and what invoices miss about the seller and the buyers."""
    found = overview.periods(console.session, console.user)
    return page(
        console,
        "finance/periods.html",
        title="Billing periods",
        crumbs=(("Finance", None),),
        periods=found,
        seller_missing=overview.seller_missing(console.user),
        buyers_missing=overview.buyers_missing_details(console.session, console.user),
    )


def _period_page(console: Console, key: str, *, error: str = "", status: int = 200) -> Response:
    period = Period.parse(key)
    state = overview.period_state(console.session, console.user, period)
    report = reconciliation.reconcile(console.session, console.user, period)
    return page(
        console,
        "finance/period.html",
        title="Billing period",
        subtitle=period.key,
        crumbs=(("Billing periods", "/console/finance/periods"), (period.key, None)),
        state=state,
        report=report,
        links=links,
        error=error,
        status_code=status,
    )


@router.get("/periods/{key}")
def period_page(key: str, console: ConsoleDep) -> Response:
    """One period: its state, the actions it allows, and its reconciliation with every mismatch."""
    return _period_page(console, key[:7])


def _act(console: Console, key: str, action: str) -> Response:
    period = Period.parse(key[:7])
    actor = console.user
    try:
        if action == "run":
            summary = rating.run_period(console.session, period, actor=actor)
            query = f"done=run&invoices={summary.invoices_created}&lines={summary.lines_created}"
            query += f"&usage={summary.usage_linked}"
        elif action == "finalize":
            query = f"done=finalize&invoices={len(invoices.finalize_period(console.session, actor, period))}"
        else:
            reconciliation.close_period(console.session, actor, period)
            query = "done=close"
    except MarketError as error:
        console.session.rollback()
        return _period_page(console, period.key, error=console.message(error), status=error.status_code)
    return redirect(console, f"/console/finance/periods/{period.key}?{query}")


@router.post("/periods/{key}/run")
def run_period(key: str, console: ConsoleDep) -> Response:
    """Rate the period's usage into draft invoices (the same run as the scheduler's)."""
    return _act(console, key, "run")


@router.post("/periods/{key}/finalize")
def finalize_period(key: str, console: ConsoleDep) -> Response:
    """Finalize every draft invoice of the period."""
    return _act(console, key, "finalize")


@router.post("/periods/{key}/close")
def close_period(key: str, console: ConsoleDep) -> Response:
    """Close the period: refused while a mismatch is open or a draft is left."""
    return _act(console, key, "close")


@router.post("/periods/{key}/acknowledge")
def acknowledge(
    key: str,
    console: ConsoleDep,
    mismatch_key: Annotated[str, Form(max_length=64)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Accept one mismatch with a reason; the reason is kept, exported and shown to the regulator."""
    period = Period.parse(key[:7])
    try:
        reconciliation.acknowledge(console.session, console.user, period, mismatch_key, note)
    except MarketError as error:
        console.session.rollback()
        return _period_page(console, period.key, error=console.message(error), status=error.status_code)
    return redirect(console, f"/console/finance/periods/{period.key}?done=acknowledge#mismatches")


@router.get("/periods/{key}/reconciliation.{format}")
def export(key: str, format: str, console: ConsoleDep) -> Response:
    """The reconciliation as CSV or XLSX (the same files as the API's export)."""
    if format not in EXPORT_TYPES:
        raise Unprocessable("invalid_export_format", format=format[:10])
    report = reconciliation.reconcile(console.session, console.user, Period.parse(key[:7]))
    body = reconciliation.to_csv(report) if format == "csv" else reconciliation.to_xlsx(report)
    name = f"reconciliation-{report.period}.{format}"
    return Response(
        body, media_type=EXPORT_TYPES[format], headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


# -- invoices, payments, credit notes ----------------------------------------------------------------


INVOICE_FILTERS = {"state": 20, "buyer": 32, "period": 7, "overdue": 1, "min_amount": 30, "max_amount": 30}
"""The invoice list's filters and their lengths."""


@router.get("/invoices")
def invoices_page(console: ConsoleDep) -> Response:
    """Every invoice, filtered by `state`, `buyer`, `period`, `overdue` and total (`min_amount`, `max_amount`)."""
    actor = overview.require_finance(console.user)
    currency = console.request.app.state.settings.currency
    filters = ListFilters.read(console, INVOICE_FILTERS)
    values = filters.values
    low = filters.parse("min_amount", lambda text: to_minor(text, currency))
    high = filters.parse("max_amount", lambda text: to_minor(text, currency))
    found = invoices.list_invoices(
        console.session,
        actor,
        status=values["state"] or None,
        period=values["period"] or None,
        overdue=bool(values["overdue"]),
        buyer=values["buyer"] or None,
        limit=INVOICE_PAGE,
        after=None,
    )
    shown = [
        i
        for i in present_invoices(console.session, list(found))
        if (low is None or i.total_minor >= low) and (high is None or i.total_minor <= high)
    ]
    buyers = _buyers(console)
    return page(
        console,
        "finance/invoices.html",
        title="Invoices",
        crumbs=(("Finance", "/console/finance/periods"), ("Invoices", None)),
        invoices=shown,
        buyers=buyers,
        states=[s.value for s in InvoiceStatus],
        filters=values,
        errors=filters.errors,
        truncated=len(found) >= INVOICE_PAGE,
    )


def _invoice_page(
    console: Console,
    invoice_id: str,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    actor = overview.require_finance(console.user)
    invoice = invoices.visible_invoice(console.session, actor, invoice_id)
    shown = present_invoices(console.session, [invoice])[0]
    received = repository.payments_of(console.session, invoice.id)
    notes = repository.credit_notes_of(console.session, invoice.id)
    buyer = repository.org(console.session, invoice.buyer_org_id)
    return page(
        console,
        "finance/invoice.html",
        title="Invoice",
        subtitle=shown.number or shown.id,
        crumbs=(("Invoices", "/console/finance/invoices"), (shown.number or shown.id, None)),
        invoice=shown,
        payments=received,
        notes=notes,
        buyer=buyer,
        buyer_missing=overview.buyer_missing(buyer),
        errors=errors or {},
        form=form or {},
        status_code=status,
    )


@router.get("/invoices/{invoice_id}")
def invoice_page(invoice_id: str, console: ConsoleDep) -> Response:
    """One invoice: lines (each with its usage records), payments, credit notes; record a transfer, credit."""
    return _invoice_page(console, invoice_id[:40])


TRANSFER_FIELDS = {
    "invalid_amount": "amount",
    "payment_amount_positive": "amount",
    "payment_reference_required": "reference",
    "currency_mismatch": "amount",
    "nothing_due": "amount",
    "duplicate_payment_reference": "reference",
    "payment_needs_invoice_or_buyer": "buyer_org_id",
}
CREDIT_FIELDS = {
    "invalid_amount": "credit_amount",
    "credit_note_amount": "credit_amount",
    "credit_note_reason_required": "reason",
    "refund_amount": "refund_amount",
    "payment_reference_required": "refund_reference",
}


@router.post("/invoices/{invoice_id}/transfers")
def record_transfer(
    invoice_id: str,
    console: ConsoleDep,
    amount: Annotated[str, Form(max_length=40)] = "",
    reference: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Record a bank transfer received for the invoice (partial payments are fine)."""
    invoice = invoices.visible_invoice(console.session, console.user, invoice_id[:40])
    try:
        if not reference.strip():
            raise Unprocessable("payment_reference_required")
        payments.record_bank_transfer(
            console.session,
            console.user,
            invoice_id=invoice.id,
            buyer_org_id=None,
            amount_minor=to_minor(amount or "0", invoice.currency),
            currency=invoice.currency,
            reference=reference.strip(),
            received_at=None,
        )
    except MarketError as error:
        console.session.rollback()
        form = {"amount": amount, "reference": reference}
        errors = {k or "transfer": v for k, v in form_errors(console, error, TRANSFER_FIELDS).items()}
        return _invoice_page(console, invoice_id, errors=errors, form=form, status=error.status_code)
    return redirect(console, f"/console/finance/invoices/{invoice.id}?done=transfer")


@router.post("/invoices/{invoice_id}/credit-notes")
def credit_note(
    invoice_id: str,
    console: ConsoleDep,
    credit_amount: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    refund_amount: Annotated[str, Form(max_length=40)] = "",
    refund_reference: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Issue a credit note, refunding part of it if asked (by card when paid by card, else by transfer)."""
    invoice = invoices.visible_invoice(console.session, console.user, invoice_id[:40])
    try:
        refund = to_minor(refund_amount, invoice.currency) if refund_amount.strip() else 0
        payments.credit_and_refund(
            console.session,
            console.request.app.state.settings,
            console.user,
            invoice.id,
            amount_minor=to_minor(credit_amount or "0", invoice.currency),
            refund_minor=refund,
            reason=reason,
            reference=refund_reference,
        )
    except MarketError as error:
        console.session.rollback()
        form = {
            "credit_amount": credit_amount,
            "reason": reason,
            "refund_amount": refund_amount,
            "refund_reference": refund_reference,
        }
        fields = dict(CREDIT_FIELDS)
        if (
            error.code == "invalid_amount"
            and refund_amount.strip()
            and str(error.params.get("amount")) == refund_amount[:40]
        ):
            fields["invalid_amount"] = "refund_amount"
        errors = {k or "credit": v for k, v in form_errors(console, error, fields).items()}
        return _invoice_page(console, invoice_id, errors=errors, form=form, status=error.status_code)
    return redirect(console, f"/console/finance/invoices/{invoice.id}?done=credit")


def _buyers(console: Console) -> list[tuple[str, str]]:
    """The buyers finance has invoiced, by name (for the filters and the unapplied transfer form)."""
    everyone = invoices.list_invoices(
        console.session, console.user, status=None, period=None, overdue=False, buyer=None, limit=1000, after=None
    )
    names = repository.org_names(console.session, {i.buyer_org_id for i in everyone})
    return sorted(names.items(), key=lambda b: b[1])


def _payments_page(
    console: Console,
    status: str = "",
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    code: int = 200,
) -> Response:
    overview.require_finance(console.user)
    found = payments.visible_payments(console.session, console.user, status or None)[:500]
    notes = invoices.credit_notes(console.session, console.user)[:200]
    numbers = repository.invoice_numbers(
        console.session, {p.invoice_id for p in found if p.invoice_id} | {n.invoice_id for n in notes}
    )
    names = repository.org_names(console.session, {p.buyer_org_id for p in found})
    return page(
        console,
        "finance/payments.html",
        title="Payments received",
        crumbs=(("Finance", "/console/finance/periods"), ("Payments received", None)),
        payments=found,
        notes=notes,
        numbers=numbers,
        names=names,
        status=status,
        statuses=[s.value for s in PaymentStatus],
        buyers=_buyers(console),
        errors=errors or {},
        form=form or {},
        status_code=code,
    )


@router.get("/payments")
def payments_page(console: ConsoleDep, status: str = "") -> Response:
    """Payments received (bank transfers and card payments with their Stripe state) and credit notes."""
    return _payments_page(console, status[:20])


@router.post("/payments")
def record_unapplied(
    console: ConsoleDep,
    buyer_org_id: Annotated[str, Form(max_length=32)] = "",
    amount: Annotated[str, Form(max_length=40)] = "",
    reference: Annotated[str, Form(max_length=200)] = "",
    received_on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Record a transfer no invoice explains yet; reconciliation lists it until it is resolved or acknowledged."""
    currency = console.request.app.state.settings.currency
    form = {"buyer_org_id": buyer_org_id, "amount": amount, "reference": reference, "received_on": received_on}
    try:
        if not reference.strip():
            raise Unprocessable("payment_reference_required")
        received = None
        if received_on.strip():
            try:
                received = datetime.combine(date.fromisoformat(received_on.strip()), time(12), tzinfo=UTC)
            except ValueError:
                raise Unprocessable("invalid_request", detail="received_on: YYYY-MM-DD") from None
        payments.record_bank_transfer(
            console.session,
            console.user,
            invoice_id=None,
            buyer_org_id=buyer_org_id,
            amount_minor=to_minor(amount or "0", currency),
            currency=currency,
            reference=reference.strip(),
            received_at=received,
        )
    except MarketError as error:
        console.session.rollback()
        fields = {**TRANSFER_FIELDS, "invalid_request": "received_on", "organisation_not_found": "buyer_org_id"}
        errors = {k or "unapplied": v for k, v in form_errors(console, error, fields).items()}
        return _payments_page(console, errors=errors, form=form, code=error.status_code)
    return redirect(console, "/console/finance/payments?done=unapplied")


# -- ledger, statements, charts -----------------------------------------------------------------------


@router.get("/ledger")
def ledger_page(console: ConsoleDep, reference: str = "", cursor: str = "") -> Response:
    """Ledger balances by account and currency, and the journal, newest first, a page at a time."""
    actor = console.user
    after = decode_cursor(cursor, 2) if cursor else None
    rows, lines = reconciliation.journal(console.session, actor, reference[:64] or None, ENTRY_PAGE + 1, after)
    shown = list(rows[:ENTRY_PAGE])
    by_entry: dict[str, list[Any]] = {e.id: [] for e in shown}
    for line in lines:
        if line.entry_id in by_entry:
            by_entry[line.entry_id].append(line)
    last = shown[-1] if len(rows) > ENTRY_PAGE else None
    return page(
        console,
        "finance/ledger.html",
        title="Ledger",
        crumbs=(("Finance", "/console/finance/periods"), ("Ledger", None)),
        balances=reconciliation.balances(console.session, actor, None),
        entries=shown,
        lines=by_entry,
        reference=reference,
        next_cursor=encode_cursor((last.created_at, last.id)) if last else "",
    )


@router.get("/statements")
def statements_page(console: ConsoleDep, period: str = "") -> Response:
    """Revenue-share settlement statements per party for a period (the latest finalized one by default)."""
    actor = console.user
    known = overview.periods(console.session, actor)
    chosen = period[:7] or next((p.period for p in known if p.state in ("finalized", "closed")), known[0].period)
    found = statements.statements(console.session, actor, Period.parse(chosen))
    return page(
        console,
        "finance/statements.html",
        title="Settlement statements",
        crumbs=(("Finance", "/console/finance/periods"), ("Settlement statements", None)),
        statements=found,
        period=chosen,
        periods=[p.period for p in known],
    )


@router.get("/charts")
def charts_page(console: ConsoleDep) -> Response:
    """Billed against paid per period, and what is still due by age."""
    actor = console.user
    series = overview.billed_vs_paid(console.session, actor)
    ages = overview.receivables_by_age(console.session, actor)
    scale = Decimal(10) ** MINOR_UNITS.get(series.currency, 2)
    billed_label, paid_label = (i18n.gettext(console.locale, label) for label in (N_("Billed"), N_("Paid")))
    trend = {
        "type": "bar",
        "x": series.periods,
        "series": [
            {"name": billed_label, "data": [float(Decimal(v) / scale) for v in series.billed_minor]},
            {"name": paid_label, "data": [float(Decimal(v) / scale) for v in series.paid_minor]},
        ],
    }
    age_chart = {
        "type": "bar",
        "stack": True,
        "x": [i18n.gettext(console.locale, AGE_LABELS[bucket]) for bucket in overview.AGE_BUCKETS],
        "series": [
            {
                "name": currency,
                "data": [
                    float(Decimal(buckets[b]) / (Decimal(10) ** MINOR_UNITS.get(currency, 2)))
                    for b in overview.AGE_BUCKETS
                ],
            }
            for currency, buckets in ages.items()
        ],
    }
    return page(
        console,
        "finance/charts.html",
        title="Billed, paid and receivables",
        crumbs=(("Finance", "/console/finance/periods"), ("Charts", None)),
        series=series,
        ages=ages,
        buckets=overview.AGE_BUCKETS,
        trend_json=json.dumps(trend).replace("<", "\\u003c"),
        age_json=json.dumps(age_chart).replace("<", "\\u003c"),
    )
