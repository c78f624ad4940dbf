"""Checks one buyer SELECT against a protection policy and rewrites it so every group meets k.

Parsing is sqlglot's, in DuckDB's dialect. Nothing the buyer wrote is executed as written: the
statement is walked against an allowlist of node types, then regenerated from the checked tree,
with the threshold columns added and ORDER BY / LIMIT moved outside the threshold. What runs is
exactly what was validated. See docs/sandbox.md for the rules and why they are enough.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy, TablePolicy

DIALECT = "duckdb"

AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Stddev: "stddev",
    exp.StddevSamp: "stddev_samp",
    exp.StddevPop: "stddev_pop",
    exp.Variance: "variance",
    exp.VariancePop: "var_pop",
}

SCALAR_FUNCTIONS: tuple[type[exp.Expr], ...] = (
    exp.Abs,
    exp.Round,
    exp.Floor,
    exp.Ceil,
    exp.Sqrt,
    exp.Ln,
    exp.Log,
    exp.Pow,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Substring,
    exp.Trim,
    exp.Concat,
    exp.DPipe,
    exp.Left,
    exp.Right,
    exp.Replace,
    exp.DateTrunc,
    exp.TimestampTrunc,
    exp.Extract,
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Coalesce,
    exp.Nullif,
    exp.Greatest,
    exp.Least,
    exp.Cast,
    exp.TryCast,
    exp.If,
    exp.Case,
)

STRUCTURAL: tuple[type[exp.Expr], ...] = (
    exp.Select,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Table,
    exp.TableAlias,
    exp.Alias,
    exp.Identifier,
    exp.Column,
    exp.Star,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.DataType,
    exp.DataTypeParam,
    exp.Var,
    exp.Interval,
    exp.Distinct,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.Neg,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Tuple,
)

REFUSED_CONSTRUCTS: dict[type[exp.Expr], tuple[str, str]] = {
    exp.Window: ("A window function (OVER ...)", "aggregate with GROUP BY instead."),
    exp.Subquery: ("A subquery", "write one SELECT over the product's tables, joined if needed."),
    exp.With: ("A WITH clause (CTE)", "write one SELECT over the product's tables, joined if needed."),
    exp.Union: ("UNION", "run each SELECT as its own query."),
    exp.Intersect: ("INTERSECT", "run each SELECT as its own query."),
    exp.Except: ("EXCEPT", "run each SELECT as its own query."),
    exp.Rollup: ("ROLLUP", "GROUP BY the dimensions and run one query per grouping level."),
    exp.Cube: ("CUBE", "GROUP BY the dimensions and run one query per grouping level."),
    exp.GroupingSets: ("GROUPING SETS", "GROUP BY the dimensions and run one query per grouping level."),
    exp.Filter: ("An aggregate FILTER clause", "filter rows with WHERE, or group by the dimension."),
    exp.TableSample: ("TABLESAMPLE", "query the whole table and filter with WHERE."),
    exp.Placeholder: ("A query parameter", "write the value in the SQL."),
    exp.Qualify: ("QUALIFY", "filter groups with HAVING."),
    exp.Lateral: ("LATERAL", "join the product's tables directly."),
    exp.Unnest: ("UNNEST", "query the product's tables only."),
    exp.Pivot: ("PIVOT", "GROUP BY the dimension instead."),
}


@dataclass(frozen=True)
class TableRef:
    """One table instance in FROM/JOIN: the product table and the name it goes by in the query."""

    table: str
    alias: str


@dataclass
class ValidatedQuery:
    """A checked query and the statement that will actually run."""

    sql: str
    """The rewritten statement: output columns, then `__pass`, ordered as the buyer asked."""
    columns: list[str]
    tables: list[str]
    referenced_columns: dict[str, set[str]] = field(default_factory=dict)
    limit: int | None = None
    offset: int = 0


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return str(node.sql_name()).lower()
    return type(node).__name__.lower()


class _Checker:
    def __init__(self, select: exp.Select, policy: ProtectionPolicy) -> None:
        self.select = select
        self.policy = policy
        self.refs: list[TableRef] = []
        self.by_alias: dict[str, TableRef] = {}
        self.aliases: dict[str, exp.Expr] = {}
        self.referenced: dict[str, set[str]] = {}

    # -- tables ---------------------------------------------------------------------------------
    def collect_tables(self) -> None:
        from_ = self.select.args.get("from_") or self.select.args.get("from")
        if from_ is None:
            raise QueryRefused("not_aggregated")
        sources = [from_.this] + [j.this for j in self.select.args.get("joins") or []]
        for source in sources:
            if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
                construct = _function_name(source.this) if isinstance(source, exp.Table) else source.key
                raise QueryRefused(
                    "disallowed_construct",
                    construct=f"Reading from {construct}",
                    instead=f"query the product's tables: {', '.join(sorted(self.policy.tables))}.",
                )
            if source.args.get("db") or source.args.get("catalog"):
                raise QueryRefused("unknown_table", table=source.sql(DIALECT), tables=self._table_list())
            name = source.name
            if name not in self.policy.tables:
                raise QueryRefused("unknown_table", table=name, tables=self._table_list())
            alias = source.alias or name
            if alias in self.by_alias:
                raise QueryRefused(
                    "disallowed_construct",
                    construct=f"Using the name '{alias}' twice",
                    instead="give each table in the query its own alias.",
                )
            ref = TableRef(table=name, alias=alias)
            self.refs.append(ref)
            self.by_alias[alias] = ref

    def _table_list(self) -> str:
        return ", ".join(sorted(self.policy.tables))

    # -- columns --------------------------------------------------------------------------------
    def resolve(self, column: exp.Column) -> tuple[TableRef, TablePolicy, str | None] | None:
        """The table a column belongs to and its role; None when it names a SELECT alias."""
        name = column.name
        qualifier = column.table
        if qualifier:
            ref = self.by_alias.get(qualifier)
            if ref is None:
                raise QueryRefused("unknown_table", table=qualifier, tables=self._table_list())
            table_policy = self.policy.tables[ref.table]
            return ref, table_policy, table_policy.role_of(name)
        matches = [
            (ref, self.policy.tables[ref.table])
            for ref in self.refs
            if self.policy.tables[ref.table].role_of(name) is not None
        ]
        if not matches:
            if name in self.aliases:
                return None
            raise QueryRefused("unknown_column", column=name, columns=self._usable_columns())
        if len(matches) > 1 and name not in self.aliases:
            raise QueryRefused(
                "disallowed_construct",
                construct=f"The unqualified column '{name}', present in several tables,",
                instead=f"qualify it, e.g. {matches[0][0].alias}.{name}.",
            )
        ref, table_policy = matches[0]
        return ref, table_policy, table_policy.role_of(name)

    def _usable_columns(self) -> str:
        usable: list[str] = []
        for ref in self.refs:
            table_policy = self.policy.tables[ref.table]
            usable += [f"{c} (dimension)" for c in table_policy.dimensions]
            usable += [f"{c} (measure)" for c in table_policy.measures]
        return ", ".join(usable) or "none"

    def _dimension_list(self) -> str:
        return ", ".join(d for ref in self.refs for d in self.policy.tables[ref.table].dimensions) or "none"

    # -- the walk -------------------------------------------------------------------------------
    def check_node_types(self) -> None:
        # Aggregates first, so that a refused aggregate is named as such even when wrapped
        # (e.g. any_value(x) parses inside an IGNORE NULLS node).
        for node in self.select.walk():
            if isinstance(node, exp.AggFunc) or (
                isinstance(node, exp.Func) and _function_name(node) in _KNOWN_ROW_REVEALERS
            ):
                self.check_aggregate(node)
        for node in self.select.walk():
            if isinstance(node, exp.Select) and node is not self.select:
                construct, instead = REFUSED_CONSTRUCTS[exp.Subquery]
                raise QueryRefused("disallowed_construct", construct=construct, instead=instead)
            for refused, (construct, instead) in REFUSED_CONSTRUCTS.items():
                if isinstance(node, refused):
                    raise QueryRefused("disallowed_construct", construct=construct, instead=instead)
            if isinstance(node, (exp.AggFunc, *STRUCTURAL, *SCALAR_FUNCTIONS)):
                continue
            if isinstance(node, exp.Func):
                raise QueryRefused("disallowed_function", function=_function_name(node), allowed=_SCALAR_ALLOWED_TEXT)
            raise QueryRefused(
                "disallowed_construct",
                construct=f"The construct {node.key.upper()}",
                instead="use columns, literals, arithmetic, comparisons and the allowed functions.",
            )

    def check_aggregate(self, node: exp.Expr) -> None:
        name = AGGREGATES.get(type(node))
        if name is None or name not in self.policy.allowed_aggregates:
            raise QueryRefused(
                "disallowed_aggregate",
                function=_function_name(node),
                allowed=", ".join(self.policy.allowed_aggregates),
            )
        outer = node.find_ancestor(exp.AggFunc)
        if outer is not None:
            raise QueryRefused(
                "disallowed_construct",
                construct="An aggregate inside another aggregate",
                instead="aggregate once per group.",
            )
        for inner in node.find_all(exp.Case, exp.If):
            raise QueryRefused(
                "disallowed_construct",
                construct=f"A conditional ({inner.key.upper()}) inside {name}()",
                instead="filter rows with WHERE, or GROUP BY the dimension you condition on.",
            )

    def check_columns(self) -> None:
        for column in self.select.find_all(exp.Column):
            if isinstance(column.this, exp.Star):
                raise QueryRefused("star_not_allowed")
            resolved = self.resolve(column)
            if resolved is None:
                continue
            ref, _, role = resolved
            name = column.name
            if role is None:
                raise QueryRefused("unknown_column", column=name, columns=self._usable_columns())
            self.referenced.setdefault(ref.table, set()).add(name)
            aggregate = column.find_ancestor(exp.AggFunc)
            if role == "dimension":
                continue
            if role == "measure":
                if aggregate is None:
                    raise QueryRefused("measure_outside_aggregate", column=name)
                continue
            if role == "privacy_unit" and self._is_count_distinct_unit(column, aggregate):
                continue
            exception = (
                "; the only allowed use is count(DISTINCT " + name + ")"
                if role == "privacy_unit" and self.policy.allow_count_distinct_unit
                else ""
            )
            raise QueryRefused("protected_column", column=name, exception=exception)
        for star in self.select.find_all(exp.Star):
            if not isinstance(star.parent, exp.Count):
                raise QueryRefused("star_not_allowed")

    def _is_count_distinct_unit(self, column: exp.Column, aggregate: exp.Expr | None) -> bool:
        if not self.policy.allow_count_distinct_unit or not isinstance(aggregate, exp.Count):
            return False
        distinct = aggregate.this
        return (
            isinstance(distinct, exp.Distinct) and len(distinct.expressions) == 1 and distinct.expressions[0] is column
        )

    def check_clauses(self) -> None:
        where = self.select.args.get("where")
        if where is not None and where.find(exp.AggFunc):
            raise QueryRefused(
                "disallowed_construct",
                construct="An aggregate in WHERE",
                instead="filter groups with HAVING.",
            )
        for join in self.select.args.get("joins") or []:
            if join.find(exp.AggFunc):
                raise QueryRefused(
                    "disallowed_construct",
                    construct="An aggregate in a join condition",
                    instead="join on dimensions.",
                )
        group = self.select.args.get("group")
        if group is not None:
            for expression in group.expressions:
                if expression.find(exp.AggFunc):
                    raise QueryRefused(
                        "disallowed_construct",
                        construct="An aggregate in GROUP BY",
                        instead="group by dimensions.",
                    )
        has_aggregate = any(item.find(exp.AggFunc) for item in self.select.expressions)
        if group is None and not has_aggregate:
            raise QueryRefused("not_aggregated")

    def run(self) -> None:
        if self.select.args.get("with_") or self.select.args.get("with"):
            construct, instead = REFUSED_CONSTRUCTS[exp.With]
            raise QueryRefused("disallowed_construct", construct=construct, instead=instead)
        self.collect_tables()
        for item in self.select.expressions:
            if isinstance(item, exp.Alias):
                self.aliases[item.alias] = item.this
        self.check_node_types()
        self.check_clauses()
        self.check_columns()


_KNOWN_ROW_REVEALERS = frozenset(
    {
        "min",
        "max",
        "median",
        "mode",
        "quantile",
        "quantile_cont",
        "quantile_disc",
        "percentile_cont",
        "percentile_disc",
        "any_value",
        "first",
        "last",
        "arg_max",
        "arg_min",
        "argmax",
        "argmin",
        "max_by",
        "min_by",
        "list",
        "array_agg",
        "string_agg",
        "group_concat",
        "listagg",
        "histogram",
        "approx_top_k",
        "approx_quantile",
        "reservoir_quantile",
        "bit_and",
        "bit_or",
        "bit_xor",
        "bool_and",
        "bool_or",
        "product",
        "entropy",
        "kurtosis",
        "skewness",
        "mad",
        "fsum",
        "bitstring_agg",
        "arbitrary",
    }
)

_SCALAR_ALLOWED_TEXT = (
    "abs, round, floor, ceil, sqrt, ln, log, pow, lower, upper, length, substring, trim, concat, left, right, "
    "replace, date_trunc, extract, year, month, day, coalesce, nullif, greatest, least, cast, try_cast, if, case"
)


def _output_name(item: exp.Expr) -> str:
    if isinstance(item, exp.Alias):
        return str(item.alias)
    if isinstance(item, exp.Column):
        return str(item.name)
    return item.sql(DIALECT, normalize_functions="lower")


def _literal_int(node: exp.Expr | None, clause: str) -> int | None:
    if node is None:
        return None
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    raise QueryRefused(
        "disallowed_construct",
        construct=f"A non-literal {clause}",
        instead=f"write {clause} as a whole number.",
    )


def parse_one_select(sql: str) -> exp.Select:
    """Parse `sql` as exactly one SELECT in DuckDB's dialect, or refuse it."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as error:
        detail = str(error).splitlines()[0][:200]
        raise QueryRefused("sql_syntax", detail=detail) from error
    if len(statements) != 1:
        raise QueryRefused("multiple_statements", count=len(statements))
    statement = statements[0]
    for refused, (construct, instead) in REFUSED_CONSTRUCTS.items():
        if isinstance(statement, refused):
            raise QueryRefused("disallowed_construct", construct=construct, instead=instead)
    if not isinstance(statement, exp.Select):
        raise QueryRefused("not_a_select", kind=statement.key.upper())
    return statement


def validate(sql: str, policy: ProtectionPolicy) -> ValidatedQuery:
    """Check `sql` against `policy` and return the statement to run in its place."""
    select = parse_one_select(sql)
    checker = _Checker(select, policy)
    checker.run()
    return _rewrite(select, checker, policy)


def _rewrite(select: exp.Select, checker: _Checker, policy: ProtectionPolicy) -> ValidatedQuery:
    limit = _literal_int(select.args.get("limit"), "LIMIT")
    offset = _literal_int(select.args.get("offset"), "OFFSET") or 0
    order = select.args.get("order")

    inner = select.copy()
    for key in ("order", "limit", "offset"):
        inner.set(key, None)

    items = list(inner.expressions)
    columns = [_output_name(item) for item in items]
    projections: list[exp.Expr] = [
        exp.alias_(item.this if isinstance(item, exp.Alias) else item, f"__c{i}", quoted=True)
        for i, item in enumerate(items)
    ]
    for i, ref in enumerate(checker.refs):
        unit = policy.tables[ref.table].privacy_unit
        projections.append(
            exp.alias_(
                exp.Count(this=exp.Distinct(expressions=[exp.column(unit, table=ref.alias, quoted=True)])),
                f"__k{i}",
                quoted=True,
            )
        )
    order_terms: list[exp.Ordered] = []
    if order is not None:
        for j, ordered in enumerate(order.expressions):
            key = ordered.this
            if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit():
                position = int(key.this)
                if not 1 <= position <= len(items):
                    raise QueryRefused(
                        "disallowed_construct",
                        construct=f"ORDER BY {position}",
                        instead=f"order by a position from 1 to {len(items)}.",
                    )
                target: exp.Expr = exp.column(f"__c{position - 1}", quoted=True)
            elif isinstance(key, exp.Column) and not key.table and key.name in checker.aliases:
                target = exp.column(f"__c{columns.index(key.name)}", quoted=True)
            else:
                projections.append(exp.alias_(key.copy(), f"__o{j}", quoted=True))
                target = exp.column(f"__o{j}", quoted=True)
            order_terms.append(
                exp.Ordered(this=target, desc=ordered.args.get("desc"), nulls_first=ordered.args.get("nulls_first"))
            )
    inner.set("expressions", projections)

    group = inner.args.get("group")
    if group is not None and not group.args.get("all"):
        # GROUP BY may name SELECT aliases; after the rewrite those are __c<i>, so resolve them.
        resolved = []
        for expression in group.expressions:
            if isinstance(expression, exp.Column) and not expression.table and expression.name in checker.aliases:
                resolved.append(checker.aliases[expression.name].copy())
            else:
                resolved.append(expression)
        group.set("expressions", resolved)
    having = inner.args.get("having")
    if having is not None:
        for column in list(having.find_all(exp.Column)):
            if not column.table and column.name in checker.aliases and checker.resolve(column) is None:
                column.replace(checker.aliases[column.name].copy())

    k = policy.min_group_size
    passes = exp.and_(*[exp.column(f"__k{i}", quoted=True) >= k for i in range(len(checker.refs))])
    outer = exp.select(
        *[exp.column(f"__c{i}", quoted=True) for i in range(len(items))],
        exp.alias_(passes, "__pass", quoted=True),
    ).from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("__q"))))
    if order_terms:
        outer = outer.order_by(*order_terms)
    return ValidatedQuery(
        sql=outer.sql(DIALECT, comments=False),
        columns=columns,
        tables=[ref.table for ref in checker.refs],
        referenced_columns=checker.referenced,
        limit=limit,
        offset=offset,
    )
