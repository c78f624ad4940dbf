"""Billing tables: periods, invoices and their lines (linked to usage records), credit notes, payments,
Stripe customers and events, revenue shares and their distribution, and the double-entry journal.

Every amount is an integer of minor units (fen for CNY) next to a currency; shares are basis points.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base, BigInt


class PeriodStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class Component(StrEnum):
    """What an invoice line charges for. Usage components are the usage records' charge types."""

    MONTHLY_FEE = "monthly_fee"
    BILLABLE = "billable"
    TRIAL = "trial"
    CAP_REACHED = "cap_reached"
    FREE_PUBLIC = "free_public"


class PaymentMethod(StrEnum):
    BANK_TRANSFER = "bank_transfer"
    STRIPE = "stripe"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PartyKind(StrEnum):
    """Who shares in revenue (收益分配)."""

    SOURCE = "source"
    OPERATOR = "operator"
    PLATFORM = "platform"


class BillingPeriod(Base):
    """One billing period, keyed by its first month. Its row is the lock every run of the period takes."""

    __tablename__ = "billing_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    """YYYY-MM of the period's first month."""
    months: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(10), default=PeriodStatus.OPEN.value)
    runs: Mapped[int] = mapped_column(default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    scheduled_run_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the scheduler billed this period; set once, so replicas never bill it twice."""
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_by: Mapped[str | None] = mapped_column(String(32), default=None)


class MismatchAcknowledgement(Base):
    """Finance's acknowledgement of one reconciliation mismatch, with a reason: what lets a period with
    that mismatch still be closed. Kept for ever, shown in exports and to the regulator."""

    __tablename__ = "mismatch_acknowledgements"
    __table_args__ = (UniqueConstraint("period", "mismatch_key"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    mismatch_key: Mapped[str] = mapped_column(String(64))
    """The mismatch's stable key: a hash of its reason and the objects it names."""
    reason: Mapped[str] = mapped_column(String(40))
    """The mismatch's reason code (e.g. `unpaid`)."""
    objects: Mapped[str] = mapped_column(Text)
    """The objects the mismatch names, as `kind=id; ...`."""
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    """The mismatch's amount when acknowledged, minor units of `currency`."""
    currency: Mapped[str] = mapped_column(String(3))
    note: Mapped[str] = mapped_column(Text)
    """Finance's reason for accepting the mismatch."""
    acknowledged_by: Mapped[str] = mapped_column(String(32))
    acknowledged_at: Mapped[datetime] = mapped_column(default=utcnow)


class Invoice(Base):
    """One buyer's invoice for one period and currency. Draft until finalized; finalized never changes."""

    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_period_buyer", "period", "buyer_org_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("inv"))
    number: Mapped[str | None] = mapped_column(String(20), unique=True, default=None)
    """INV-YYYY-NNNNNN, allocated at finalization, sequential per year without gaps."""
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default=InvoiceStatus.DRAFT.value, index=True)
    public_interest: Mapped[bool] = mapped_column(default=False)
    """Only public-interest agreements: a zero-amount statement kept for supervision."""
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Sum of the lines, minor units of `currency`."""
    credited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Sum of credit notes issued against the invoice, minor units."""
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Net money received for the invoice (payments less refunds), minor units."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finalized_at: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    voided_at: Mapped[datetime | None] = mapped_column(default=None)
    status_reason: Mapped[str] = mapped_column(Text, default="")


class InvoiceLine(Base):
    """One agreement's charge component on an invoice. `source_period` differs from the invoice's period
    for adjustments: usage that arrived after its own period's invoice was finalized."""

    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "agreement_id", "component", "source_period"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("inl"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    component: Mapped[str] = mapped_column(String(20))
    source_period: Mapped[str] = mapped_column(String(7))
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    """Queries (usage components) or months (monthly fee)."""
    bytes_scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Per-query list price (usage) or the monthly fee, minor units; informative."""
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Sum of the linked usage records' amounts (or the monthly fee), minor units."""
    description: Mapped[str] = mapped_column(Text, default="")


class InvoiceLineUsage(Base):
    """Which usage records a line covers. A usage record is billed on one line only, ever.

    The table grows by one row per billed query (a million a month is normal), so it carries no
    foreign keys: their per-row checks cost more than the rest of a billing run. Rows are only ever
    written by the rating statement, which joins both sides, and reconciliation checks every line
    against its usage records."""

    __tablename__ = "invoice_line_usage"

    usage_record_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(32), index=True)


class DocumentSequence(Base):
    """The last number handed out per kind and year; incremented under its row lock, so no gaps."""

    __tablename__ = "document_sequences"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    last_number: Mapped[int] = mapped_column(default=0)


class CreditNote(Base):
    """A correction against a finalized invoice: reduces what is owed, and refunds what was paid if asked."""

    __tablename__ = "credit_notes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("crn"))
    number: Mapped[str] = mapped_column(String(20), unique=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    """Positive amount credited, minor units of `currency`."""
    refund_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Part of the credit paid back to the buyer, minor units."""
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Payment(Base):
    """Money received (positive) or refunded (negative): a bank transfer recorded by finance, or Stripe."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("pay"))
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"), index=True, default=None)
    """None for money received that no invoice explains (a reconciliation mismatch)."""
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=PaymentStatus.PENDING.value, index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    """Amount in minor units of `currency`; negative for refunds."""
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(String(200), default="")
    """Bank reference (对公转账流水号) or Stripe object id."""
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(100), index=True, default=None)
    stripe_amount_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """The amount Stripe reported, minor units, to compare with ours."""
    stripe_currency: Mapped[str | None] = mapped_column(String(3), default=None)
    credit_note_id: Mapped[str | None] = mapped_column(ForeignKey("credit_notes.id"), default=None)
    failure_code: Mapped[str] = mapped_column(String(100), default="")
    recorded_by: Mapped[str | None] = mapped_column(String(32), default=None)
    received_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeCustomer(Base):
    """A buyer organisation's Stripe customer."""

    __tablename__ = "stripe_customers"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeEvent(Base):
    """Each Stripe webhook event, stored once by its id (insert-or-ignore) and handled once."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str] = mapped_column(String(100), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(default=None)


class RevenueShare(Base):
    """A product's configured revenue share of one party, in basis points (the shares sum to 10,000)."""

    __tablename__ = "revenue_shares"
    __table_args__ = (UniqueConstraint("product_id", "party_kind", "party_org_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    party_kind: Mapped[str] = mapped_column(String(20))
    party_org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), default=None)
    """None for the platform itself."""
    basis_points: Mapped[int]
    updated_by: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgreementShare(Base):
    """The revenue shares frozen with an agreement: later changes to the product's shares never alter it."""

    __tablename__ = "agreement_shares"
    __table_args__ = (UniqueConstraint("agreement_id", "party_kind", "party_org_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), index=True)
    party_kind: Mapped[str] = mapped_column(String(20))
    party_org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), default=None)
    """None for the platform itself."""
    basis_points: Mapped[int]


class Distribution(Base):
    """One party's part of one payment (or refund), through one agreement; the parts add up to the payment."""

    __tablename__ = "distributions"
    __table_args__ = (Index("ix_distributions_party_period", "party_org_id", "period"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    agreement_id: Mapped[str | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    period: Mapped[str] = mapped_column(String(7))
    party_kind: Mapped[str] = mapped_column(String(20))
    party_org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), default=None)
    """None for the platform itself."""
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    """This party's part, minor units of `currency` (negative for a refund)."""
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JournalEntry(Base):
    """One balanced money movement; its lines sum to zero."""

    __tablename__ = "journal_entries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("jen"))
    kind: Mapped[str] = mapped_column(String(30))
    reference: Mapped[str] = mapped_column(String(100), index=True)
    """The object that caused it: an invoice, payment or credit note id."""
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    memo: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JournalLine(Base):
    """One side of a journal entry: debits positive, credits negative, minor units of the entry's currency."""

    __tablename__ = "journal_lines"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account: Mapped[str] = mapped_column(String(120), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    """Debit (positive) or credit (negative), minor units."""


# APScheduler's SQLAlchemyJobStore table, declared here so that the migrations create it (the job store
# then finds it). Its float timestamp is APScheduler's own format, not money.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
