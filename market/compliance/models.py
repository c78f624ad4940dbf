"""Tables of the public-data rules: allowed revenue, carry-forwards, fee standards, registrations
with their public notice and objections, and the annual disclosure reports."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base


class AllowedRevenue(Base):
    """The regulator's figures for one operator and year (最高准许收入). Every amount is minor units
    (fen) of `currency`; the allowed revenue itself is derived from them, never stored as typed."""

    __tablename__ = "allowed_revenues"
    __table_args__ = (UniqueConstraint("operator_org_id", "year"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("alr"))
    operator_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    year: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    platform_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Permitted cost: platform build and maintenance."""
    collection_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Permitted cost: data collection."""
    processing_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Permitted cost: transfer, storage and processing."""
    staff_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Permitted cost: staff."""
    subsidies_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Government subsidies, netted off the permitted costs."""
    profit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Permitted profit (准许利润)."""
    taxes_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Taxes (税金)."""
    note: Mapped[str] = mapped_column(Text, default="")
    set_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RevenueCarryForward(Base):
    """Revenue received above a year's allowed revenue, deducted from the next year's; recorded once."""

    __tablename__ = "revenue_carry_forwards"
    __table_args__ = (UniqueConstraint("operator_org_id", "from_year"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("cfw"))
    operator_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    from_year: Mapped[int]
    to_year: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    allowed_minor: Mapped[int] = mapped_column(BigInteger)
    """The year's allowed revenue, minor units."""
    received_minor: Mapped[int] = mapped_column(BigInteger)
    """Revenue received from paid use in the year, minor units."""
    excess_minor: Mapped[int] = mapped_column(BigInteger)
    """received - allowed when positive, else 0; deducted from `to_year`'s allowed revenue."""
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeeStandard(Base):
    """A product's upper fee standard (上限收费标准), set by the regulator inside the zone's fee cap."""

    __tablename__ = "fee_standards"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    max_per_query_minor: Mapped[int] = mapped_column(BigInteger)
    """Most a plan of this product may charge per accepted query, minor units."""
    max_per_gb_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    """Most per GB scanned, minor units (a Decimal rate)."""
    max_monthly_fee_minor: Mapped[int] = mapped_column(BigInteger)
    """Most as a fixed monthly fee, minor units."""
    max_per_tenth_epsilon_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Most per 0.1 epsilon a DP query spends, minor units; None leaves the zone's cap alone to limit it."""
    set_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistrationStatus(StrEnum):
    NOTICE = "notice"
    """In its public notice period (公示), open to objections."""
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"
    """An objection was upheld; the subject goes back to its owner."""


class Registration(Base):
    """The registration (登记) of a resource or a product: notice, objections, then confirmation."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("reg"))
    subject_kind: Mapped[str] = mapped_column(String(20))
    """`resource` or `product`."""
    subject_id: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    owner_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    registration_code: Mapped[str] = mapped_column(String(64), unique=True)
    lookup_code: Mapped[str] = mapped_column(String(32), unique=True)
    """A short random code printed on the certificate, for the public lookup."""
    status: Mapped[str] = mapped_column(String(20), default=RegistrationStatus.NOTICE.value)
    notice_starts_at: Mapped[datetime]
    notice_ends_at: Mapped[datetime]
    registered_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    withdrawn_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Objection(Base):
    """An objection filed during a registration's public notice, resolved by the regulator."""

    __tablename__ = "registration_objections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("obj"))
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    filed_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open")
    """`open`, `dismissed` or `upheld`."""
    resolution: Mapped[str] = mapped_column(Text, default="")
    resolved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DisclosureReport(Base):
    """One annual report: a draft regenerated at will, then published and frozen under a content hash."""

    __tablename__ = "disclosure_reports"
    __table_args__ = (UniqueConstraint("year", "kind", "org_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("dsc"))
    year: Mapped[int]
    kind: Mapped[str] = mapped_column(String(30))
    """`regulator_disclosure`, `operator_disclosure` or `operating_report`."""
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    """The publishing organisation: the authority, or the operator."""
    status: Mapped[str] = mapped_column(String(20), default="draft")
    content: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    """SHA-256 of the canonical JSON content, fixed at publication."""
    generated_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    published_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
