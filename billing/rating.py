"""Rating: turn a period's usage records into draft invoices, set-based, idempotently.

One run of a period, under the period's lock (and a global billing lock, so that concurrent runs
of different periods never race for the same late usage):
1. every buyer with unbilled usage, and every agreement holder of the period, gets a draft invoice
   (unless its invoice for the period is already finalized: that usage waits for the next period);
2. one line per (agreement, charge component, source period) is ensured, plus a monthly-fee line;
3. every unbilled usage record is linked to its line with one INSERT ... SELECT;
4. line and invoice totals are recomputed from the links.
Running it again links nothing new, so nothing changes unless new usage arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from billing import invoices, recon_repository, repository
from billing.config import Period
from billing.models import Component, Invoice, InvoiceLine, InvoiceStatus
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import new_id, utcnow
from metering.pricing import PlanTerms

COMPONENT_TEXT = {
    Component.MONTHLY_FEE.value: "Monthly fee",
    Component.BILLABLE.value: "Queries",
    Component.TRIAL.value: "Trial queries (free)",
    Component.CAP_REACHED.value: "Queries past the monthly cap (free)",
    Component.FREE_PUBLIC.value: "Public-interest queries (free, supervised)",
}


@dataclass(frozen=True)
class RunSummary:
    period: str
    invoices_created: int
    lines_created: int
    usage_linked: int
    draft_invoices: int
    draft_total_minor: int


def run_period(
    session: Session, period: Period, *, now: datetime | None = None, actor: Principal | None = None
) -> RunSummary:
    """Rate an ended `period`'s usage (and late usage of earlier periods) into draft invoices. Idempotent.

    Finance only; `actor=None` is the CLI or the scheduler acting for the platform."""
    if actor is not None:
        actor.require(Role.FINANCE)
    now = now or utcnow()
    invoices.require_ended(period, now)
    with repository.batch_cache(session):
        return _run(session, period, now)


def _run(session: Session, period: Period, now: datetime) -> RunSummary:
    row = invoices.lock_open_period(session, period)
    row.runs += 1
    row.last_run_at = now

    agreements = repository.agreements_overlapping(session, period)
    groups = repository.unbilled_groups(session, period)
    # Usage of a line that lost links (someone deleted them) is held back: billing it again would bill
    # usage already invoiced, perhaps paid. Reconciliation reports it as usage_link_missing.
    held = recon_repository.lines_missing_links(
        session, {(g.agreement_id, g.component, g.source_period) for g in groups}
    )
    groups = [g for g in groups if (g.agreement_id, g.component, g.source_period) not in held]
    existing = {(i.buyer_org_id, i.currency) for i in repository.invoices_of_period(session, period.key)}
    wanted = {(g.buyer_org_id, g.currency) for g in groups}
    wanted |= {(a.buyer_org_id, a.currency) for a in agreements if a.created_at < period.end}
    new_invoices = [
        {
            "id": new_id("inv"),
            "buyer_org_id": buyer,
            "period": period.key,
            "currency": currency,
            "status": InvoiceStatus.DRAFT.value,
            "public_interest": False,
            "total_minor": 0,
            "credited_minor": 0,
            "paid_minor": 0,
            "created_at": now,
            "updated_at": now,
            "status_reason": "",
        }
        for buyer, currency in sorted(wanted - existing)
    ]
    repository.bulk_insert(session, Invoice, new_invoices)
    drafts = {
        (i.buyer_org_id, i.currency): i.id
        for i in repository.invoices_of_period(session, period.key, status=InvoiceStatus.DRAFT.value)
    }

    # Lines and their new totals come from the grouped usage; the links are then written in one
    # statement over the same rows (the run holds the billing lock, and usage is append-only).
    plans = {a.id: PlanTerms.from_snapshot(a.plan) for a in agreements}
    missing = {g.agreement_id for g in groups} - set(plans)
    plans.update(
        {a.id: PlanTerms.from_snapshot(a.plan) for a in repository.agreements_by_id(session, missing).values()}
    )
    keys = repository.existing_line_keys(session, period.key)
    current = repository.line_totals(session, period.key)
    new_lines: dict[str, dict[str, object]] = {}
    changes: dict[str, dict[str, object]] = {}
    expected = 0
    for group in groups:
        invoice_id = drafts.get((group.buyer_org_id, group.currency))
        if invoice_id is None:
            continue  # the buyer's invoice for the period is finalized: this usage waits for the next period
        expected += group.records
        key = (invoice_id, group.agreement_id, group.component, group.source_period)
        line_id = keys.get(key)
        if line_id is None:
            line = _line(
                invoice_id, group.agreement_id, group.product_id, group.component, group.source_period, period.key
            )
            line.update(quantity=group.records, amount_minor=group.amount_minor, bytes_scanned=group.bytes_scanned)
            if group.component == Component.BILLABLE.value and group.agreement_id in plans:
                line["unit_price_minor"] = plans[group.agreement_id].per_query_minor
            keys[key] = str(line["id"])
            new_lines[str(line["id"])] = line
        else:
            quantity, amount, scanned = current[line_id]
            changes[line_id] = {
                "id": line_id,
                "quantity": quantity + group.records,
                "amount_minor": amount + group.amount_minor,
                "bytes_scanned": scanned + group.bytes_scanned,
            }
    for agreement in agreements:
        invoice_id = drafts.get((agreement.buyer_org_id, agreement.currency))
        terms = PlanTerms.from_snapshot(agreement.plan)
        public = agreement.purpose in repository.PUBLIC_PURPOSES
        fee_key = (invoice_id or "", agreement.id, Component.MONTHLY_FEE.value, period.key)
        if invoice_id is None or public or terms.monthly_fee_minor <= 0 or fee_key in keys:
            continue
        fee = _line(invoice_id, agreement.id, agreement.product_id, Component.MONTHLY_FEE.value, period.key, period.key)
        fee.update(
            quantity=period.months_count,
            unit_price_minor=terms.monthly_fee_minor,
            amount_minor=terms.monthly_fee_minor * period.months_count,
        )
        keys[fee_key] = str(fee["id"])
        new_lines[str(fee["id"])] = fee
    repository.bulk_insert(session, InvoiceLine, list(new_lines.values()))
    repository.update_lines(session, list(changes.values()))
    linked = repository.link_usage(session, period, held) if expected else 0
    if linked != expected:
        # Usage arrived between the scan and the links: recount the lines from their links.
        fixes = []
        totals = repository.line_totals(session, period.key)
        for line_id, queries, amount, scanned in repository.usage_totals_by_line(session, period.key):
            if totals.get(line_id) != (queries, amount, scanned):
                fixes.append({"id": line_id, "quantity": queries, "amount_minor": amount, "bytes_scanned": scanned})
        repository.update_lines(session, fixes)
        linked = max(linked, expected)
    repository.refresh_draft_totals(session, period.key, now)
    _mark_public_interest(session, period)
    session.flush()
    session.expire_all()
    final_drafts = repository.invoices_of_period(session, period.key, status=InvoiceStatus.DRAFT.value)
    return RunSummary(
        period=period.key,
        invoices_created=len(new_invoices),
        lines_created=len(new_lines),
        usage_linked=linked,
        draft_invoices=len(final_drafts),
        draft_total_minor=sum(i.total_minor for i in final_drafts),
    )


def _line(
    invoice_id: str, agreement_id: str, product_id: str, component: str, source: str, period: str
) -> dict[str, object]:
    text = COMPONENT_TEXT.get(component, component)
    if source != period:
        text = f"Adjustment: {text.lower()} of {source}, used after that period was invoiced"
    return {
        "id": new_id("inl"),
        "invoice_id": invoice_id,
        "agreement_id": agreement_id,
        "product_id": product_id,
        "component": component,
        "source_period": source,
        "quantity": 0,
        "bytes_scanned": 0,
        "unit_price_minor": 0,
        "amount_minor": 0,
        "description": text,
    }


def _mark_public_interest(session: Session, period: Period) -> None:
    """A draft is a public-interest statement when every agreement it covers is public-interest."""
    drafts = repository.invoices_of_period(session, period.key, status=InvoiceStatus.DRAFT.value)
    lines = repository.lines_of(session, [d.id for d in drafts])
    by_invoice: dict[str, set[str]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice_id, set()).add(line.agreement_id)
    purposes = {a.id: a.purpose for a in repository.agreements_overlapping(session, period)}
    purposes.update(
        {a.id: a.purpose for a in repository.agreements_by_id(session, {x.agreement_id for x in lines}).values()}
    )
    holders: dict[str, set[str]] = {}
    for agreement in repository.agreements_overlapping(session, period):
        holders.setdefault(agreement.buyer_org_id, set()).add(agreement.id)
    for draft in drafts:
        covered = by_invoice.get(draft.id, set()) | holders.get(draft.buyer_org_id, set())
        public = bool(covered) and all(purposes.get(a) in repository.PUBLIC_PURPOSES for a in covered)
        if draft.public_interest != public:
            draft.public_interest = public
