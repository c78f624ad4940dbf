"""Request and response bodies for access requests, agreements, queries, usage and audit."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from metering.models import Purpose
from sandbox.structured import StructuredQuery, compile_query


class AccessRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(max_length=100, description="The product's slug.")
    plan: str = Field(description="The plan's code; its kind must fit the purpose.")
    purpose: Purpose
    scenario: str = Field(min_length=1, max_length=100, description="A use scenario the product allows.")
    justification: str = Field(default="", max_length=10_000)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern=r"^(approve|reject)$")
    reason: str = Field(default="", max_length=5_000, description="Required when rejecting.")
    monthly_query_quota: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Accepted queries per month.")
    monthly_row_quota: int | None = Field(default=None, ge=1, le=2**63 - 1, description="Rows scanned per month.")
    monthly_byte_quota: int | None = Field(default=None, ge=1, le=2**63 - 1, description="Bytes scanned per month.")
    valid_days: int | None = Field(default=None, ge=1, le=3650, description="The agreement's period; default 365.")


class AccessRequestOut(BaseModel):
    id: str
    product: str
    product_id: str
    plan: str
    plan_id: str
    buyer_org_id: str
    buyer: str
    purpose: str
    scenario: str
    justification: str
    status: str = Field(description="pending, approved or rejected.")
    reviewer_role: str = Field(description="Who decides: regulator (public interest) or operator (commercial).")
    auto_approved: bool
    decision_reason: str
    created_at: datetime
    decided_at: datetime | None
    review_due_at: datetime | None = Field(description="The review deadline (SLA).")
    age_seconds: int = Field(description="How long the request waited (until now, or until it was decided).")
    overdue: bool = Field(description="Still pending after the review deadline.")
    agreement_id: str | None


class AccessSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_approve_commercial: bool


class AccessSettingsOut(BaseModel):
    product: str
    auto_approve_commercial: bool
    operator_review_days: int
    regulator_review_days: int
    updated_at: datetime | None


class AgreementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    request_id: str
    buyer_org_id: str
    buyer: str = Field(default="", description="The buyer organisation's name.")
    product_id: str
    product: str = Field(default="", description="The product's slug.")
    product_version_id: str
    product_version_number: int | None
    zone: str | None
    region: str | None
    purpose: str
    scenario: str
    plan: dict[str, Any] = Field(description="The price plan as it was when the agreement was made.")
    policy: dict[str, Any] = Field(description="The protection policy as it was when the agreement was made.")
    monthly_query_quota: int | None
    monthly_row_quota: int | None
    monthly_byte_quota: int | None
    currency: str
    status: str = Field(description="active, revoked or expired.")
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None
    revoked_by_role: str | None
    revoked_reason: str
    created_at: datetime
    privacy_budget: dict[str, Any] | None = Field(
        default=None,
        description="DP products: the lifetime budget (epsilon, delta, rho), per-query limits, and what is spent.",
    )


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=5_000)


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(max_length=100, description="The product's slug.")
    sql: str | None = Field(
        default=None, min_length=1, max_length=100_000, description="One SELECT in DuckDB's dialect."
    )
    query: StructuredQuery | None = Field(
        default=None, description="Instead of sql: dimensions, measures and filters (see sandbox/structured.py)."
    )
    agreement: str | None = Field(
        default=None, max_length=32, description="Which of your agreements on the product to use; default the newest."
    )
    epsilon: Annotated[Decimal, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 10})] | None = (
        Field(
            default=None,
            gt=0,
            le=10,
            allow_inf_nan=False,
            description="DP products: the privacy budget (epsilon) this query spends, within the plan's limits "
            "(read as an exact decimal).",
        )
    )
    dry_run: bool = Field(
        default=False, description="DP products: return the cost and the 95% error bounds without running or spending."
    )

    @model_validator(mode="after")
    def _sql_or_query(self) -> QueryIn:
        if (self.sql is None) == (self.query is None):
            raise ValueError("send exactly one of 'sql' and 'query'")
        return self

    def to_sql(self) -> str:
        """The SQL to run: as sent, or compiled from the structured query."""
        if self.sql is not None:
            return self.sql
        assert self.query is not None  # _sql_or_query guarantees one of them
        return compile_query(self.query)


class QueryMeasurementsOut(BaseModel):
    rows_scanned: int
    bytes_scanned: int
    cpu_ms: int
    result_rows: int


class SuppressionOut(BaseModel):
    min_group_size: int
    rule: str = Field(
        description="Groups under min_group_size are omitted, and an aggregate is null where fewer than "
        "min_group_size units have a non-null argument; their number is never reported."
    )


class QueryChargeOut(BaseModel):
    amount_minor: int = Field(description="Minor units of `currency`.")
    currency: str
    charge_type: str = Field(description="free_public, trial, billable or cap_reached")


class QueryResultOut(BaseModel):
    """An accepted query's result, as POST /v1/queries returns it (documentation of the response)."""

    query_id: str
    columns: list[str]
    rows: list[list[Any]] = Field(description="One list per group, in `columns` order.")
    suppression: SuppressionOut
    usage: QueryMeasurementsOut
    charge: QueryChargeOut
    agreement_id: str


class QueryCancelOut(BaseModel):
    """What `POST /v1/queries/{key}/cancel` found or did."""

    state: str = Field(
        description="`cancelled` (stopped, recorded as rejected with `query_cancelled`, never charged); "
        "`finished` (it had ended: its record is unchanged); `requested` (not running yet: it is "
        "cancelled as soon as it starts)."
    )
    query_id: str | None = Field(default=None, description="The usage record of the query, once it has one.")
    charge_type: str | None = None
    amount_minor: int | None = Field(default=None, description="What the query was charged, minor units.")
    currency: str | None = None
    error_code: str | None = None


class UsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agreement_id: str
    buyer_org_id: str
    buyer: str = Field(default="", description="The buyer organisation's name.")
    product_id: str
    product: str = Field(default="", description="The product's slug.")
    product_version_id: str
    purpose: str
    sql: str | None = Field(description="The SQL as sent; only the buyer who sent it (and the regulator) see it.")
    error_code: str | None
    rows_scanned: int
    bytes_scanned: int
    cpu_ms: int
    result_rows: int
    charge_type: str
    amount_minor: int = Field(description="Minor units of `currency`.")
    currency: str
    privacy_rho_nano: int = Field(default=0, description="DP mode: privacy budget spent, rho-zCDP in units of 1e-9.")
    privacy_delta_atto: int = Field(
        default=0, description="DP mode: selection delta a noisy-threshold query spent, in units of 1e-18."
    )
    created_at: datetime
    finished_at: datetime | None


class DailyUsageOut(BaseModel):
    day: date
    product: str
    charge_type: str
    currency: str
    queries: int
    rows_scanned: int
    bytes_scanned: int
    amount_minor: int
    privacy_rho_nano: int = Field(default=0, description="DP mode: privacy budget spent that day (rho, 1e-9 units).")
    privacy_delta_atto: int = Field(default=0, description="DP mode: selection delta spent that day (1e-18 units).")


class FlagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=5_000, description="What to follow up, and why.")


class FlagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    usage_record_id: str
    flagged_by: str
    reason: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str = ""


class FlagResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: str = Field(min_length=1, max_length=5_000, description="What the follow-up found.")


class AuditRecordOut(BaseModel):
    """One query on the platform as the regulator sees it."""

    id: str
    created_at: datetime
    finished_at: datetime | None
    buyer_org_id: str
    buyer: str
    user_id: str
    agreement_id: str
    product: str
    purpose: str
    scenario: str
    sql: str
    sql_run: str
    error_code: str | None
    result_columns: list[str]
    result_rows: int
    suppressed_groups: int
    rows_scanned: int
    bytes_scanned: int
    charge_type: str
    amount_minor: int
    currency: str
    flags: list[FlagOut]
    privacy_rho_nano: int = Field(default=0, description="DP mode: privacy budget the query spent (rho, 1e-9 units).")


class ChainBreakOut(BaseModel):
    buyer_org_id: str
    record_id: str
    chain_seq: int
    reason: str


class ChainReportOut(BaseModel):
    ok: bool
    chains: int
    records: int
    breaks: list[ChainBreakOut]
