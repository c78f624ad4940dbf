"""Governance: the regulator's authorisations (scope, validity, fee caps) and registered data resources."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.clock import new_id, utcnow
from market.db import Base


class AuthorisationStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"
    """Written by the upkeep job once `valid_until` has passed (in_force already says so before)."""


class Authorisation(Base):
    """The regulator's grant to an operator: zones, regions and scenarios, for a period, under fee caps."""

    __tablename__ = "authorisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("aut"))
    operator_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    zones: Mapped[list[Any]]
    """Zones (领域) the operator may list products in, e.g. ["transport"]."""
    regions: Mapped[list[Any]]
    """Administrative division codes; a code also covers its sub-divisions ("CN-11" covers "CN-11-05")."""
    scenarios: Mapped[list[Any]]
    """Use scenarios products may be offered for; empty means any scenario within the zones."""
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default=AuthorisationStatus.ACTIVE.value)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    revenue_ceiling_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Most the operator may earn per year under this grant (cost plus a reasonable profit), minor units."""
    note: Mapped[str] = mapped_column(Text, default="")
    dp_required_for: Mapped[list[Any]] = mapped_column(default=list)
    """Zones and resource classifications (e.g. ["healthcare", "important"]) whose products must use
    differential privacy under this grant, whatever their privacy unit (docs/privacy.md)."""
    granted_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeeCap(Base):
    """The government guide price (政府指导价) of one zone under an authorisation: the most a plan may charge."""

    __tablename__ = "fee_caps"
    __table_args__ = (UniqueConstraint("authorisation_id", "zone"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("cap"))
    authorisation_id: Mapped[str] = mapped_column(ForeignKey("authorisations.id"), index=True)
    zone: Mapped[str] = mapped_column(String(50))
    max_per_query_minor: Mapped[int] = mapped_column(BigInteger)
    """Most a plan may charge per accepted query, minor units of the authorisation's currency."""
    max_per_gb_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    """Most a plan may charge per GB scanned, minor units (a Decimal, like PricePlan.per_gb_minor)."""
    max_monthly_fee_minor: Mapped[int] = mapped_column(BigInteger)
    """Most a plan may charge as a fixed monthly fee, minor units."""
    max_per_tenth_epsilon_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Most a plan may charge per 0.1 epsilon a DP query spends (the privacy fee), minor units; 0 allows none."""


class AuthorisationEvent(Base):
    """One change of an authorisation: granted, suspended, reinstated or revoked; who, when and why."""

    __tablename__ = "authorisation_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("aev"))
    authorisation_id: Mapped[str] = mapped_column(ForeignKey("authorisations.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Classification(StrEnum):
    """分类分级: how sensitive a resource is."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


class ResourceStatus(StrEnum):
    PENDING = "pending"
    REGISTERED = "registered"
    RETURNED = "returned"


class DataResource(Base):
    """A public data resource (公共数据资源) a source department holds, registered by the regulator."""

    __tablename__ = "data_resources"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("res"))
    source_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    zone: Mapped[str] = mapped_column(String(50))
    region: Mapped[str] = mapped_column(String(20))
    classification: Mapped[str] = mapped_column(String(20))
    catalogue: Mapped[dict[str, Any]]
    """Catalogue metadata: fields, update frequency, time span, contact, legal basis..."""
    status: Mapped[str] = mapped_column(String(20), default=ResourceStatus.PENDING.value)
    registration_code: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    review_comment: Mapped[str] = mapped_column(Text, default="")
    reviewed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    submitted_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProductResource(Base):
    """Lineage: a product derives from a registered resource."""

    __tablename__ = "product_resources"
    __table_args__ = (UniqueConstraint("product_id", "resource_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("lin"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("data_resources.id"), index=True)
