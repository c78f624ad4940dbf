"""Finance's overview: each period's state as the console shows it, billed against paid over time,
receivables by age, and the seller's and buyers' details that invoices need but nobody entered yet."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from billing import repository
from billing.config import Period, billing_settings
from billing.models import BillingPeriod, Invoice, InvoiceStatus, PeriodStatus
from market.accounts.models import Organisation, OrgKind, Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import settings_of

STATES = ("open", "ended", "billed", "finalized", "closed")
"""A period is `open` until its end; `ended` once over and not billed; `billed` while it has draft invoices;
`finalized` once billed with no drafts left; `closed` when finance closed it."""
AGE_BUCKETS = ("0-30", "31-60", "61-90", ">90")
COUNTED = (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value, InvoiceStatus.UNCOLLECTIBLE.value)


@dataclass
class PeriodState:
    period: str
    state: str
    runs: int = 0
    last_run_at: datetime | None = None
    closed_at: datetime | None = None
    invoices: int = 0
    drafts: int = 0
    ends: datetime | None = None


def require_finance(actor: Principal) -> Principal:
    """Finance's own views of invoices (all buyers, with payment and credit forms) are for finance only; buyers
    read their own invoices through their pages."""
    actor.require(Role.FINANCE)
    return actor


def state_of(period: Period, row: BillingPeriod | None, drafts: int, invoices: int, now: datetime) -> str:
    if row is not None and row.status == PeriodStatus.CLOSED.value:
        return "closed"
    if now < period.end:
        return "open"
    if row is None or (row.runs == 0 and invoices == 0):
        return "ended"
    return "billed" if drafts else "finalized"


def _counts(session: Session) -> dict[str, tuple[int, int]]:
    rows = session.execute(
        select(
            Invoice.period,
            func.count(),
            func.sum(case((Invoice.status == InvoiceStatus.DRAFT.value, 1), else_=0)),
        ).group_by(Invoice.period)
    ).all()
    return {p: (int(n), int(d or 0)) for p, n, d in rows}


def periods(session: Session, actor: Principal, recent: int = 3) -> list[PeriodState]:
    """Every period with a run or an invoice, and the current and `recent` latest periods, newest first
    (finance only)."""
    actor.require(Role.FINANCE)
    now = utcnow()
    rows = {r.period: r for r in repository.list_periods(session)}
    counts = _counts(session)
    keys = set(rows) | set(counts)
    current = Period.containing(now)
    keys.add(current.key)
    walk = current
    for _ in range(recent):
        walk = walk.previous()
        keys.add(walk.key)
    out = []
    for key in sorted(keys, reverse=True):
        period = Period.parse(key)
        row = rows.get(key)
        invoices, drafts = counts.get(key, (0, 0))
        out.append(
            PeriodState(
                period=key,
                state=state_of(period, row, drafts, invoices, now),
                runs=row.runs if row else 0,
                last_run_at=row.last_run_at if row else None,
                closed_at=row.closed_at if row else None,
                invoices=invoices,
                drafts=drafts,
                ends=period.end,
            )
        )
    return out


def period_state(session: Session, actor: Principal, period: Period) -> PeriodState:
    """One period's state (finance only)."""
    actor.require(Role.FINANCE)
    row = repository.get_period(session, period.key)
    invoices, drafts = _counts(session).get(period.key, (0, 0))
    return PeriodState(
        period=period.key,
        state=state_of(period, row, drafts, invoices, utcnow()),
        runs=row.runs if row else 0,
        last_run_at=row.last_run_at if row else None,
        closed_at=row.closed_at if row else None,
        invoices=invoices,
        drafts=drafts,
        ends=period.end,
    )


@dataclass
class Series:
    currency: str
    periods: list[str] = field(default_factory=list)
    billed_minor: list[int] = field(default_factory=list)
    paid_minor: list[int] = field(default_factory=list)


def billed_vs_paid(session: Session, actor: Principal, last: int = 12) -> Series:
    """Per period, in the marketplace's currency: what finalized invoices billed (less credit notes) and what
    was paid on them (finance only). The latest `last` periods with invoices, oldest first."""
    actor.require(Role.FINANCE)
    currency = settings_of(session).currency
    rows = session.execute(
        select(
            Invoice.period,
            func.sum(Invoice.total_minor - Invoice.credited_minor),
            func.sum(Invoice.paid_minor),
        )
        .where(Invoice.status.in_(COUNTED), Invoice.currency == currency, Invoice.public_interest.is_(False))
        .group_by(Invoice.period)
        .order_by(Invoice.period.desc())
        .limit(last)
    ).all()
    series = Series(currency)
    for period, billed, paid in reversed(rows):
        series.periods.append(period)
        series.billed_minor.append(int(billed or 0))
        series.paid_minor.append(int(paid or 0))
    return series


def bucket_of(days: int) -> str:
    """The age bucket of a receivable `days` after its invoice was finalized."""
    if days <= 30:
        return AGE_BUCKETS[0]
    if days <= 60:
        return AGE_BUCKETS[1]
    if days <= 90:
        return AGE_BUCKETS[2]
    return AGE_BUCKETS[3]


def receivables_by_age(session: Session, actor: Principal) -> dict[str, dict[str, int]]:
    """What finalized invoices still have due, by currency and by days since the invoice was issued
    (0-30, 31-60, 61-90, >90; finance only)."""
    actor.require(Role.FINANCE)
    now = utcnow()
    out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(AGE_BUCKETS, 0))
    found = session.scalars(select(Invoice).where(Invoice.status == InvoiceStatus.FINALIZED.value)).all()
    for invoice in found:
        due = invoice.total_minor - invoice.credited_minor - invoice.paid_minor
        if due <= 0:
            continue
        issued = invoice.finalized_at or invoice.created_at
        out[invoice.currency][bucket_of((now - issued).days)] += due
    if not out:
        out[settings_of(session).currency] = dict.fromkeys(AGE_BUCKETS, 0)
    return dict(out)


SELLER_FIELDS = ("seller_name", "seller_tax_id", "seller_address", "seller_bank", "seller_bank_account")
BUYER_FIELDS = ("uscc", "bank_name", "bank_account", "address")


def seller_missing(actor: Principal) -> list[str]:
    """The platform's own details (configuration) that invoices print and are not set (finance only)."""
    actor.require(Role.FINANCE)
    configured = billing_settings()
    return [name for name in SELLER_FIELDS if not getattr(configured, name, None)]


def buyer_missing(org: Organisation | None) -> list[str]:
    """A buyer's profile fields that invoices print and are not set."""
    if org is None:
        return list(BUYER_FIELDS)
    return [name for name in BUYER_FIELDS if not getattr(org, name)]


def buyers_missing_details(session: Session, actor: Principal) -> list[tuple[Organisation, list[str]]]:
    """Buyer organisations with invoices whose profile misses a detail invoices print (finance only)."""
    actor.require(Role.FINANCE)
    billed = select(Invoice.buyer_org_id).distinct()
    orgs: Sequence[Organisation] = session.scalars(
        select(Organisation)
        .where(Organisation.kind == OrgKind.BUYER.value, Organisation.id.in_(billed))
        .order_by(Organisation.name)
    ).all()
    return [(org, missing) for org in orgs if (missing := buyer_missing(org))]
