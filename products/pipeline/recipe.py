"""The declarative recipe that turns an upload into a product table: cleaning, then desensitising.

A recipe is data, stored with every version it built and hashed, so a version can be rebuilt and
checked. It compiles to DuckDB SQL here; products.pipeline.run executes it.

Cleaning per column: a type, trimming, `required`, value rules (min, max, allowed, pattern). A row
that breaks a rule is rejected (dropped and counted) or quarantined (kept aside for the operator,
counted), as the column's `on_invalid` says. `dedupe` removes identical cleaned rows.

Desensitising per column (DOMAIN.md rule 3, 不可回溯): a source column that no output column uses is
dropped; `pseudonymise` replaces a value by HMAC-SHA256 under the product's own secret, so one
person links within a product but not across products; `bin`, `truncate_date` and `prefix`
generalise; `mask` hides all but a few characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TYPES = re.compile(r"^(varchar|integer|bigint|double|date|timestamp|boolean|decimal\((\d{1,2}),\s*(\d{1,2})\))\Z")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")
PSEUDONYM_HEX = 32
"""Pseudonyms keep 128 bits of the HMAC, as hex: collisions are negligible for any realistic population."""


class Transform(BaseModel):
    """How a cleaned value is desensitised before it is stored."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["keep", "pseudonymise", "bin", "truncate_date", "prefix", "mask"] = "keep"
    width: Decimal | None = Field(default=None, gt=0, description="bin: the bin width; values become lower bounds.")
    unit: Literal["decade", "year", "quarter", "month", "week", "day"] | None = Field(
        default=None, description="truncate_date: the unit dates are truncated to."
    )
    length: int | None = Field(default=None, ge=1, le=64, description="prefix: characters kept.")
    keep_first: int = Field(default=0, ge=0, le=64, description="mask: leading characters kept.")
    keep_last: int = Field(default=0, ge=0, le=64, description="mask: trailing characters kept.")

    @model_validator(mode="after")
    def _parameters(self) -> Transform:
        needed = {"bin": "width", "truncate_date": "unit", "prefix": "length"}.get(self.kind)
        if needed and getattr(self, needed) is None:
            raise ValueError(f"transform '{self.kind}' needs '{needed}'")
        return self


class ColumnRecipe(BaseModel):
    """One output column: where it comes from, how it is cleaned and how it is desensitised."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(default=None, description="The source column; defaults to the output name.")
    type: str = Field(default="varchar", description="varchar, integer, bigint, double, decimal(p,s), date, ...")
    trim: bool = True
    required: bool = False
    min: str | int | float | None = None
    max: str | int | float | None = None
    allowed: list[str] | None = None
    pattern: str | None = Field(default=None, max_length=500, description="A regular expression the text must match.")
    on_invalid: Literal["reject", "quarantine"] = "reject"
    transform: Transform = Field(default_factory=Transform)

    @model_validator(mode="after")
    def _valid(self) -> ColumnRecipe:
        self.type = self.type.strip().lower()
        if not TYPES.match(self.type):
            raise ValueError(
                f"type '{self.type}' is not supported; use varchar, integer, bigint, double, "
                "decimal(p,s), date, timestamp or boolean"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern is not a valid regular expression ({error})") from error
        kind = self.transform.kind
        numeric = self.type in ("integer", "bigint", "double") or self.type.startswith("decimal")
        if kind == "bin" and not numeric:
            raise ValueError("transform 'bin' needs a numeric type")
        if kind == "truncate_date" and self.type not in ("date", "timestamp"):
            raise ValueError("transform 'truncate_date' needs type date or timestamp")
        return self


class TableRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: dict[str, ColumnRecipe] = Field(min_length=1, description="Output columns in order; others are dropped.")
    dedupe: bool = Field(default=False, description="Remove rows identical after cleaning.")
    quasi_identifiers: list[str] = Field(
        default_factory=list,
        description="Output columns that together could single a person out; k-anonymity is checked on them.",
    )

    @model_validator(mode="after")
    def _names(self) -> TableRecipe:
        for name in self.columns:
            if not NAME.match(name):
                raise ValueError(f"column name '{name}' must be lower-case letters, digits and underscores")
        unknown = [q for q in self.quasi_identifiers if q not in self.columns]
        if unknown:
            raise ValueError(f"quasi_identifiers {unknown} are not output columns")
        return self


class Recipe(BaseModel):
    """Per table, the cleaning and desensitising steps."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, TableRecipe] = Field(min_length=1)

    def digest(self) -> str:
        """SHA-256 of the recipe's canonical JSON: equal recipes have equal hashes."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# -- compiling to SQL ----------------------------------------------------------------------------


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def hmac_pads(secret: bytes) -> tuple[str, str]:
    """The inner and outer HMAC-SHA256 key pads as hex (RFC 2104), so DuckDB can compute the HMAC itself."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()


def checks(name: str, column: ColumnRecipe, text: str, value: str) -> list[tuple[str, str]]:
    """(SQL condition that is true when the row breaks a rule, label) for each rule of a column."""
    out: list[tuple[str, str]] = []
    if column.required:
        out.append((f"{text} IS NULL", f"{name}: missing"))
    if column.type != "varchar":
        out.append((f"{text} IS NOT NULL AND {value} IS NULL", f"{name}: not a {column.type}"))
    if column.min is not None:
        out.append((f"{value} < CAST({lit(column.min)} AS {column.type})", f"{name}: below {column.min}"))
    if column.max is not None:
        out.append((f"{value} > CAST({lit(column.max)} AS {column.type})", f"{name}: above {column.max}"))
    if column.allowed is not None:
        allowed = ", ".join(lit(a) for a in column.allowed)
        out.append((f"CAST({value} AS VARCHAR) NOT IN ({allowed})", f"{name}: not an allowed value"))
    if column.pattern is not None:
        out.append((f"NOT regexp_full_match({text}, {lit(column.pattern)})", f"{name}: does not match the pattern"))
    return out


def cleaned(column: ColumnRecipe, source: str) -> tuple[str, str]:
    """SQL for the column's text (trimmed, empty as NULL) and its typed value."""
    raw = f"CAST({q(source)} AS VARCHAR)"
    text = f"NULLIF(trim({raw}), '')" if column.trim else raw
    value = text if column.type == "varchar" else f"TRY_CAST({text} AS {column.type})"
    return text, value


def transformed(column: ColumnRecipe, value: str, pads: tuple[str, str]) -> str:
    """SQL for the desensitised value of a cleaned column."""
    t = column.transform
    if t.kind == "pseudonymise":
        inner, outer = pads
        digest = (
            f"sha256(unhex({lit(outer)}) || unhex(sha256(unhex({lit(inner)}) || encode(CAST({value} AS VARCHAR)))))"
        )
        return f"CASE WHEN {value} IS NULL THEN NULL ELSE left({digest}, {PSEUDONYM_HEX}) END"
    if t.kind == "bin":
        return f"CAST(floor({value} / {t.width}) * {t.width} AS {column.type})"
    if t.kind == "truncate_date":
        return f"CAST(date_trunc({lit(t.unit)}, {value}) AS DATE)"
    if t.kind == "prefix":
        return f"left(CAST({value} AS VARCHAR), {t.length})"
    if t.kind == "mask":
        text = f"CAST({value} AS VARCHAR)"
        a, b = t.keep_first, t.keep_last
        return (
            f"CASE WHEN {value} IS NULL THEN NULL WHEN length({text}) <= {a + b} THEN repeat('*', length({text})) "
            f"ELSE left({text}, {a}) || repeat('*', length({text}) - {a + b}) || right({text}, {b}) END"
        )
    return value
