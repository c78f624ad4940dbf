"""Request and response bodies for access requests, agreements, queries and usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metering.models import Purpose
from sandbox.structured import StructuredQuery, compile_query


class AccessRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(description="The product's slug.")
    plan: str = Field(description="The plan's code; its kind must fit the purpose.")
    purpose: Purpose
    scenario: str = Field(min_length=1, max_length=100)
    justification: str = Field(default="", max_length=10_000)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern=r"^(approve|reject)$")
    reason: str = Field(default="", max_length=5_000)
    monthly_query_quota: int | None = Field(default=None, ge=1)
    valid_days: int | None = Field(default=None, ge=1, le=3650)


class AccessRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    buyer_org_id: str
    product_id: str
    plan_id: str
    purpose: str
    scenario: str
    justification: str
    status: str
    reviewer_role: str
    decision_reason: str
    created_at: datetime
    decided_at: datetime | None


class AgreementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    buyer_org_id: str
    product_id: str
    product_version_id: str
    purpose: str
    scenario: str
    plan: dict[str, Any]
    monthly_query_quota: int | None
    currency: str
    status: str
    valid_from: datetime
    valid_until: datetime


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(description="The product's slug.")
    sql: str | None = Field(
        default=None, min_length=1, max_length=100_000, description="One SELECT in DuckDB's dialect."
    )
    query: StructuredQuery | None = Field(
        default=None, description="Instead of sql: dimensions, measures and filters (see sandbox/structured.py)."
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


class UsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agreement_id: str
    product_id: str
    product_version_id: str
    purpose: str
    sql: str
    error_code: str | None
    rows_scanned: int
    bytes_scanned: int
    cpu_ms: int
    result_rows: int
    suppressed_groups: int
    charge_type: str
    amount_minor: int
    currency: str
    created_at: datetime


class UsagePage(BaseModel):
    items: list[UsageOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next, older page.")
