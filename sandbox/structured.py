"""The structured query: dimensions, measures with aggregates, and filters, for callers that don't write SQL.

It compiles to one SELECT in DuckDB's dialect, built with sqlglot (identifiers quoted, values as
literals), and that SQL then takes exactly the path a written query takes: both validators, the
rewrite and the threshold. So a structured query can never do anything SQL could not.

    {"table": "flights", "dimensions": ["origin"],
     "measures": [{"aggregate": "avg", "column": "dep_delay", "as": "avg_delay"}],
     "filters": [{"column": "month", "op": "in", "value": [1, 2]}],
     "order_by": [{"column": "avg_delay", "descending": true}], "limit": 10}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, model_validator
from sqlglot import exp

from sandbox.validator import DIALECT

Scalar = str | int | Annotated[float, AllowInfNan(False)] | bool
"""A filter value; a number is finite (JSON's 1e999 once compiled to a column named inf)."""

AGGREGATES = Literal[
    "count", "count_distinct", "sum", "avg", "stddev", "stddev_samp", "stddev_pop", "variance", "var_pop"
]
OPERATORS = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "between", "like", "is_null", "is_not_null"]


class Measure(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    aggregate: AGGREGATES
    column: str | None = Field(default=None, description="A measure column; omit for count(*).")
    alias: str | None = Field(default=None, alias="as", description="The output column's name.")

    @model_validator(mode="after")
    def _column_needed(self) -> Measure:
        if self.column is None and self.aggregate != "count":
            raise ValueError(f"{self.aggregate} needs a column")
        return self


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="A dimension, optionally qualified: table.column.")
    op: OPERATORS
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_shape(self) -> Filter:
        if self.op in ("is_null", "is_not_null"):
            if self.value is not None:
                raise ValueError(f"{self.op} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"{self.op} needs a non-empty list of values")
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError("between needs a list of two values")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"{self.op} needs one value")
        return self


class Join(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str
    on: list[tuple[str, str]] = Field(min_length=1, description="Pairs of columns that must be equal.")


class OrderBy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="An output column: a dimension or a measure's name.")
    descending: bool = False


class StructuredQuery(BaseModel):
    """Dimensions to group by, measures to aggregate, and filters on dimensions."""

    model_config = ConfigDict(extra="forbid")

    table: str
    joins: list[Join] = Field(default_factory=list, max_length=4)
    dimensions: list[str] = Field(default_factory=list, max_length=20)
    measures: list[Measure] = Field(min_length=1, max_length=50)
    filters: list[Filter] = Field(default_factory=list, max_length=50)
    order_by: list[OrderBy] = Field(default_factory=list, max_length=20)
    limit: int | None = Field(default=None, ge=1, le=1_000_000)


def _column(name: str) -> exp.Column:
    table, _, column = name.rpartition(".")
    return exp.column(column, table=table or None, quoted=True)


def _value(value: Scalar) -> exp.Expr:
    return exp.convert(value)


def _aggregate(measure: Measure) -> exp.Expr:
    if measure.aggregate == "count":
        return exp.Count(this=exp.Star() if measure.column is None else _column(measure.column))
    assert measure.column is not None
    column = _column(measure.column)
    if measure.aggregate == "count_distinct":
        return exp.Count(this=exp.Distinct(expressions=[column]))
    return exp.Anonymous(this=measure.aggregate, expressions=[column])


def _condition(f: Filter) -> exp.Expr:
    column = _column(f.column)
    value = f.value
    if f.op == "is_null":
        return exp.Is(this=column, expression=exp.Null())
    if f.op == "is_not_null":
        return exp.not_(exp.Is(this=column, expression=exp.Null()))
    if f.op in ("in", "not_in"):
        assert isinstance(value, list)
        condition: exp.Expr = exp.In(this=column, expressions=[_value(v) for v in value])
        return exp.not_(condition) if f.op == "not_in" else condition
    if f.op == "between":
        assert isinstance(value, list)
        return exp.Between(this=column, low=_value(value[0]), high=_value(value[1]))
    assert value is not None and not isinstance(value, list)
    operators: dict[str, type[exp.Expr]] = {
        "=": exp.EQ,
        "!=": exp.NEQ,
        "<": exp.LT,
        "<=": exp.LTE,
        ">": exp.GT,
        ">=": exp.GTE,
        "like": exp.Like,
    }
    return operators[f.op](this=column, expression=_value(value))


def compile_query(query: StructuredQuery) -> str:
    """The SQL a structured query stands for; it is then validated like any written query."""
    items: list[exp.Expr] = [_column(d) for d in query.dimensions]
    for measure in query.measures:
        aggregate = _aggregate(measure)
        items.append(exp.alias_(aggregate, measure.alias, quoted=True) if measure.alias else aggregate)
    select = exp.select(*items).from_(exp.Table(this=exp.to_identifier(query.table, quoted=True)))
    for join in query.joins:
        on = exp.and_(*[exp.EQ(this=_column(a), expression=_column(b)) for a, b in join.on])
        select = select.join(exp.Table(this=exp.to_identifier(join.table, quoted=True)), on=on)
    if query.filters:
        select = select.where(exp.and_(*[_condition(f) for f in query.filters]))
    if query.dimensions:
        select = select.group_by(*[exp.Literal.number(i + 1) for i in range(len(query.dimensions))])
    for order in query.order_by:
        select = select.order_by(exp.Ordered(this=_column(order.column), desc=order.descending))
    if query.limit is not None:
        select = select.limit(query.limit)
    return str(select.sql(DIALECT))
