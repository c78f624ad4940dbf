"""Request and response bodies of the public-data rules (allowed revenue, fee standards,
registrations, disclosure reports)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from market.money import MAX_AMOUNT_MINOR

Amount = Field(default=0, ge=0, le=MAX_AMOUNT_MINOR)


class AllowedRevenueIn(BaseModel):
    """The regulator's figures for one operator and year, in minor units (fen). The allowed revenue is derived."""

    model_config = ConfigDict(extra="forbid")

    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    platform_cost_minor: int = Amount
    collection_cost_minor: int = Amount
    processing_cost_minor: int = Amount
    staff_cost_minor: int = Amount
    subsidies_minor: int = Amount
    profit_minor: int = Amount
    taxes_minor: int = Amount
    note: str = Field(default="", max_length=5_000)


class CarryForwardOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_year: int
    to_year: int
    currency: str
    allowed_minor: int
    received_minor: int
    excess_minor: int
    recorded_at: datetime


class AllowedRevenueOut(AllowedRevenueIn):
    operator: str
    operator_name: str
    year: int
    permitted_costs_minor: int
    """The four cost categories, less subsidies."""
    carried_deduction_minor: int
    """Last year's excess, deducted from this year's allowed revenue."""
    allowed_minor: int
    received_minor: int
    """Revenue received from paid use of the operator's products in the year."""
    headroom_minor: int
    used_basis_points: int
    warning: str
    """`none`, `approaching` (80% or more used) or `exceeded` (100% or more)."""
    carry_forward: CarryForwardOut | None = None


class FeeStandardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_per_query_minor: int = Field(ge=0, le=MAX_AMOUNT_MINOR)
    max_per_gb_minor: Decimal = Field(ge=0, max_digits=18, decimal_places=6)
    max_monthly_fee_minor: int = Field(ge=0, le=MAX_AMOUNT_MINOR)
    max_per_tenth_epsilon_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_AMOUNT_MINOR,
        description="Most per 0.1 epsilon a DP query spends (the privacy fee); omitted: the zone's cap applies.",
    )


class FeeStandardOut(FeeStandardIn):
    model_config = ConfigDict(from_attributes=True)

    product: str
    zone_cap: dict[str, Any]
    """The zone's fee cap (government guide price) under the operator's authorisation."""
    set_at: datetime


class RegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registration_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")


class ObjectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=5_000)


class ObjectionResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern=r"^(dismiss|uphold)$")
    resolution: str = Field(min_length=1, max_length=5_000)


class ObjectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    registration_id: str
    org_id: str
    reason: str
    status: str
    resolution: str
    resolved_at: datetime | None
    created_at: datetime


class RegistrationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    subject_kind: str
    subject_id: str
    title: str
    owner_org_id: str
    registration_code: str
    lookup_code: str
    status: str
    notice_starts_at: datetime
    notice_ends_at: datetime
    confirmed_at: datetime | None
    withdrawn_reason: str
    objections: list[ObjectionOut] = Field(default_factory=list)


class PublicRegistrationOut(BaseModel):
    """What anyone may read about a registration, without signing in."""

    subject_kind: str
    title: str
    owner: str
    registration_code: str
    status: str
    notice_starts_at: datetime
    notice_ends_at: datetime
    confirmed_at: datetime | None
    open_objections: int


class DisclosureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=2000, le=2100)
    kind: str = Field(pattern=r"^(regulator_disclosure|operator_disclosure|operating_report)$")
    operator: str | None = Field(default=None, description="For the regulator generating an operator's report.")


class DisclosureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    year: int
    kind: str
    org_id: str
    status: str
    content: dict[str, Any]
    content_hash: str
    generated_at: datetime
    published_at: datetime | None


class DisclosureStatusOut(BaseModel):
    year: int
    deadline: datetime
    days_left: int
    overdue: bool
    published: list[dict[str, Any]]
    missing: list[dict[str, Any]]
