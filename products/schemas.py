"""Request and response bodies for products, versions, plans and the catalogue."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer

from market.money import MAX_AMOUNT_MINOR, MAX_COUNT
from products.models import PlanKind


class TierIn(BaseModel):
    """One graduated tier: the month's billable queries up to `up_to` (inclusive; None = no limit) pay these rates."""

    model_config = ConfigDict(extra="forbid")

    up_to: int | None = Field(default=None, ge=1, le=2**31 - 1)
    per_query_minor: int = Field(default=0, ge=0, le=2**53, description="Fee per query in this tier, minor units.")
    per_gb_minor: Decimal = Field(default=Decimal(0), ge=0, max_digits=18, decimal_places=6)

    @field_serializer("per_gb_minor")
    def _decimal_as_text(self, value: Decimal) -> str:
        # Stored in a JSON column and in agreement snapshots: a string keeps the Decimal exact.
        return str(value)


def _check_tiers(tiers: list[TierIn]) -> list[TierIn]:
    if not tiers:
        return tiers
    if tiers[-1].up_to is not None:
        raise ValueError("the last tier must have no up_to (it covers every further query)")
    bounds = [t.up_to for t in tiers[:-1]]
    previous = 0
    for bound in bounds:
        if bound is None or bound <= previous:
            raise ValueError("tiers need increasing up_to values, with only the last one open")
        previous = bound
    return tiers


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,49}$")
    title: str = Field(min_length=1, max_length=200)
    kind: PlanKind
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    monthly_fee_minor: int = Field(default=0, ge=0, le=MAX_AMOUNT_MINOR, description="Monthly access fee, minor units.")
    per_query_minor: int = Field(
        default=0, ge=0, le=MAX_AMOUNT_MINOR, description="Fee per accepted query, minor units."
    )
    per_gb_minor: Decimal = Field(default=Decimal(0), ge=0, max_digits=18, decimal_places=6)
    trial_queries: int = Field(default=0, ge=0, le=MAX_COUNT)
    monthly_cap_minor: int | None = Field(default=None, ge=0, le=MAX_AMOUNT_MINOR)
    monthly_query_quota: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    monthly_row_quota: int | None = Field(default=None, ge=1, le=2**63 - 1, description="Rows scanned per month.")
    monthly_byte_quota: int | None = Field(default=None, ge=1, le=2**63 - 1, description="Bytes scanned per month.")
    tiers: Annotated[list[TierIn], AfterValidator(_check_tiers)] | None = Field(
        default=None, max_length=20, description="Graduated tiers; replace per_query_minor and per_gb_minor."
    )
    per_tenth_epsilon_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_AMOUNT_MINOR,
        description="DP products: fee per 0.1 epsilon of privacy budget a billable query spends, minor units.",
    )


class PlanOut(PlanIn):
    model_config = ConfigDict(from_attributes=True)

    per_gb_minor: Decimal
    tiers: list[TierIn] | None = None


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,99}$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    zone: str = Field(min_length=1, max_length=50)
    region: str = Field(min_length=2, max_length=20)
    plans: list[PlanIn] = Field(default_factory=list)
    scenarios: list[str] = Field(default_factory=list, description="Use scenarios, inside the authorisation.")
    documentation: str = Field(default="", max_length=100_000, description="Buyer-facing documentation (Markdown).")
    resources: list[str] = Field(
        default_factory=list, description="Registered resources it derives from (ids or codes)."
    )


class ProductUpdate(BaseModel):
    """Fields an operator may change on its product; versions and plans have their own routes."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    documentation: str | None = Field(default=None, max_length=100_000)
    scenarios: list[str] | None = None
    resources: list[str] | None = Field(default=None, description="More resources the product derives from.")


class ColumnOut(BaseModel):
    name: str
    type: str
    role: str


class TableOut(BaseModel):
    name: str
    row_count: int
    columns: list[ColumnOut]


class ProductOut(BaseModel):
    id: str = Field(description="The product's id, as other objects name it (product_id).")
    slug: str
    title: str
    description: str
    zone: str
    region: str
    status: str
    operator: str
    version: int | None
    tables: list[TableOut]
    policy: dict[str, Any] | None
    plans: list[PlanOut]
    updated_at: datetime
    scenarios: list[str] = Field(default_factory=list)
    pricing: list[str] = Field(default_factory=list, description="'free' and/or 'paid': the kinds of plan offered.")
    resources: list[dict[str, Any]] = Field(default_factory=list, description="Lineage: registered resources used.")
    pending_version: int | None = Field(default=None, description="A newer version awaiting review, if any.")
    review_due_at: datetime | None = Field(default=None, description="When the review decision is due, if in review.")
    documentation: str | None = Field(
        default=None, description="Documentation (Markdown); null in lists, where GET /v1/products/{slug} has it."
    )
    quality: dict[str, Any] | None = Field(
        default=None, description="The quality summary; null in lists and before a first version."
    )
    audit_clean: bool | None = Field(
        default=None, description="Whether the audit found nothing open; null in lists and before a first version."
    )
    fee_limits: dict[str, Any] | None = Field(
        default=None, description="The zone's fee cap and the product's upper fee standard, beside the plans' prices."
    )


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern=r"^(approve|return)$")
    comment: str = Field(default="", max_length=5_000)


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=5_000)


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    actor_user_id: str
    reason: str
    version_id: str | None
    at: datetime


class UploadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str
    sha256: str
    size_bytes: int
    created_at: datetime


class BuildIn(BaseModel):
    """A new version from stored uploads: one upload per table, the recipe and the protection policy."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, str] = Field(min_length=1, description="Table name to upload id.")
    recipe: dict[str, Any] | None = Field(default=None, description="The cleaning and desensitising recipe.")
    policy: dict[str, Any] = Field(description="The protection policy.")


class VersionOut(BaseModel):
    number: int
    status: str = Field(description="listed, in_review, superseded or draft")
    content_hash: str
    recipe_hash: str | None
    recipe: dict[str, Any] | None
    sources: dict[str, Any] | None
    tables: list[TableOut]
    policy: dict[str, Any]
    audit: dict[str, Any] | None
    quality: dict[str, Any] | None
    created_at: datetime


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    justification: str = Field(min_length=10, max_length=5_000, description="Why the finding is not a risk.")


class RebuildIn(BaseModel):
    """Re-run a version from its stored uploads; give a recipe or policy only to change them."""

    model_config = ConfigDict(extra="forbid")

    recipe: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
