"""The join fan-out bound: how many rows of the joined tables one row of the root table can meet.

Stage 1 reads its root table whole and LEFT JOINs every other table to that chain (rewrite.whole_sides);
join keys are bare columns (validator._check_join_key). So a root row meets, in the next table, the rows
whose key compares as its own stored value does: at most that table's *fan-out* F on the key (the most
rows sharing one value of the column), and through a chain of tables at most the product of their F.
A hidden root row whose own key value is a skewed one (one value shared by many rows of the other table)
therefore costs up to F rows of work where another row costs one: a timing difference of F rows, read
by a buyer who filters to that row (docs/sandbox.md, "Join fan-out: a bound on F").

The bound: a query whose product of fan-outs exceeds `EngineLimits.max_join_fanout` is refused before it
runs (`join_fanout`). The decision reads only the query text (which tables, which conditions, which root)
and public per-version statistics (each fan-out and row count rounded up to a power of two), never the
rows a filter selects, so the refusal itself is no oracle: the same query on the same version is refused
or not whatever its WHERE matches.

- An equality (`=`, `IS NOT DISTINCT FROM`) between two columns whose types compare exactly as GROUP BY
  groups (comparable) bounds a table's matches by its fan-out on its own column (with NULL keys counted
  for IS NOT DISTINCT FROM, which matches NULL with NULL). Several equalities: the smallest bounds.
- Any other join (a CROSS JOIN, only inequalities `<`, `<>`, `IS DISTINCT FROM`, a condition on one table,
  or an equality between types that cast) can match every row: F is the table's row count.
- One-directional: F is the joined (non-root) table's. A lookup (many root rows, each meeting one row of a
  dimension table, F = 1 on its key) costs one row per root row, whatever the data.

Pure functions over the plan (`Plan.joins`, built by join_steps from the rewritten stage 1) and the worker's
statistics (sandbox.engine.Statistics, seeded from products.storage.table_statistics at build time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlglot import exp

from market.i18n import Msg

if TYPE_CHECKING:
    from sandbox.binding import Refusal

DEFAULT_MAX_JOIN_FANOUT = 1024
"""Rows of the joined tables one root row may meet (settings.sandbox_max_join_fanout)."""

EXACT_EQUALITY_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "VARCHAR", "DATE"}
)
"""Join-key types whose equality in a join is exactly GROUP BY's equality, so the fan-out counted by
GROUP BY bounds the rows a join can match. Joins on other or mixed types (casts can make distinct
values equal, e.g. large BIGINTs as DOUBLE) are bounded by the row count instead."""

_WIDENS_EXACTLY = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"})
"""Integer types that all fit in BIGINT: comparing two of them widens both without changing a value."""


class Statistics(Protocol):
    """What the bound reads of a version (sandbox.engine.TableStatistics implements it)."""

    def fanout(self, table: str, column: str, *, nulls_match: bool = False) -> int: ...

    def rows(self, table: str) -> int: ...

    def column_type(self, table: str, column: str) -> str: ...


@dataclass(frozen=True)
class Condition:
    """One comparison of two bare columns in the ON that brings a table into the chain."""

    operator: str
    """"=" (equality), "nulls" (IS NOT DISTINCT FROM: NULL keys match too) or "other"."""
    column: str
    """The joined table's own column."""
    other_table: str
    other_column: str


@dataclass(frozen=True)
class JoinStep:
    """A table stage 1 joins to the chain that starts from the root table, with the conditions of its ON."""

    table: str
    alias: str
    conditions: tuple[Condition, ...]


_OPERATORS: dict[type[exp.Expr], str] = {exp.EQ: "=", exp.NullSafeEQ: "nulls"}
_COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ)


def _bare(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    if node is None:
        return []
    node = _bare(node)
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def join_steps(joins: Sequence[exp.Join], tables: Mapping[str, str]) -> tuple[JoinStep, ...]:
    """The joins of stage 1 as it runs (after rewrite.whole_sides, root first), `tables` mapping each alias
    to its table. Only comparisons of two bare columns read the other side's key (the validator allows no
    other condition on two tables); the rest (a CASE-wrapped condition on the table alone) only filters
    the candidates a key comparison gives."""
    steps: list[JoinStep] = []
    for join in joins:
        source = join.this
        if not isinstance(source, exp.Table):
            continue
        alias = source.alias_or_name
        conditions: list[Condition] = []
        for conjunct in _conjuncts(join.args.get("on")):
            if not isinstance(conjunct, _COMPARISONS):
                continue
            left, right = _bare(conjunct.this), _bare(conjunct.expression)
            if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)) or left.table == right.table:
                continue
            own, other = (left, right) if left.table == alias else (right, left)
            if own.table != alias or other.table not in tables:
                continue
            operator = _OPERATORS.get(type(conjunct), "other")
            conditions.append(Condition(operator, own.name, tables[other.table], other.name))
        steps.append(JoinStep(table=tables.get(alias, source.name), alias=alias, conditions=tuple(conditions)))
    return tuple(steps)


def comparable(a_type: str, b_type: str) -> bool:
    """Whether an equality between columns of these DuckDB types matches exactly the values GROUP BY groups."""
    if a_type in EXACT_EQUALITY_TYPES and a_type == b_type:
        return True
    return a_type in _WIDENS_EXACTLY and b_type in _WIDENS_EXACTLY


def step_fanout(step: JoinStep, stats: Statistics) -> tuple[int, str | None]:
    """(the most rows of `step.table` one chain row can meet, the column that bounds it or None for the
    row count), rounded up to powers of two as the statistics give them."""
    best, column = stats.rows(step.table), None
    for condition in step.conditions:
        if condition.operator == "other":
            continue
        own_type = stats.column_type(step.table, condition.column)
        if not comparable(own_type, stats.column_type(condition.other_table, condition.other_column)):
            continue
        found = stats.fanout(step.table, condition.column, nulls_match=condition.operator == "nulls")
        if column is None or found < best:
            best, column = found, condition.column
    return best, column


def refusal(steps: Sequence[JoinStep], stats: Statistics, limit: int) -> Refusal | None:
    """`join_fanout` when one root row can meet more than `limit` rows of the joined tables (the product of
    every step's fan-out; an empty table or key counts as 1: the LEFT JOIN still yields the row), else None.
    The message names the step with the largest fan-out: the one to change."""
    if not steps:
        return None
    product = 1
    worst: tuple[int, JoinStep, str | None] | None = None
    for step in steps:
        fanout, column = step_fanout(step, stats)
        product *= max(1, fanout)
        if worst is None or fanout > worst[0]:
            worst = (fanout, step, column)
    if product <= limit or worst is None:
        return None
    fanout, step, column = worst
    return (
        "join_fanout",
        {
            "table": step.table,
            "column": column if column is not None else Msg("no equality of columns (every row)"),
            "fanout": str(fanout),
            "product": str(product),
            "limit": str(limit),
        },
    )
