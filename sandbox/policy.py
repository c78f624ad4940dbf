"""The protection policy a product version carries, as the sandbox enforces it (DOMAIN.md, Protection policy)."""

from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_AGGREGATES: tuple[str, ...] = (
    "count",
    "sum",
    "avg",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
)
"""Aggregates that summarise a group without returning any single row's value.

The variance family is allowed because, over groups of at least k units, it returns a spread, never
a member's value; min/max, quantiles, mode, any_value, arg_max, list, string_agg and the like are
refused because each can return one row's value exactly.
"""


MAX_BOUND = 1e12
"""Largest magnitude a declared bound may have: keeps every product of bounded values far from
DOUBLE's range, and the sandbox's proof that no intermediate overflows short."""


class MeasureBounds(BaseModel):
    """The range a measure's values are clamped to inside aggregates, checked against the data at build time."""

    model_config = ConfigDict(extra="forbid")

    min: float = Field(description="Smallest value; smaller values (and -infinity) count as this.")
    max: float = Field(description="Largest value; larger values (infinity, NaN) count as this.")

    @model_validator(mode="after")
    def _ordered(self) -> MeasureBounds:
        for value in (self.min, self.max):
            if not math.isfinite(value) or abs(value) > MAX_BOUND:
                raise ValueError(f"a bound must be a finite number of magnitude at most {MAX_BOUND:g}")
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        return self


class TablePolicy(BaseModel):
    """Roles of the columns of one table. Columns not named here cannot be used at all."""

    model_config = ConfigDict(extra="forbid")

    privacy_unit: str = Field(description="The column identifying the person or company that must not be traced.")
    dimensions: list[str] = Field(default_factory=list, description="May be output, grouped and filtered.")
    measures: list[str] = Field(default_factory=list, description="May appear only inside allowed aggregates.")
    hidden: list[str] = Field(default_factory=list, description="Kept in the data, never usable by a buyer.")
    bounds: dict[str, MeasureBounds] = Field(
        default_factory=dict,
        description="Per measure: the range its values are clamped to in sum, avg and the variance family. "
        "A measure without bounds can only be counted.",
    )

    @model_validator(mode="after")
    def _one_role_per_column(self) -> TablePolicy:
        seen: set[str] = set()
        for column in [self.privacy_unit, *self.dimensions, *self.measures, *self.hidden]:
            if column in seen:
                raise ValueError(f"column '{column}' has more than one role")
            seen.add(column)
        strangers = sorted(set(self.bounds) - set(self.measures))
        if strangers:
            raise ValueError(f"bounds are declared for {strangers}, which are not measures")
        return self

    def role_of(self, column: str) -> str | None:
        if column == self.privacy_unit:
            return "privacy_unit"
        if column in self.dimensions:
            return "dimension"
        if column in self.measures:
            return "measure"
        if column in self.hidden:
            return "hidden"
        return None


class PrivacyUnitKind(StrEnum):
    """What the privacy unit is: a natural person's products must use DP mode (DOMAIN.md)."""

    NATURAL_PERSON = "natural_person"
    LEGAL_ENTITY = "legal_entity"
    OTHER = "other"


KeyValue = str | int | float | bool
MAX_PUBLIC_KEYS = 10_000
"""Most combinations of public keys one DP query may release: each is a row of the answer."""


class DifferentialPrivacy(BaseModel):
    """The parameters of DP mode (docs/privacy.md): contribution bounds, public keys, delta and budgets.

    Budgets are stated as epsilon at this policy's `delta`; the accountant keeps them in rho-zCDP.
    """

    model_config = ConfigDict(extra="forbid")

    max_groups_per_unit: int = Field(
        default=1, ge=1, le=1_000, description="Most groups of one query a privacy unit may contribute to."
    )
    max_rows_per_group: int = Field(
        default=1, ge=1, le=100_000, description="Most rows a privacy unit may contribute to one group."
    )
    public_keys: dict[str, list[KeyValue]] = Field(
        default_factory=dict,
        description="Per dimension, its public values: a query grouped only by such dimensions returns "
        "exactly these groups (no threshold). Other groupings keep groups whose noisy unit count passes tau.",
    )
    delta: float = Field(default=1e-7, gt=0, le=1e-4, description="delta of the (epsilon, delta) statements.")
    agreement_epsilon: float = Field(
        default=10.0, gt=0, le=100, description="Each agreement's lifetime budget on this version, as epsilon."
    )
    version_epsilon_cap: float = Field(
        default=50.0, gt=0, le=1_000, description="Cap across all agreements on this version (the regulator's)."
    )
    agreement_delta: float | None = Field(
        default=None,
        gt=0,
        le=1e-2,
        description="Each agreement's lifetime delta: `delta` (the epsilon budget's) plus 0.1 * delta for every "
        "query whose groups pass a noisy threshold (public keys spend none). Default 10 * delta.",
    )
    version_delta_cap: float | None = Field(
        default=None,
        gt=0,
        le=1e-1,
        description="Cap on delta across all agreements on this version (the regulator's). Default: the "
        "agreement's delta times version_epsilon_cap / agreement_epsilon.",
    )
    query_epsilon: float = Field(default=1.0, gt=0, le=10, description="What a query spends unless the buyer says.")
    min_query_epsilon: float = Field(default=0.05, gt=0, le=10, description="Least a buyer may choose per query.")
    max_query_epsilon: float = Field(default=2.0, gt=0, le=10, description="Most a buyer may choose per query.")

    @model_validator(mode="after")
    def _consistent(self) -> DifferentialPrivacy:
        if not self.min_query_epsilon <= self.query_epsilon <= self.max_query_epsilon:
            raise ValueError("query_epsilon must lie between min_query_epsilon and max_query_epsilon")
        if self.max_query_epsilon > self.agreement_epsilon:
            raise ValueError("max_query_epsilon cannot exceed agreement_epsilon")
        if self.agreement_epsilon > self.version_epsilon_cap:
            raise ValueError("agreement_epsilon cannot exceed version_epsilon_cap")
        if self.agreement_delta is not None and self.agreement_delta < self.delta:
            raise ValueError("agreement_delta cannot be less than delta")
        if self.version_delta_cap is not None and self.version_delta_total < self.agreement_delta_total:
            raise ValueError("version_delta_cap cannot be less than agreement_delta")
        for dimension, values in self.public_keys.items():
            if not values or len(values) > MAX_PUBLIC_KEYS or len(set(values)) != len(values):
                raise ValueError(f"public_keys.{dimension} needs 1 to {MAX_PUBLIC_KEYS} distinct values")
        return self

    @property
    def agreement_delta_total(self) -> Decimal:
        """An agreement's lifetime delta, `agreement_delta` or its default (10 * delta), exactly."""
        if self.agreement_delta is not None:
            return Decimal(str(self.agreement_delta))
        return 10 * Decimal(str(self.delta))

    @property
    def version_delta_total(self) -> Decimal:
        """The version's delta cap across agreements, `version_delta_cap` or its default, exactly."""
        if self.version_delta_cap is not None:
            return Decimal(str(self.version_delta_cap))
        ratio = Decimal(str(self.version_epsilon_cap)) / Decimal(str(self.agreement_epsilon))
        return self.agreement_delta_total * ratio


class ProtectionPolicy(BaseModel):
    """What a buyer may compute over a product version."""

    model_config = ConfigDict(extra="forbid")

    min_group_size: int = Field(ge=2, le=100_000, description="k: distinct privacy units every output group needs.")
    tables: dict[str, TablePolicy]
    allowed_aggregates: list[str] = Field(default_factory=lambda: list(DEFAULT_AGGREGATES))
    allow_count_distinct_unit: bool = Field(
        default=True, description="Whether count(DISTINCT <privacy unit>) may be returned."
    )
    mode: Literal["threshold", "dp"] = Field(
        default="threshold", description="threshold: exact answers over groups of k units; dp: noisy answers."
    )
    privacy_unit_kind: PrivacyUnitKind = Field(
        default=PrivacyUnitKind.OTHER, description="natural_person products must use DP mode to be listed."
    )
    dp: DifferentialPrivacy | None = Field(default=None, description="DP mode's parameters; required in DP mode.")

    @model_validator(mode="after")
    def _known_aggregates(self) -> ProtectionPolicy:
        unknown = set(self.allowed_aggregates) - set(DEFAULT_AGGREGATES)
        if unknown:
            raise ValueError(f"aggregates {sorted(unknown)} cannot be allowed; choose from {list(DEFAULT_AGGREGATES)}")
        if not self.tables:
            raise ValueError("a policy needs at least one table")
        if self.mode == "dp" and self.dp is None:
            raise ValueError("DP mode needs its parameters in 'dp'")
        if self.dp is not None:
            dimensions = {d for table in self.tables.values() for d in table.dimensions}
            strangers = sorted(set(self.dp.public_keys) - dimensions)
            if strangers:
                raise ValueError(f"public keys are declared for {strangers}, which are not dimensions")
        return self

    @property
    def is_dp(self) -> bool:
        return self.mode == "dp" and self.dp is not None
