"""Turns a checked query into the statements that run: groups first, then the buyer's view of them.

Stage 1 (`groups_sql`) computes, per group, the group keys, every aggregate the buyer asked for,
and two bounds on each table instance's distinct privacy units:

- `__hi<i>` = count(unit): non-null rows, an upper bound on distinct units;
- `__lo<i>` = the number of distinct 64-way hash buckets the units fall into, minus one if the
  group has a NULL unit: a lower bound, because distinct units can share a bucket but one unit
  never fills two.

Both bounds are exact statements about the data, not estimates. A group passes when every
`__lo` >= k and fails when any `__hi` < k. Groups left in between are decided by re-running stage 1
with count(DISTINCT unit) (`exact_groups_sql`). So the cheap bounds only skip clear cases and
never decide a group near k.

Stage 2 (`output_sql`) reads the groups that passed and evaluates SELECT, HAVING and ORDER BY over
them, then LIMIT/OFFSET. Nothing the buyer wrote after grouping ever sees a group below k, so
HAVING, ORDER BY, LIMIT or a run-time error cannot reveal anything about one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlglot import exp

from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.validator import DIALECT, CheckedQuery, guard

GROUPS_TABLE = "__groups"
_BIGINT = exp.DataType.build("BIGINT")
BUCKETS = 64
"""Hash buckets for the lower bound: a bit per bucket in one UBIGINT, combined with bit_or."""


@dataclass(frozen=True)
class Plan:
    """The statements that answer one buyer query, and what metering needs to know about it."""

    groups_sql: str
    exact_groups_sql: str
    output_sql: str
    decide_sql: str
    columns: list[str]
    tables: list[str]
    referenced_columns: dict[str, list[str]] = field(default_factory=dict)
    fast_threshold: bool = True
    """False runs the exact statement straight away (the naive method, kept for the benchmark)."""


def _q(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _unit(alias: str, unit: str) -> exp.Column:
    return exp.column(unit, table=alias, quoted=True)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _threshold_sql(checked: CheckedQuery, policy: ProtectionPolicy, exact: bool) -> str:
    """The threshold columns, as text: a fixed template over the policy's unit columns, quoted."""
    columns: list[str] = []
    for i, ref in enumerate(checked.refs):
        unit = f"{_quoted(ref.alias)}.{_quoted(policy.tables[ref.table].privacy_unit)}"
        if exact:
            columns.append(f'COUNT(DISTINCT {unit}) AS "__lo{i}", COUNT(DISTINCT {unit}) AS "__hi{i}"')
        else:
            columns.append(
                f"COALESCE(BIT_COUNT(BIT_OR(CAST(1 AS UBIGINT) << (HASH({unit}) % {BUCKETS}))), 0)"
                f' - CAST(COUNT(*) > COUNT({unit}) AS BIGINT) AS "__lo{i}", COUNT({unit}) AS "__hi{i}"'
            )
    return ", ".join(columns)


_PLACEHOLDER = "__threshold__"


class _PostAggregate:
    """Rewrites SELECT/HAVING/ORDER BY expressions to read group keys and aggregates from stage 1."""

    def __init__(self, checked: CheckedQuery) -> None:
        self.checked = checked
        self.keys = {key.sql(DIALECT, comments=False, copy=False): i for i, key in enumerate(checked.group_keys)}
        self.key_types = {type(key) for key in checked.group_keys}
        self.aggregates: dict[str, int] = {}
        self.aggregate_nodes: list[exp.Expr] = []

    def rewrite(self, node: exp.Expr, *, aliases_ok: bool) -> exp.Expr:
        return self._walk(node.copy(), aliases_ok=aliases_ok, depth=0)

    def _walk(self, node: exp.Expr, *, aliases_ok: bool, depth: int) -> exp.Expr:
        if depth > 64:
            raise QueryRefused("disallowed_construct", construct="An alias referring to itself", instead="")
        if type(node) in self.key_types:
            text = node.sql(DIALECT, comments=False, copy=False)
            if text in self.keys:
                return _col(f"__g{self.keys[text]}")
        if isinstance(node, exp.AggFunc):
            text = node.sql(DIALECT, comments=False, copy=False)
            if text not in self.aggregates:
                self.aggregates[text] = len(self.aggregate_nodes)
                self.aggregate_nodes.append(node)
            return _col(f"__a{self.aggregates[text]}")
        if isinstance(node, exp.Column):
            lowered = node.name.lower()
            if aliases_ok and not node.table and lowered in self.checked.aliases:
                item = self.checked.items[self.checked.aliases[lowered]]
                return self._walk(item.copy(), aliases_ok=False, depth=depth + 1)
            raise QueryRefused("not_grouped", column=node.name)
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expr):
                node.set(key, self._walk(value, aliases_ok=aliases_ok, depth=depth))
            elif isinstance(value, list):
                node.set(
                    key,
                    [
                        self._walk(v, aliases_ok=aliases_ok, depth=depth) if isinstance(v, exp.Expr) else v
                        for v in value
                    ],
                )
        return node


def build_plan(checked: CheckedQuery, policy: ProtectionPolicy) -> Plan:
    """The statements for `checked`: stage 1 (fast and exact variants), the decision query and stage 2."""
    post = _PostAggregate(checked)
    outputs = [post.rewrite(item, aliases_ok=False) for item in checked.items]
    select = checked.select
    having = select.args.get("having")
    having_expr = post.rewrite(having.this, aliases_ok=True) if having is not None else None
    order_terms: list[exp.Ordered] = []
    order = select.args.get("order")
    if order is not None:
        for ordered in order.expressions:
            key = ordered.this
            if isinstance(key, exp.Literal) and not key.is_string:
                position = int(key.this) if key.this.isdigit() else 0
                if not 1 <= position <= len(outputs):
                    raise QueryRefused(
                        "disallowed_construct",
                        construct=f"ORDER BY {key.this}",
                        instead=f"order by a position from 1 to {len(outputs)}.",
                    )
                target: exp.Expr = _col(f"__c{position - 1}")
            else:
                target = post.rewrite(key, aliases_ok=True)
            order_terms.append(
                exp.Ordered(this=target, desc=ordered.args.get("desc"), nulls_first=ordered.args.get("nulls_first"))
            )

    projections: list[exp.Expr] = [
        exp.alias_(guard(key.copy()), f"__g{i}", quoted=True, copy=False) for i, key in enumerate(checked.group_keys)
    ]
    projections += [exp.alias_(agg, f"__a{j}", quoted=True, copy=False) for j, agg in enumerate(post.aggregate_nodes)]
    projections.append(_col(_PLACEHOLDER))
    stage = exp.Select(expressions=projections)
    stage.set("from_", select.args.get("from_") or select.args.get("from"))
    stage.set("joins", select.args.get("joins") or None)
    stage.set("where", select.args.get("where"))
    if checked.group_keys:
        stage.set("group", exp.Group(expressions=[guard(key.copy()) for key in checked.group_keys]))
    template = stage.sql(DIALECT, comments=False, copy=False)
    # The threshold columns are put in place of a placeholder the buyer cannot write (names with
    # __ are refused), found exactly once. The fast and exact statements differ only there, so the
    # buyer part DuckDB's parser confirms in groups_sql is the same text in exact_groups_sql.
    placeholder = _quoted(_PLACEHOLDER)
    if template.count(placeholder) != 1:
        raise QueryRefused("parser_mismatch", detail="the threshold columns could not be placed")
    groups_sql = template.replace(placeholder, _threshold_sql(checked, policy, exact=False))
    exact_groups_sql = template.replace(placeholder, _threshold_sql(checked, policy, exact=True))

    k = policy.min_group_size
    n = len(checked.refs)
    passes = exp.and_(*[_col(f"__lo{i}") >= k for i in range(n)])
    output = exp.Select(
        expressions=[exp.alias_(e, f"__c{i}", quoted=True, copy=False) for i, e in enumerate(outputs)]
    ).from_(exp.Table(this=_q(GROUPS_TABLE)), copy=False)
    output = output.where(
        exp.and_(passes.copy(), having_expr) if having_expr is not None else passes.copy(), copy=False
    )
    if order_terms:
        output = output.order_by(*order_terms, copy=False)
    if checked.limit is not None:
        output = output.limit(checked.limit, copy=False)
    if checked.offset:
        output = output.offset(checked.offset, copy=False)
    return Plan(
        groups_sql=groups_sql,
        exact_groups_sql=exact_groups_sql,
        output_sql=output.sql(DIALECT, comments=False, copy=False),
        decide_sql=_decide_sql(policy.min_group_size, len(checked.refs)),
        columns=checked.columns,
        tables=[ref.table for ref in checked.refs],
        referenced_columns={t: sorted(c) for t, c in checked.referenced_columns.items()},
    )


@functools.lru_cache(maxsize=256)
def _decide_sql(k: int, n: int) -> str:
    """Counts groups, suppressed groups and groups the cheap bounds leave undecided."""
    passes = exp.and_(*[_col(f"__lo{i}") >= k for i in range(n)])
    fails = exp.or_(*[_col(f"__hi{i}") < k for i in range(n)])
    decide = exp.select(
        exp.alias_(exp.Count(this=exp.Star()), "groups", quoted=True),
        exp.alias_(
            exp.Sum(this=exp.Cast(this=exp.not_(passes.copy()), to=_BIGINT.copy())),
            "suppressed",
            quoted=True,
        ),
        exp.alias_(
            exp.Sum(this=exp.Cast(this=exp.and_(exp.not_(passes.copy()), exp.not_(fails.copy())), to=_BIGINT.copy())),
            "undecided",
            quoted=True,
        ),
    ).from_(exp.Table(this=_q(GROUPS_TABLE)))
    return str(decide.sql(DIALECT, comments=False))
