"""Invoices, credit notes and settlement statements as documents a person would accept, in zh_CN or en.

Each document is first assembled as a `Document` (the words in the reader's locale, every amount
formatted for it), then rendered as HTML or PDF by billing/document_render.py, so both formats say
the same thing. The seller is the platform, from MARKET_BILLING_SELLER_* settings; the buyer and
other parties come from their organisation profiles. A detail nobody provided is shown as
missing ("未提供" / "not provided"), never as a placeholder or a zero. The zh_CN documents also give
the total in Chinese capitals (大写金额).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from billing import invoices, repository
from billing.config import billing_settings
from billing.models import CreditNote, Invoice, InvoiceLine, InvoiceStatus
from billing.statements import Statement
from market import i18n
from market.accounts.models import Organisation, Role
from market.accounts.service import Principal
from market.capitals import chinese_capitals
from market.errors import NotFound
from market.i18n import N_

STATUS = {
    InvoiceStatus.DRAFT.value: N_("Draft"),
    InvoiceStatus.FINALIZED.value: N_("Finalized"),
    InvoiceStatus.PAID.value: N_("Paid"),
    InvoiceStatus.VOID.value: N_("Void"),
    InvoiceStatus.UNCOLLECTIBLE.value: N_("Uncollectible"),
}
COMPONENT = {
    "monthly_fee": N_("Monthly fee"),
    "billable": N_("Queries"),
    "trial": N_("Trial queries (free)"),
    "cap_reached": N_("Queries past the monthly cap (free)"),
    "free_public": N_("Public-interest queries (free, supervised)"),
}
PARTY = {"source": N_("Source department"), "operator": N_("Authorised operator"), "platform": N_("Platform")}


@dataclass
class Party:
    """One side of a document: a heading, the name, and labelled details (None: not provided)."""

    heading: str
    name: str | None
    details: list[tuple[str, str | None]]


@dataclass
class Document:
    """What a document says, in one locale, ready to render."""

    locale: str
    title: str
    reference: str
    facts: list[tuple[str, str | None]]
    parties: list[Party]
    columns: list[str]
    numeric: set[int]
    rows: list[list[str]]
    totals: list[tuple[str, str, bool]] = field(default_factory=list)
    capitals: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    def _(self, msgid: str, **params: object) -> str:
        return i18n.gettext(self.locale, msgid, **params)

    @property
    def missing(self) -> str:
        return self._("not provided")


def _date(value: datetime | None, locale: str) -> str | None:
    return i18n.format_date(value, locale) if value is not None else None


def seller(locale: str) -> Party:
    """The platform as seller, from configuration."""
    settings = billing_settings()
    return Party(
        i18n.gettext(locale, "Seller"),
        settings.seller_name or None,
        _profile(
            locale,
            uscc=settings.seller_tax_id,
            address=settings.seller_address,
            phone=settings.seller_phone,
            bank=settings.seller_bank,
            account=settings.seller_bank_account,
        ),
    )


def _profile(
    locale: str, *, uscc: str | None, address: str | None, phone: str | None, bank: str | None, account: str | None
) -> list[tuple[str, str | None]]:
    def _(msgid: str) -> str:
        return i18n.gettext(locale, msgid)

    return [
        (_("Unified social credit code"), uscc or None),
        (_("Address"), address or None),
        (_("Phone"), phone or None),
        (_("Bank"), bank or None),
        (_("Bank account"), account or None),
    ]


def organisation(locale: str, heading: str, org: Organisation | None, org_id: str) -> Party:
    """An organisation from its profile; its id stands in for the name only if the organisation is gone."""
    if org is None:
        return Party(heading, org_id, _profile(locale, uscc=None, address=None, phone=None, bank=None, account=None))
    contact = " ".join(part for part in (org.contact_name, org.contact_email) if part) or None
    details = _profile(
        locale,
        uscc=org.uscc,
        address=org.address,
        phone=org.contact_phone,
        bank=org.bank_name,
        account=org.bank_account,
    )
    details.insert(2, (i18n.gettext(locale, "Contact"), contact))
    return Party(heading, org.name, details)


def _line_text(line: InvoiceLine, period: str, locale: str) -> str:
    text = i18n.gettext(locale, COMPONENT.get(line.component, line.component))
    if line.source_period != period:
        return i18n.gettext(
            locale,
            "Adjustment: {component} of {period}, used after that period was invoiced",
            component=text,
            period=line.source_period,
        )
    return text


def _gb(scanned: int) -> str:
    """Bytes as decimal GB with three decimals, in integer arithmetic (no float in billing)."""
    if not scanned:
        return ""
    thousandths = (scanned + 500_000) // 1_000_000
    return f"{thousandths // 1000}.{thousandths % 1000:03d}"


def _capitals(amount_minor: int, currency: str, locale: str) -> tuple[str, str] | None:
    if locale != "zh_CN" or currency != "CNY":
        return None
    return i18n.gettext(locale, "Amount in Chinese capitals"), chinese_capitals(amount_minor)


def invoice_document(session: Session, invoice: Invoice, locale: str) -> Document:
    """An invoice (or public-interest statement): seller, buyer, dates, lines, totals, how to pay."""

    def _(msgid: str, **params: object) -> str:
        return i18n.gettext(locale, msgid, **params)

    def money(amount: int) -> str:
        return i18n.format_money(amount, invoice.currency, locale)

    lines = repository.lines_of(session, [invoice.id])
    titles = repository.product_titles(session, {line.product_id for line in lines})
    notes = repository.credit_notes_of(session, invoice.id)
    if invoice.public_interest:
        title = _("Public-interest usage statement (nothing is owed)")
    elif invoice.status == InvoiceStatus.DRAFT.value:
        title = _("DRAFT invoice (not yet valid for payment)")
    else:
        title = _("Invoice")
    reference = invoice.number or invoice.id
    due = max(invoices.due_minor(invoice), 0)
    rows = [
        [
            titles.get(line.product_id, line.product_id),
            line.agreement_id,
            _line_text(line, invoice.period, locale),
            i18n.format_number(line.quantity, locale),
            money(line.unit_price_minor) if line.unit_price_minor else "",
            _gb(line.bytes_scanned),
            money(line.amount_minor),
        ]
        for line in lines
    ]
    rows += [
        [
            "",
            "",
            _("Credit note {number}: {reason}", number=n.number, reason=n.reason),
            "",
            "",
            "",
            money(-n.amount_minor),
        ]
        for n in notes
    ]
    bank = billing_settings()
    pay_to = " ".join(part for part in (bank.seller_bank, bank.seller_bank_account) if part)
    return Document(
        locale=locale,
        title=title,
        reference=reference,
        facts=[
            (_("Invoice number"), invoice.number or _("not yet numbered (draft)")),
            (_("Invoice ID"), invoice.id),
            (_("Billing period"), invoice.period),
            (_("Issue date"), _date(invoice.finalized_at, locale)),
            (_("Due date"), _date(invoice.due_at, locale)),
            (_("Status"), _(STATUS.get(invoice.status, invoice.status))),
            (_("Currency"), invoice.currency),
        ],
        parties=[
            seller(locale),
            organisation(locale, _("Bill to"), repository.org(session, invoice.buyer_org_id), invoice.buyer_org_id),
        ],
        columns=[
            _("Product"),
            _("Agreement"),
            i18n.pgettext(locale, "invoice line", "Description"),
            _("Quantity"),
            _("Unit price"),
            _("GB scanned"),
            _("Amount"),
        ],
        numeric={3, 4, 5, 6},
        rows=rows,
        totals=[
            (_("Total"), money(invoice.total_minor), True),
            (_("Credited"), money(invoice.credited_minor), False),
            (i18n.pgettext(locale, "amount", "Paid"), money(invoice.paid_minor), False),
            (_("Amount due"), money(due), True),
        ],
        capitals=_capitals(invoice.total_minor, invoice.currency, locale),
        notes=[
            _(
                "Pay by bank transfer to {bank}, quoting {reference}, or by card through the marketplace.",
                bank=pay_to or _("(the seller's bank account is not provided)"),
                reference=reference,
            ),
            _(
                "Every line lists the usage records it covers at /v1/invoices/{invoice}/lines/<line id>/usage.",
                invoice=invoice.id,
            ),
        ],
    )


def credit_note_document(session: Session, note: CreditNote, invoice: Invoice, locale: str) -> Document:
    """A credit note: which invoice it corrects, by how much, why, and what is refunded."""

    def _(msgid: str, **params: object) -> str:
        return i18n.gettext(locale, msgid, **params)

    def money(amount: int) -> str:
        return i18n.format_money(amount, note.currency, locale)

    return Document(
        locale=locale,
        title=_("Credit note"),
        reference=note.number,
        facts=[
            (_("Credit note number"), note.number),
            (_("Issue date"), _date(note.created_at, locale)),
            (_("Corrects invoice"), invoice.number or invoice.id),
            (_("Billing period"), invoice.period),
            (_("Currency"), note.currency),
        ],
        parties=[
            seller(locale),
            organisation(locale, _("Bill to"), repository.org(session, invoice.buyer_org_id), invoice.buyer_org_id),
        ],
        columns=[_("Reason"), _("Amount")],
        numeric={1},
        rows=[[note.reason, money(note.amount_minor)]],
        totals=[
            (_("Credited"), money(note.amount_minor), True),
            (_("Refunded"), money(note.refund_minor), False),
        ],
        capitals=_capitals(note.amount_minor, note.currency, locale),
        notes=[_("This credit note reduces what is owed on invoice {invoice}.", invoice=invoice.number or invoice.id)],
    )


def statement_document(
    session: Session, period: str, statements: Sequence[Statement], recipient_org_id: str | None, locale: str
) -> Document:
    """The settlement statement (收益分配结算单) of a period: what each party received from paid amounts."""

    def _(msgid: str, **params: object) -> str:
        return i18n.gettext(locale, msgid, **params)

    settings = billing_settings()
    missing = _("not provided")
    orgs = {s.party_org_id: repository.org(session, s.party_org_id) for s in statements if s.party_org_id}
    rows, names = [], []
    for s in statements:
        org = orgs.get(s.party_org_id or "")
        if org is not None:
            name, code, account = org.name, org.uscc, org.bank_account
        elif s.party_kind == "platform":
            name = settings.seller_name or _("Platform")
            code, account = settings.seller_tax_id, settings.seller_bank_account
        else:
            name, code, account = s.party_name, None, None
        names.append(name)
        rows.append(
            [
                _(PARTY.get(s.party_kind, s.party_kind)),
                name,
                code or missing,
                account or missing,
                i18n.format_number(s.payments, locale),
                i18n.format_money(s.amount_minor, s.currency, locale),
            ]
        )
    currencies = {s.currency for s in statements}
    total = sum(s.amount_minor for s in statements)
    parties = [seller(locale)]
    if recipient_org_id is not None:
        parties.append(
            organisation(locale, _("Recipient"), repository.org(session, recipient_org_id), recipient_org_id)
        )
    totals = []
    capitals = None
    if len(currencies) == 1:
        currency = next(iter(currencies))
        totals.append((_("Total distributed"), i18n.format_money(total, currency, locale), True))
        capitals = _capitals(total, currency, locale)
    for s in statements:
        if s.ceiling_minor is not None and s.year_to_date_minor is not None:
            totals.append(
                (
                    _(
                        "{party}: revenue received this year, against the allowed revenue ({percent}%)",
                        party=rows[statements.index(s)][1],
                        percent=i18n.format_number((s.used_basis_points or 0) // 100, locale),
                    ),
                    f"{i18n.format_money(s.year_to_date_minor, s.currency, locale)} / "
                    f"{i18n.format_money(s.ceiling_minor, s.currency, locale)}",
                    s.over_ceiling,
                )
            )
    return Document(
        locale=locale,
        title=_("Settlement statement"),
        reference=f"{period}",
        facts=[(_("Billing period"), period), (_("Issue date"), i18n.format_date(_now(), locale))],
        parties=parties,
        columns=[
            _("Party"),
            _("Name"),
            _("Unified social credit code"),
            _("Bank account"),
            i18n.pgettext(locale, "count", "Payments"),
            _("Amount"),
        ],
        numeric={4, 5},
        rows=rows,
        totals=totals,
        capitals=capitals,
        notes=[_("Each amount received is split among the parties by the revenue shares frozen in its agreement.")]
        + ([] if rows else [_("Nothing was distributed in this period.")])
        + [
            _(
                "{party} has reached 80% of its allowed revenue; revenue above it is deducted next year.",
                party=rows[statements.index(s)][1],
            )
            if s.warning == "approaching"
            else _(
                "{party} has passed its allowed revenue; the excess will be deducted from next year's allowed revenue.",
                party=rows[statements.index(s)][1],
            )
            for s in statements
            if s.warning in ("approaching", "exceeded")
        ],
    )


def _now() -> datetime:
    from market.clock import utcnow

    return utcnow()


def visible_credit_note(session: Session, actor: Principal, note_id: str) -> tuple[CreditNote, Invoice]:
    """A credit note the caller may read (a buyer's own, or any for finance), with the invoice it corrects."""
    note = session.get(CreditNote, note_id)
    if note is None:
        raise NotFound("credit_note_not_found", note=note_id)
    try:
        invoice = invoices.visible_invoice(session, actor, note.invoice_id)
    except NotFound:
        raise NotFound("credit_note_not_found", note=note_id) from None
    return note, invoice


def statement_recipient(actor: Principal) -> str | None:
    """Whose statement a party reads: its own organisation; finance and the regulator read every party's."""
    return actor.org_id if actor.role in (Role.OPERATOR, Role.SOURCE) else None
