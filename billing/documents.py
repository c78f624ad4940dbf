"""The invoice as a document a person would accept: seller, buyer, number, dates, lines, totals."""

from __future__ import annotations

from html import escape

from sqlalchemy.orm import Session

from billing import invoices, repository
from billing.config import billing_settings
from billing.models import Invoice, InvoiceStatus
from market.money import Money


def _money(amount: int, currency: str) -> str:
    return Money(amount, currency).format()


def _gb(scanned: int) -> str:
    """Bytes as decimal GB with three decimals, in integer arithmetic (no float in billing)."""
    if not scanned:
        return ""
    thousandths = (scanned + 500_000) // 1_000_000
    return f"{thousandths // 1000}.{thousandths % 1000:03d}"


def _date(value: object) -> str:
    return value.strftime("%Y-%m-%d") if value is not None and hasattr(value, "strftime") else "-"


def invoice_html(session: Session, invoice: Invoice) -> str:
    """A self-contained, printable HTML invoice (or public-interest statement)."""
    seller = billing_settings()
    buyer = repository.org(session, invoice.buyer_org_id)
    lines = repository.lines_of(session, [invoice.id])
    titles = repository.product_titles(session, {line.product_id for line in lines})
    notes = repository.credit_notes_of(session, invoice.id)
    if invoice.public_interest:
        kind = "Public-interest usage statement (nothing is owed)"
    elif invoice.status == InvoiceStatus.DRAFT.value:
        kind = "DRAFT invoice (not yet valid for payment)"
    else:
        kind = "Invoice"
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>"
        "<td class=n>{}</td></tr>".format(
            escape(titles.get(line.product_id, line.product_id)),
            escape(line.agreement_id),
            escape(line.description),
            line.quantity,
            _money(line.unit_price_minor, invoice.currency) if line.unit_price_minor else "",
            _gb(line.bytes_scanned),
            _money(line.amount_minor, invoice.currency),
        )
        for line in lines
    )
    credit_rows = "".join(
        f"<tr><td colspan=6>Credit note {escape(n.number)}: {escape(n.reason)}</td>"
        f"<td class=n>-{_money(n.amount_minor, n.currency)}</td></tr>"
        for n in notes
    )
    due = invoices.due_minor(invoice)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(invoice.number or invoice.id)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ccc;padding:.3em;text-align:left}}.n{{text-align:right}}
.parties{{display:flex;justify-content:space-between;margin:1em 0}}</style></head>
<body>
<h1>{escape(kind)}</h1>
<div class="parties">
<div><strong>Seller</strong><br>{escape(seller.seller_name)}<br>{escape(seller.seller_address)}<br>
Tax ID: {escape(seller.seller_tax_id)}</div>
<div><strong>Bill to</strong><br>{escape(buyer.name if buyer else invoice.buyer_org_id)}<br>
Organisation ID: {escape(invoice.buyer_org_id)}</div>
</div>
<table>
<tr><th>Invoice number</th><td>{escape(invoice.number or "not yet numbered (draft)")}</td></tr>
<tr><th>Invoice ID</th><td>{escape(invoice.id)}</td></tr>
<tr><th>Billing period</th><td>{escape(invoice.period)}</td></tr>
<tr><th>Issue date</th><td>{_date(invoice.finalized_at)}</td></tr>
<tr><th>Due date</th><td>{_date(invoice.due_at)}</td></tr>
<tr><th>Status</th><td>{escape(invoice.status)}</td></tr>
<tr><th>Currency</th><td>{escape(invoice.currency)}</td></tr>
</table>
<h2>Lines</h2>
<table>
<tr><th>Product</th><th>Agreement</th><th>Description</th><th class=n>Quantity</th><th class=n>Unit price</th>
<th class=n>GB scanned</th>
<th class=n>Amount</th></tr>
{rows}
{credit_rows}
<tr><th colspan=6>Total</th><th class=n>{_money(invoice.total_minor, invoice.currency)}</th></tr>
<tr><td colspan=6>Credited</td><td class=n>{_money(invoice.credited_minor, invoice.currency)}</td></tr>
<tr><td colspan=6>Paid</td><td class=n>{_money(invoice.paid_minor, invoice.currency)}</td></tr>
<tr><th colspan=6>Amount due</th><th class=n>{_money(max(due, 0), invoice.currency)}</th></tr>
</table>
<p>Pay by bank transfer to {escape(seller.seller_bank)}, quoting {escape(invoice.number or invoice.id)},
or by card through the marketplace. Every line lists the usage records it covers at
/v1/invoices/{escape(invoice.id)}/lines/&lt;line id&gt;/usage.</p>
</body></html>
"""
