"""Request and response bodies for authorisations, fee caps and data resources."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from market.money import MAX_AMOUNT_MINOR
from products.governance.models import Classification

ZONE = r"^[a-z][a-z0-9_]{1,49}$"
REGION = r"^[A-Z]{2}(-[A-Z0-9]{1,8}){0,3}$"
SCENARIO = r"^[a-z0-9][a-z0-9_-]{0,79}$"


class FeeCapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zone: str = Field(pattern=ZONE)
    max_per_query_minor: int = Field(
        ge=0, le=MAX_AMOUNT_MINOR, description="Most a plan may charge per accepted query, minor units."
    )
    max_per_gb_minor: Decimal = Field(ge=0, max_digits=18, decimal_places=6, description="Per GB scanned, minor.")
    max_monthly_fee_minor: int = Field(
        ge=0, le=MAX_AMOUNT_MINOR, description="Most a plan may charge as a monthly fee, minor units."
    )
    max_per_tenth_epsilon_minor: int = Field(
        default=0,
        ge=0,
        le=MAX_AMOUNT_MINOR,
        description="Most a plan may charge per 0.1 epsilon a DP query spends (the privacy fee), minor units; "
        "0 (the default) allows no privacy fee.",
    )


class FeeCapOut(FeeCapIn):
    model_config = ConfigDict(from_attributes=True)


class AuthorisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator: str = Field(description="The operator organisation's id.")
    zones: list[str] = Field(min_length=1)
    regions: list[str] = Field(min_length=1)
    scenarios: list[str] = Field(default_factory=list, description="Allowed scenarios; empty allows any.")
    valid_from: datetime | None = None
    valid_until: datetime
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    fee_caps: list[FeeCapIn] = Field(min_length=1, description="One fee cap per zone.")
    revenue_ceiling_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_AMOUNT_MINOR,
        json_schema_extra={"deprecated": True},
        description="Deprecated and no longer used: an operator's revenue is held against its allowed revenue "
        "(PUT /v1/allowed-revenue/{operator}/{year}), derived from the regulator's cost, profit and tax figures.",
    )
    note: str = Field(default="", max_length=5_000)
    dp_required_for: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Zones or resource classifications (general, important, core) whose products must be in DP mode.",
    )

    @model_validator(mode="after")
    def _shape(self) -> AuthorisationIn:
        import re

        for zone in self.zones:
            if not re.fullmatch(ZONE, zone):
                raise ValueError(f"zone '{zone}' must be lower-case letters, digits and underscores")
        for region in self.regions:
            if not re.fullmatch(REGION, region):
                raise ValueError(f"region '{region}' must be a division code such as CN-11 or US-NY")
        for scenario in self.scenarios:
            if not re.fullmatch(SCENARIO, scenario):
                raise ValueError(f"scenario '{scenario}' must be lower-case letters, digits, '-' or '_'")
        capped = [c.zone for c in self.fee_caps]
        if len(set(capped)) != len(capped):
            raise ValueError("give each zone one fee cap")
        if set(capped) != set(self.zones):
            missing = sorted(set(self.zones) - set(capped))
            extra = sorted(set(capped) - set(self.zones))
            raise ValueError(f"fee_caps must cover exactly the zones (missing: {missing}, not in zones: {extra})")
        for moment in (self.valid_from, self.valid_until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("give times with a timezone, e.g. 2027-01-01T00:00:00Z")
        if self.valid_from is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class AuthorisationOut(BaseModel):
    id: str
    operator: str
    operator_name: str
    zones: list[str]
    regions: list[str]
    scenarios: list[str]
    valid_from: datetime
    valid_until: datetime
    status: str
    in_force: bool
    currency: str
    fee_caps: list[FeeCapOut]
    revenue_ceiling_minor: int | None = Field(
        json_schema_extra={"deprecated": True}, description="Deprecated: see allowed revenue."
    )
    note: str
    created_at: datetime
    dp_required_for: list[str] = Field(default_factory=list)


class StatusChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=5_000, description="Why; recorded and shown to the operator.")


class AuthorisationEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    actor_user_id: str
    reason: str
    at: datetime


class ResourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    zone: str = Field(pattern=ZONE)
    region: str = Field(pattern=REGION)
    classification: Classification
    catalogue: dict[str, Any] = Field(
        default_factory=dict,
        description="Catalogue metadata: fields, update_frequency, time_span, contact, legal_basis, ...",
    )


class ResourceReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern=r"^(register|return)$")
    comment: str = Field(default="", max_length=5_000)
    registration_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{2,63}$")


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    source_org_id: str
    source: str = Field(default="", description="The source department's name.")
    title: str
    description: str
    zone: str
    region: str
    classification: str
    catalogue: dict[str, Any]
    status: str
    registration_code: str | None
    review_comment: str
    reviewed_at: datetime | None
    created_at: datetime
    updated_at: datetime
