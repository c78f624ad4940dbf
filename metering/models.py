"""Access requests, frozen agreements, monthly counters and append-only usage records."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base, BigInt


class Purpose(StrEnum):
    """Why a buyer wants the data (DOMAIN.md, Access request)."""

    PUBLIC_GOVERNANCE = "public_governance"
    PUBLIC_WELFARE = "public_welfare"
    INDUSTRY = "industry"
    COMMERCIAL = "commercial"

    @property
    def is_public_interest(self) -> bool:
        return self in (Purpose.PUBLIC_GOVERNANCE, Purpose.PUBLIC_WELFARE)


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class AgreementStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ChargeType(StrEnum):
    FREE_PUBLIC = "free_public"
    TRIAL = "trial"
    BILLABLE = "billable"
    CAP_REACHED = "cap_reached"
    REJECTED = "rejected"


class AccessRequest(Base):
    __tablename__ = "access_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("req"))
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("price_plans.id"))
    purpose: Mapped[str] = mapped_column(String(30))
    scenario: Mapped[str] = mapped_column(String(100))
    justification: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.PENDING.value)
    reviewer_role: Mapped[str] = mapped_column(String(20))
    """Who decides: the regulator for public-interest purposes, the operator for commercial ones."""
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    """The reviewer; None when the operator's auto-approval setting decided."""
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    review_due_at: Mapped[datetime | None] = mapped_column(default=None)
    """The review deadline (SLA), shown to the buyer and the reviewer alike."""


class Agreement(Base):
    """An approved request, frozen: later changes to the product or its plans never alter it."""

    __tablename__ = "agreements"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("agr"))
    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id"), unique=True)
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    product_version_id: Mapped[str] = mapped_column(ForeignKey("product_versions.id"))
    purpose: Mapped[str] = mapped_column(String(30))
    scenario: Mapped[str] = mapped_column(String(100))
    plan: Mapped[dict[str, Any]]
    """Snapshot of the price plan (PlanOut as JSON; per_gb_minor as a decimal string)."""
    policy: Mapped[dict[str, Any]]
    """Snapshot of the protection policy of the version."""
    monthly_query_quota: Mapped[int | None] = mapped_column(default=None)
    monthly_row_quota: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Rows scanned allowed per calendar month (UTC); None is unlimited."""
    monthly_byte_quota: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Bytes scanned allowed per calendar month (UTC); None is unlimited."""
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default=AgreementStatus.ACTIVE.value)
    """`active`, `revoked`, or `expired` (written by the upkeep job, market/compliance/jobs.py, once
    `valid_until` has passed; every check also reads `valid_until`, so nothing waits for the job)."""
    valid_from: Mapped[datetime] = mapped_column(default=utcnow)
    valid_until: Mapped[datetime]
    revoked_reason: Mapped[str] = mapped_column(Text, default="")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(32), default=None)
    """The user who revoked (a users.id; no foreign key so SQLite can add the column in place)."""
    revoked_by_role: Mapped[str | None] = mapped_column(String(20), default=None)
    product_version_number: Mapped[int | None] = mapped_column(default=None)
    zone: Mapped[str | None] = mapped_column(String(50), default=None)
    """The product's zone when the agreement was made."""
    region: Mapped[str | None] = mapped_column(String(20), default=None)
    """The product's region when the agreement was made: the ODRL spatial constraint."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def effective_status(self, now: datetime) -> AgreementStatus:
        """Revoked wins; otherwise an agreement past `valid_until` (or marked so by the job) is expired."""
        if self.status == AgreementStatus.REVOKED:
            return AgreementStatus.REVOKED
        if self.status == AgreementStatus.EXPIRED or now >= self.valid_until:
            return AgreementStatus.EXPIRED
        return AgreementStatus.ACTIVE


class AgreementMonth(Base):
    """Running totals of one agreement in one calendar month: the row quotas and caps are decided on."""

    __tablename__ = "agreement_months"
    __table_args__ = (UniqueConstraint("agreement_id", "month"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"))
    month: Mapped[str] = mapped_column(String(7))
    """YYYY-MM, UTC."""
    accepted_queries: Mapped[int] = mapped_column(default=0)
    charged_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Usage charges so far this month, minor units of the agreement's currency."""
    rows_scanned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Rows scanned by this month's accepted queries (for row quotas)."""
    bytes_scanned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Bytes scanned by this month's accepted queries (for byte quotas)."""
    per_gb_carry: Mapped[str] = mapped_column(String(60), default="0", server_default="0")
    """Exact per-GB charges of the month less what was billed for them, a Decimal of minor units in
    [-0.5, 0.5] (text, so every database keeps it exact): carried into the next query's rounding."""
    lock_version: Mapped[int] = mapped_column(default=0)


class UsageRecord(Base):
    """One query attempt, append-only. Quantities are integers; the amount is minor units of `currency`."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("buyer_org_id", "idempotency_key"),
        Index("uq_usage_records_buyer_chain_seq", "buyer_org_id", "chain_seq", unique=True),
        Index("ix_usage_records_buyer_created", "buyer_org_id", "created_at"),
        Index("ix_usage_records_product_created", "product_id", "created_at"),
        Index("ix_usage_records_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("qry"))
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), index=True)
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    product_version_id: Mapped[str] = mapped_column(ForeignKey("product_versions.id"))
    purpose: Mapped[str] = mapped_column(String(30))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    sql: Mapped[str] = mapped_column(Text)
    """The SQL as the buyer sent it."""
    sql_run: Mapped[str] = mapped_column(Text, default="")
    """The rewritten statement that actually ran (empty when refused before running)."""
    error_code: Mapped[str | None] = mapped_column(String(50), default=None)
    rows_scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    result_rows: Mapped[int] = mapped_column(default=0)
    result_columns: Mapped[list[Any]] = mapped_column(default=list)
    suppressed_groups: Mapped[int] = mapped_column(default=0)
    charge_type: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """The charge for this query, minor units of `currency`."""
    currency: Mapped[str] = mapped_column(String(3))
    month: Mapped[str] = mapped_column(String(7), index=True)
    """The calendar month (UTC) the query counts in, YYYY-MM."""
    response: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The response body, kept so that a retry with the same Idempotency-Key gets it back (not hashed)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the attempt arrived; it counts in that month."""
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the attempt was decided and recorded (None only for records older than the chain)."""
    privacy_rho_nano: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    privacy_delta_atto: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """DP mode: the selection delta a noisy-threshold query spent, in units of 1e-18 (docs/privacy.md)."""
    """Privacy budget this query spent (DP mode), rho-zCDP in units of 1e-9; 0 in threshold mode,
    for stored repeats and for refused or failed queries (refunded)."""
    chain_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Position in the buyer's hash chain, 1, 2, 3, ... (see metering.chain)."""
    prev_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """`record_hash` of the buyer's previous record; 64 zeros for the first."""
    record_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """SHA-256 over this record's fields and `prev_hash`: editing any record breaks the chain."""


class UsageChainHead(Base):
    """The newest link of one buyer's usage hash chain; its row lock serializes appends to the chain."""

    __tablename__ = "usage_chain_heads"

    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class ProductAccessSettings(Base):
    """How an operator wants access requests to its product handled."""

    __tablename__ = "product_access_settings"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    auto_approve_commercial: Mapped[bool] = mapped_column(default=False)
    """Approve commercial (`industry`, `commercial`) requests at once, on the plan's own quota."""
    updated_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditFlag(Base):
    """The regulator marks a query for follow-up; flags are added, never edited into the usage record."""

    __tablename__ = "audit_flags"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("flg"))
    usage_record_id: Mapped[str] = mapped_column(ForeignKey("usage_records.id"), index=True)
    flagged_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the regulator closed the follow-up; counted in the operator's annual operating report."""
    resolved_by: Mapped[str | None] = mapped_column(String(32), default=None)
    """A users.id (no foreign key, so SQLite adds the column in place)."""
    resolution: Mapped[str] = mapped_column(Text, default="", server_default="")


class PrivacyBudget(Base):
    """One privacy budget (DP mode): an agreement's lifetime budget, or the regulator's cap on a version.

    Amounts are rho-zCDP in integer units of 1e-9 (docs/privacy.md). A query reserves its cost with
    one conditional UPDATE (spent + reserved + cost <= budget), so concurrent queries never overspend,
    then commits it (reserved -> spent) or is refunded (reserved -= cost).
    """

    __tablename__ = "privacy_budgets"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    """`agreement:<agreement id>` or `version:<product version id>`."""
    product_version_id: Mapped[str] = mapped_column(ForeignKey("product_versions.id"), index=True)
    agreement_id: Mapped[str | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    budget_nano: Mapped[int] = mapped_column(BigInteger)
    spent_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent_atto: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Selection delta spent by queries whose groups passed a noisy threshold, in units of 1e-18."""
    delta_reserved_atto: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PrivateAnswer(Base):
    """A DP query's noisy answer, kept so that the same query under the same agreement returns it again
    at no privacy cost: repeating a query never averages its noise away."""

    __tablename__ = "private_answers"
    __table_args__ = (UniqueConstraint("agreement_id", "query_key"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"))
    query_key: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the canonical plan and the chosen cost (sandbox.dp.DPPlan.canonical)."""
    columns: Mapped[list[Any]]
    rows: Mapped[list[Any]]
    privacy: Mapped[dict[str, Any]]
    usage_record_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
