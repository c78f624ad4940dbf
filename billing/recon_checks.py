"""Reconciliation's checks of the books themselves: the journal against its sub-ledgers (one expected
entry per money event, and one total per account family), orphans of every kind, invoice lines
against their usage links, monthly fees, and Stripe's own records against ours.

Each check returns named mismatches (`Mismatch.reason`) with the objects involved; `reconciliation`
runs them all for a period.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from billing import finance_repository, ledger, recon_repository, repository, revenue
from billing.config import Period
from billing.models import Component, CreditNote, Distribution, Invoice, InvoiceStatus, Payment, PaymentStatus
from billing.stripe_gateway import StripeGateway, StripeUnavailable
from market.db import settings_of
from metering.pricing import PlanTerms


@dataclass
class Mismatch:
    reason: str
    """A stable code; docs/billing.md lists them all."""
    objects: dict[str, str]
    amount_minor: int
    detail: str
    currency: str = ""
    acknowledgement: dict[str, str] | None = None
    """Finance's acknowledgement (note, by, at), when there is one."""
    key: str = field(default="")
    """Stable across reconciliations: a hash of the reason and the objects."""

    def __post_init__(self) -> None:
        named = ";".join(f"{k}={v}" for k, v in sorted(self.objects.items()))
        self.key = hashlib.sha256(f"{self.reason}|{named}".encode()).hexdigest()[:32]


# -- the journal against its sub-ledgers ----------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The one journal entry a money event must have posted."""

    kind: str
    reference: str
    currency: str
    lines: dict[str, int]
    objects: dict[str, str]


def _lines(*pairs: tuple[str, int]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for account, amount in pairs:
        out[account] += amount
    return {a: v for a, v in out.items() if v != 0}


def expected_entries(
    invoices: Sequence[Invoice],
    notes: Sequence[CreditNote],
    received: Sequence[Payment],
    distributions: Sequence[Distribution],
) -> list[Expected]:
    """What the journal must hold for these invoices, credit notes, succeeded payments and distributions."""
    by_id = {i.id: i for i in invoices}
    paid: dict[str, int] = defaultdict(int)
    for payment in received:
        if payment.invoice_id:
            paid[payment.invoice_id] += payment.amount_minor
    out: list[Expected] = []
    for inv in invoices:
        if inv.status == InvoiceStatus.DRAFT.value:
            continue
        receivable = ledger.receivable(inv.buyer_org_id)
        who = {"invoice": inv.id, "number": inv.number or ""}
        total = inv.total_minor
        out.append(
            Expected(
                "invoice_finalized",
                inv.id,
                inv.currency,
                _lines((receivable, total), (ledger.BILLED_REVENUE, -total)),
                who,
            )
        )
        if inv.status == InvoiceStatus.VOID.value:
            open_amount = total - inv.credited_minor
            lines = _lines((ledger.BILLED_REVENUE, open_amount), (receivable, -open_amount))
            out.append(Expected("invoice_voided", inv.id, inv.currency, lines, who))
        if inv.status == InvoiceStatus.UNCOLLECTIBLE.value:
            due = total - inv.credited_minor - paid[inv.id]
            out.append(
                Expected(
                    "invoice_uncollectible",
                    inv.id,
                    inv.currency,
                    _lines((ledger.BAD_DEBT, due), (receivable, -due)),
                    who,
                )
            )
    for note in notes:
        inv = by_id[note.invoice_id]
        lines = _lines(
            (ledger.CREDIT_NOTES, note.amount_minor), (ledger.receivable(inv.buyer_org_id), -note.amount_minor)
        )
        out.append(Expected("credit_note", note.id, note.currency, lines, {"credit_note": note.id, "invoice": inv.id}))
    parts: dict[str, list[Distribution]] = defaultdict(list)
    for row in distributions:
        parts[row.payment_id].append(row)
    for payment in received:
        cash = (ledger.cash(payment.method), payment.amount_minor)
        lines = _lines(cash, (ledger.receivable(payment.buyer_org_id), -payment.amount_minor))
        kind = "payment" if payment.amount_minor > 0 else "refund"
        out.append(Expected(kind, payment.id, payment.currency, lines, {"payment": payment.id}))
        if parts.get(payment.id):
            rows = parts[payment.id]
            lines = _lines(
                (ledger.BILLED_REVENUE, sum(r.amount_minor for r in rows)),
                *((ledger.payable(r.party_kind, r.party_org_id), -r.amount_minor) for r in rows),
            )
            out.append(Expected("distribution", payment.id, payment.currency, lines, {"payment": payment.id}))
    return [e for e in out if e.lines]


def _family(account: str) -> str:
    if account.startswith("cash:"):
        return "ledger_cash_mismatch"
    if account.startswith("receivable:"):
        return "ledger_receivable_mismatch"
    if account.startswith("payable:") or account == "platform_revenue":
        return "ledger_payable_mismatch"
    return "ledger_account_mismatch"


def check_journal(
    expected: Sequence[Expected],
    posted: Sequence[recon_repository.PostedLine],
    orphans: Sequence[recon_repository.PostedLine],
) -> list[Mismatch]:
    """Each expected entry exactly once and equal to its event; no other entry; and the account families
    (cash per method, receivables per buyer, payables per party, the rest per account) per currency."""
    found: list[Mismatch] = []
    entries: dict[tuple[str, str], dict[str, tuple[str, dict[str, int]]]] = defaultdict(dict)
    for line in posted:
        currency, lines = entries[(line.kind, line.reference)].setdefault(line.entry_id, (line.currency, {}))
        lines[line.account] = lines.get(line.account, 0) + line.amount_minor
    wanted = {(e.kind, e.reference): e for e in expected}
    for key, event in wanted.items():
        actual = entries.get(key, {})
        objects = {**event.objects, "entry_kind": event.kind}
        amount = sum(v for v in event.lines.values() if v > 0)
        if not actual:
            found.append(
                Mismatch("journal_entry_missing", objects, amount, "no journal entry records it", event.currency)
            )
            continue
        if len(actual) > 1:
            found.append(
                Mismatch(
                    "journal_entry_duplicate",
                    {**objects, "entries": ",".join(sorted(actual))},
                    amount * (len(actual) - 1),
                    f"{len(actual)} journal entries record it",
                    event.currency,
                )
            )
        for entry_id, (currency, lines) in sorted(actual.items()):
            kept = {a: v for a, v in lines.items() if v != 0}
            if currency != event.currency or kept != event.lines:
                found.append(
                    Mismatch(
                        "journal_entry_mismatch",
                        {**objects, "journal_entry": entry_id},
                        sum(abs(kept.get(a, 0) - event.lines.get(a, 0)) for a in set(kept) | set(event.lines)),
                        f"posted {sorted(kept.items())} {currency}, "
                        f"expected {sorted(event.lines.items())} {event.currency}",
                        event.currency,
                    )
                )
    for key, actual in entries.items():
        if key not in wanted:
            for entry_id, (currency, lines) in actual.items():
                found.append(
                    Mismatch(
                        "journal_entry_unexpected",
                        {"journal_entry": entry_id, "entry_kind": key[0], "reference": key[1]},
                        sum(v for v in lines.values() if v > 0),
                        "no money event of the period explains this entry",
                        currency,
                    )
                )
    seen_orphans: set[str] = set()
    for line in orphans:
        if line.entry_id not in seen_orphans:
            seen_orphans.add(line.entry_id)
            found.append(
                Mismatch(
                    "journal_entry_orphan",
                    {"journal_entry": line.entry_id, "entry_kind": line.kind, "reference": line.reference},
                    sum(x.amount_minor for x in orphans if x.entry_id == line.entry_id and x.amount_minor > 0),
                    "its reference is no invoice, payment or credit note",
                    line.currency,
                )
            )
    want: dict[tuple[str, str], int] = defaultdict(int)
    have: dict[tuple[str, str], int] = defaultdict(int)
    for event in expected:
        for account, amount in event.lines.items():
            want[(account, event.currency)] += amount
    for line in [*posted, *orphans]:
        if line.account:
            have[(line.account, line.currency)] += line.amount_minor
    for account, currency in sorted(set(want) | set(have)):
        difference = have[(account, currency)] - want[(account, currency)]
        if difference:
            found.append(
                Mismatch(
                    _family(account),
                    {"account": account},
                    difference,
                    f"the ledger says {have[(account, currency)]}, its sub-ledger {want[(account, currency)]}",
                    currency,
                )
            )
    return found


# -- payments -------------------------------------------------------------------------------------


def check_payments(session: Session, invoices: Sequence[Invoice], received: Sequence[Payment]) -> list[Mismatch]:
    """`paid_minor` of each invoice against the payments behind it; payments with no invoice record or no date."""
    paid: dict[str, int] = defaultdict(int)
    for payment in received:
        if payment.invoice_id:
            paid[payment.invoice_id] += payment.amount_minor
    found = [
        Mismatch(
            "paid_minor_mismatch",
            {"invoice": inv.id, "number": inv.number or ""},
            inv.paid_minor - paid[inv.id],
            f"the invoice says {inv.paid_minor} paid, its payments add up to {paid[inv.id]}",
            inv.currency,
        )
        for inv in invoices
        if inv.paid_minor != paid[inv.id]
    ]
    for payment in recon_repository.payments_with_missing_invoice(session):
        found.append(
            Mismatch(
                "payment_orphan",
                {"payment": payment.id, "invoice": payment.invoice_id or ""},
                payment.amount_minor,
                "the payment names an invoice that does not exist",
                payment.currency,
            )
        )
    for payment in recon_repository.undated_payments(session):
        found.append(
            Mismatch(
                "payment_undated",
                {"payment": payment.id, "invoice": payment.invoice_id or ""},
                payment.amount_minor,
                "a succeeded payment with no date received: no period accounts for it",
                payment.currency,
            )
        )
    return found


def check_distributions(
    session: Session, period: Period, invoices: Sequence[Invoice], succeeded: Sequence[Payment]
) -> list[Mismatch]:
    """Each (agreement, party)'s distributions of the period against the period's split of what its
    invoices received (`revenue.period_split`). The split is a function of the payments and the
    frozen shares alone, so a distribution edited, moved to another party or deleted shows here,
    even when the journal was edited to match."""
    received: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for payment in succeeded:
        if payment.invoice_id:
            received[payment.currency][payment.invoice_id] += payment.amount_minor
    found: list[Mismatch] = []
    for currency in sorted({i.currency for i in invoices} | set(received)):
        weights = finance_repository.period_weights(session, period.key, currency)
        amounts = received.get(currency, {})
        agreements = {a for i in amounts for a, w in weights.get(i, {}).items() if w > 0}
        expected = revenue.period_split(
            (revenue.Received(i, amount, weights.get(i, {})) for i, amount in amounts.items()),
            revenue.shares_of(session, agreements),
        )
        stored = finance_repository.distributed_by_part(session, period.key, currency)
        for key in sorted(set(expected) | set(stored), key=lambda k: (k[0], k[1], k[2] or "")):
            difference = stored.get(key, 0) - expected.get(key, 0)
            if difference:
                agreement_id, kind, org = key
                found.append(
                    Mismatch(
                        "distribution_mismatch",
                        {"agreement": agreement_id, "party": f"{kind}:{org or ''}"},
                        difference,
                        f"distributed {stored.get(key, 0)}, the period's split gives {expected.get(key, 0)}",
                        currency,
                    )
                )
    return found


def check_stripe(session: Session, payments: Sequence[Payment]) -> list[Mismatch]:
    """Where Stripe is configured, each card payment's PaymentIntent as Stripe has it, against ours."""
    settings = settings_of(session)
    cards = [p for p in payments if p.method == "stripe" and p.amount_minor > 0 and p.stripe_payment_intent_id]
    if not cards or not StripeGateway.configured(settings):
        return []
    gateway = StripeGateway(settings)
    found: list[Mismatch] = []
    for payment in cards:
        objects = {"payment": payment.id, "payment_intent": payment.stripe_payment_intent_id or ""}
        try:
            state = gateway.retrieve(payment.stripe_payment_intent_id or "")
        except StripeUnavailable as error:
            found.append(Mismatch("stripe_unchecked", objects, payment.amount_minor, error.message, payment.currency))
            continue
        # Amounts are compared with what Stripe reported when the payment settled (stripe_amount_mismatch).
        theirs = state.status == "succeeded"
        ours = payment.status == PaymentStatus.SUCCEEDED.value
        if theirs != ours:
            found.append(
                Mismatch(
                    "stripe_status_mismatch",
                    objects,
                    payment.amount_minor,
                    f"Stripe says {state.status}, we say {payment.status}",
                    payment.currency,
                )
            )
    return found


# -- lines, links and fees ------------------------------------------------------------------------


def check_links(
    session: Session, period: Period, invoices: Sequence[Invoice]
) -> tuple[list[Mismatch], set[tuple[str, str, str]]]:
    """Each usage line against its links (count and amount) and links that name no usage record.
    Also returns the (agreement, component, source period) keys of lines that lost links."""
    currency = {i.id: i.currency for i in invoices}
    found: list[Mismatch] = []
    broken: set[tuple[str, str, str]] = set()
    for line in recon_repository.usage_lines_of_period(session, period.key):
        objects = {"invoice": line.invoice_id, "line": line.line_id}
        difference = line.amount_minor - line.usage_minor
        if line.links > line.records:
            detail = f"{line.links - line.records} of the line's links name usage records that do not exist"
            found.append(Mismatch("usage_link_orphan", objects, difference, detail, currency.get(line.invoice_id, "")))
        if line.records < line.quantity:
            broken.add((line.agreement_id, line.component, line.source_period))
            detail = (
                f"the line bills {line.quantity} usage records, {line.records} are still linked to it; "
                "the others are held back from billing"
            )
            found.append(Mismatch("usage_link_missing", objects, difference, detail, currency.get(line.invoice_id, "")))
        elif line.amount_minor != line.usage_minor or line.records != line.quantity:
            detail = (
                f"line says {line.amount_minor} for {line.quantity} records, "
                f"its {line.records} usage records add up to {line.usage_minor}"
            )
            found.append(
                Mismatch("line_usage_mismatch", objects, difference, detail, currency.get(line.invoice_id, ""))
            )
    return found, broken


def check_unlinked_usage(
    session: Session, period: Period, invoices: Sequence[Invoice], broken: set[tuple[str, str, str]]
) -> list[Mismatch]:
    """The period's usage on no line: not billed yet, late (after finalization), held back because the
    line it belongs to lost links (never billed twice), or linked to a line that does not exist."""
    finalized = {(i.buyer_org_id, i.currency) for i in invoices if i.status != InvoiceStatus.DRAFT.value}
    grouped: dict[tuple[str, str, str, str], list[int]] = {}
    for group in recon_repository.usage_on_no_line(session, period):
        source = period.key if group.month >= period.key else group.month
        if group.linked:
            reason = "usage_link_orphan"
        elif (group.agreement_id, group.charge_type, source) in broken:
            reason = "usage_link_missing"
        elif (group.buyer_org_id, group.currency) in finalized:
            reason = "usage_after_finalization"
        else:
            reason = "usage_not_invoiced"
        totals = grouped.setdefault((reason, group.buyer_org_id, group.agreement_id, group.currency), [0, 0])
        totals[0] += group.records
        totals[1] += group.amount_minor
    details = {
        "usage_link_orphan": "; they are linked to invoice lines that do not exist",
        "usage_link_missing": "; their line lost its links, so they are held back, never billed again",
        "usage_after_finalization": "; they go on the next period's invoice as an adjustment",
        "usage_not_invoiced": "; run billing for the period",
    }
    return [
        Mismatch(
            reason,
            {"buyer": buyer, "agreement": agreement},
            amount,
            f"{records} usage records not on any invoice" + details[reason],
            currency,
        )
        for (reason, buyer, agreement, currency), (records, amount) in sorted(grouped.items())
    ]


def check_monthly_fees(session: Session, period: Period, invoices: Sequence[Invoice]) -> list[Mismatch]:
    """Each commercial agreement with a monthly fee has one fee line of the right amount on its buyer's
    invoice of the period; no other agreement has one."""
    found: list[Mismatch] = []
    holders = {(i.buyer_org_id, i.currency): i for i in invoices if i.status != InvoiceStatus.VOID.value}
    fee_lines = [
        x for x in repository.lines_of(session, [i.id for i in invoices]) if x.component == Component.MONTHLY_FEE.value
    ]
    by_agreement: dict[str, list[str]] = defaultdict(list)
    agreements = {a.id: a for a in repository.agreements_overlapping(session, period)}
    agreements.update(repository.agreements_by_id(session, {x.agreement_id for x in fee_lines} - set(agreements)))
    currency = {i.id: i.currency for i in invoices}
    for line in fee_lines:
        by_agreement[line.agreement_id].append(line.id)
        agreement = agreements.get(line.agreement_id)
        terms = PlanTerms.from_snapshot(agreement.plan) if agreement else None
        due = _fee_due(agreement.purpose if agreement else "", terms, period)
        objects = {"invoice": line.invoice_id, "line": line.id, "agreement": line.agreement_id}
        if due == 0:
            found.append(
                Mismatch(
                    "monthly_fee_unexpected",
                    objects,
                    line.amount_minor,
                    "a monthly-fee line for an agreement without a monthly fee",
                    currency[line.invoice_id],
                )
            )
        elif line.amount_minor != due or line.source_period != period.key:
            found.append(
                Mismatch(
                    "monthly_fee_mismatch",
                    objects,
                    line.amount_minor - due,
                    f"the line says {line.amount_minor} for {line.source_period}, the agreement's fee is {due}",
                    currency[line.invoice_id],
                )
            )
    for agreement_id, lines in by_agreement.items():
        if len(lines) > 1:
            found.append(
                Mismatch(
                    "monthly_fee_duplicate",
                    {"agreement": agreement_id, "lines": ",".join(sorted(lines))},
                    0,
                    f"{len(lines)} monthly-fee lines for one agreement in one period",
                )
            )
    for agreement in agreements.values():
        terms = PlanTerms.from_snapshot(agreement.plan)
        due = _fee_due(agreement.purpose, terms, period)
        invoice = holders.get((agreement.buyer_org_id, agreement.currency))
        if due and invoice is not None and agreement.created_at < period.end and agreement.id not in by_agreement:
            found.append(
                Mismatch(
                    "monthly_fee_missing",
                    {"invoice": invoice.id, "agreement": agreement.id},
                    due,
                    "the agreement's monthly fee is on no line of its buyer's invoice",
                    agreement.currency,
                )
            )
    return found


def _fee_due(purpose: str, terms: PlanTerms | None, period: Period) -> int:
    if terms is None or purpose in repository.PUBLIC_PURPOSES or terms.monthly_fee_minor <= 0:
        return 0
    return terms.monthly_fee_minor * period.months_count


def by_currency(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for currency, amount in pairs:
        out[currency] += amount
    return dict(out)
