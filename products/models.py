"""Products, their immutable versions, price plans and the log of every lifecycle transition."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base


class ProductStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    LISTED = "listed"
    RETURNED = "returned"
    DELISTED = "delisted"


class PlanKind(StrEnum):
    """Public-interest plans are free under supervision; commercial plans are paid (DOMAIN.md rule 5)."""

    PUBLIC_INTEREST = "public_interest"
    COMMERCIAL = "commercial"


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("prd"))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    operator_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    zone: Mapped[str] = mapped_column(String(50))
    region: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=ProductStatus.DRAFT.value)
    listed_version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The version buyers query; changes only when the regulator approves a version."""
    latest_version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    pending_version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """A new version of a listed product awaiting review; buyers keep getting `listed_version_id` meanwhile."""
    review_due_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the regulator's decision on the version under review is due (DOMAIN.md rule 1: a visible deadline)."""
    scenarios: Mapped[list[Any]] = mapped_column(default=list)
    """Use scenarios the product is offered for; each must be inside the operator's authorisation."""
    documentation: Mapped[str] = mapped_column(Text, default="")
    """Buyer-facing documentation (Markdown): sources, methods, caveats."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProductVersion(Base):
    """An immutable version: Parquet files, their schema and row counts, and the policy that governs them."""

    __tablename__ = "product_versions"
    __table_args__ = (UniqueConstraint("product_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ver"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    number: Mapped[int]
    policy: Mapped[dict[str, Any]]
    """The protection policy (sandbox.policy.ProtectionPolicy) as JSON."""
    tables: Mapped[list[Any]]
    """One entry per table: name, file, row_count, columns [{name, type, role, bytes}]."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 over the Parquet files, in table order: identifies the data exactly."""
    recipe: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The declarative cleaning and desensitising recipe (products.pipeline.recipe.Recipe) that built it."""
    recipe_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    """SHA-256 of the recipe's canonical JSON."""
    sources: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """Per table, the upload it was built from: upload id, file name, SHA-256 and size."""
    audit: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The irreversibility audit report (不可回溯): findings, each open or resolved with a justification."""
    quality: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The quality report: per-table row counts, rejected rows, per-column nulls, distinct counts and ranges."""
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PricePlan(Base):
    """A price plan of a product. Amounts are minor units of `currency`; the per-GB rate is a Decimal."""

    __tablename__ = "price_plans"
    __table_args__ = (UniqueConstraint("product_id", "code"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("pln"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    code: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    monthly_fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Fixed monthly access fee, in minor units."""
    per_query_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Fee per accepted query, in minor units."""
    per_gb_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6), default=Decimal(0))
    """Fee per GB (10^9 bytes) scanned, in minor units; a Decimal so that fractions of a fen per GB add up."""
    trial_queries: Mapped[int] = mapped_column(default=0)
    """Accepted queries per agreement per calendar month that are free before billing starts."""
    monthly_cap_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Most a buyer pays per agreement per month for usage; later queries are `cap_reached`."""
    monthly_query_quota: Mapped[int | None] = mapped_column(default=None)
    """Accepted queries allowed per agreement per calendar month (UTC); None is unlimited."""
    # -- metering: quotas on scanned volume and graduated tiers (owned by metering/pricing.py) --
    monthly_row_quota: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Rows scanned allowed per agreement per calendar month (UTC); None is unlimited."""
    monthly_byte_quota: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Bytes scanned allowed per agreement per calendar month (UTC); None is unlimited."""
    tiers: Mapped[list[Any] | None] = mapped_column(default=None)
    """Graduated tiers [{up_to, per_query_minor, per_gb_minor}], by the month's billable query count;
    when set they replace `per_query_minor` and `per_gb_minor` (see metering.pricing)."""
    per_tenth_epsilon_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """DP products: fee per 0.1 epsilon a billable query spends, minor units (metering.pricing.privacy_fee)."""
    active: Mapped[bool] = mapped_column(default=True)


class ProductEvent(Base):
    """One lifecycle transition: who moved the product from which state to which, when and why."""

    __tablename__ = "product_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("pev"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)
