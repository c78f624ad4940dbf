"""The protection policy a product version carries, as the sandbox enforces it (DOMAIN.md, Protection policy)."""

from __future__ import annotations

import math

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


class ProtectionPolicy(BaseModel):
    """What a buyer may compute over a product version."""

    model_config = ConfigDict(extra="forbid")

    min_group_size: int = Field(ge=2, le=100_000, description="k: distinct privacy units every output group needs.")
    tables: dict[str, TablePolicy]
    allowed_aggregates: list[str] = Field(default_factory=lambda: list(DEFAULT_AGGREGATES))
    allow_count_distinct_unit: bool = Field(
        default=True, description="Whether count(DISTINCT <privacy unit>) may be returned."
    )

    @model_validator(mode="after")
    def _known_aggregates(self) -> ProtectionPolicy:
        unknown = set(self.allowed_aggregates) - set(DEFAULT_AGGREGATES)
        if unknown:
            raise ValueError(f"aggregates {sorted(unknown)} cannot be allowed; choose from {list(DEFAULT_AGGREGATES)}")
        if not self.tables:
            raise ValueError("a policy needs at least one table")
        return self
