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


def _latin(text: str) -> str:
    """The PDF's built-in fonts are Latin-1: other characters are shown as '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(session: Session, invoice: Invoice) -> bytes:
    """The same invoice as a one-file PDF (built-in Helvetica; see `_latin`)."""
    from fpdf import FPDF

    seller = billing_settings()
    buyer = repository.org(session, invoice.buyer_org_id)
    lines = repository.lines_of(session, [invoice.id])
    titles = repository.product_titles(session, {line.product_id for line in lines})
    notes = repository.credit_notes_of(session, invoice.id)
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    title = "Public-interest usage statement" if invoice.public_interest else "Invoice"
    if invoice.status == InvoiceStatus.DRAFT.value:
        title = "DRAFT " + title.lower()
    pdf.cell(0, 10, _latin(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    header = [
        f"Seller: {seller.seller_name}, {seller.seller_address}, tax ID {seller.seller_tax_id}",
        f"Bill to: {buyer.name if buyer else invoice.buyer_org_id} ({invoice.buyer_org_id})",
        f"Invoice number: {invoice.number or 'not yet numbered (draft)'}    Invoice ID: {invoice.id}",
        f"Billing period: {invoice.period}    Issue date: {_date(invoice.finalized_at)}    "
        f"Due date: {_date(invoice.due_at)}    Status: {invoice.status}",
    ]
    for text in header:
        pdf.multi_cell(0, 5, _latin(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    widths = (60, 70, 20, 30)
    pdf.set_font("Helvetica", "B", 9)
    for width, text in zip(widths, ("Product", "Description", "Quantity", "Amount"), strict=True):
        pdf.cell(width, 6, text, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", size=9)
    rows = [
        (
            titles.get(x.product_id, x.product_id),
            x.description,
            str(x.quantity),
            _money(x.amount_minor, invoice.currency),
        )
        for x in lines
    ]
    rows += [(f"Credit note {n.number}", n.reason, "", "-" + _money(n.amount_minor, n.currency)) for n in notes]
    for row in rows:
        for width, text in zip(widths, row, strict=True):
            pdf.cell(width, 6, _latin(text[:45]), align="R" if width in (20, 30) else "L")
        pdf.ln()
    pdf.ln(2)
    for label, amount in (
        ("Total", invoice.total_minor),
        ("Credited", invoice.credited_minor),
        ("Paid", invoice.paid_minor),
        ("Amount due", max(invoices.due_minor(invoice), 0)),
    ):
        pdf.cell(150, 6, label, align="R")
        pdf.cell(30, 6, _money(amount, invoice.currency), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.multi_cell(
        0, 5, _latin(f"Pay by bank transfer to {seller.seller_bank}, quoting {invoice.number or invoice.id}.")
    )
    return bytes(pdf.output())
