"""Checks one buyer SELECT against a protection policy: the first of two independent validators.

Parsing is sqlglot's, in DuckDB's dialect. The walk is an allowlist: every node must be of a kind
named here, in a context where it is allowed (a row-level expression, an aggregate's argument, or
an expression over aggregates). While walking, the checker rewrites the tree into its canonical
form: every column qualified by its table's alias and spelled as the policy spells it, casts of
data made TRY_CAST and row-level arithmetic wrapped in TRY(), so a row's value can never surface as
a run-time error. sandbox.rewrite then builds the statements that run, and sandbox.crosscheck has
DuckDB's own parser confirm them. Nothing the buyer wrote is executed as written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sandbox import rules
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy

DIALECT = "duckdb"
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its fallback-to-Command warnings are ours to report


class Context(Enum):
    ROW = "row"
    """Evaluated on every row before grouping: WHERE, JOIN ... ON, GROUP BY keys."""
    OUTPUT = "output"
    """SELECT, HAVING and ORDER BY: group keys, aggregates and expressions over them."""


@dataclass(frozen=True)
class TableRef:
    """One table instance in FROM/JOIN: the product table and the name it goes by in the query."""

    table: str
    alias: str


@dataclass
class CheckedQuery:
    """A query that passed the first validator, in canonical form, ready for sandbox.rewrite."""

    select: exp.Select
    refs: list[TableRef]
    columns: list[str]
    items: list[exp.Expr]
    """The SELECT items without their aliases, canonical."""
    aliases: dict[str, int]
    """SELECT alias (lower-case) -> position in items."""
    group_keys: list[exp.Expr]
    grouped: bool
    referenced_columns: dict[str, set[str]] = field(default_factory=dict)
    limit: int | None = None
    offset: int = 0


_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_STRUCTURAL = (
    exp.Paren,
    exp.Literal,
    exp.RawString,
    exp.Null,
    exp.Boolean,
    exp.Neg,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Interval,
    *_ARITHMETIC,
    *_COMPARISONS,
)
_SELECT_ARGS = frozenset(
    {"expressions", "from", "from_", "joins", "where", "group", "having", "order", "limit", "offset"}
)
_SUBQUERY_HINT = (
    "write one SELECT over the product's tables (joined if needed) with WHERE, GROUP BY and HAVING; "
    "subqueries and CTEs are refused because they could build groups the threshold does not see."
)
_REFUSED_NODES: dict[type[exp.Expr], tuple[str, str]] = {
    exp.Window: ("A window function (OVER ...)", "aggregate with GROUP BY instead."),
    exp.Subquery: ("A subquery", _SUBQUERY_HINT),
    exp.Select: ("A subquery", _SUBQUERY_HINT),
    exp.Exists: ("EXISTS (subquery)", _SUBQUERY_HINT),
    exp.With: ("A WITH clause (CTE)", _SUBQUERY_HINT),
    exp.Union: ("UNION", "run each SELECT as its own query."),
    exp.Intersect: ("INTERSECT", "run each SELECT as its own query."),
    exp.Except: ("EXCEPT", "run each SELECT as its own query."),
    exp.Rollup: ("ROLLUP", "GROUP BY the dimensions and run one query per grouping level."),
    exp.Cube: ("CUBE", "GROUP BY the dimensions and run one query per grouping level."),
    exp.GroupingSets: ("GROUPING SETS", "GROUP BY the dimensions and run one query per grouping level."),
    exp.Filter: ("An aggregate FILTER clause", "filter rows with WHERE, or GROUP BY the dimension."),
    exp.TableSample: ("TABLESAMPLE / USING SAMPLE", "query the whole table and filter with WHERE."),
    exp.Placeholder: ("A query parameter", "write the value in the SQL."),
    exp.Parameter: ("A query parameter", "write the value in the SQL."),
    exp.Qualify: ("QUALIFY", "filter groups with HAVING."),
    exp.Lateral: ("LATERAL", "join the product's tables directly."),
    exp.Unnest: ("UNNEST", "query the product's tables only."),
    exp.Pivot: ("PIVOT", "GROUP BY the dimension instead."),
    exp.Lambda: ("A lambda", "use the allowed scalar functions."),
    exp.Collate: ("COLLATE", "compare with lower() or upper() instead."),
    exp.Star: ("*", "name dimensions and aggregate measures; * is allowed only in count(*)."),
}


def _refuse_construct(construct: str, instead: str) -> QueryRefused:
    return QueryRefused("disallowed_construct", construct=construct, instead=instead)


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return str(node.sql_name()).lower()
    return str(node.key).lower()


def _is_aggregate_like(node: exp.Expr) -> bool:
    return isinstance(node, exp.AggFunc) or (
        isinstance(node, exp.Func) and _function_name(node) in rules.ROW_REVEALING_AGGREGATES
    )


def _contains_column(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) or node.find(exp.Column) is not None


def _literal_int(node: exp.Expr | None, clause: str) -> int | None:
    if node is None:
        return None
    if isinstance(node, exp.Limit):
        options = node.args.get("limit_options")
        if node.args.get("expressions") or (
            options is not None and (options.args.get("percent") or options.args.get("with_ties"))
        ):
            raise _refuse_construct(f"That {clause} form", f"write {clause} n with a whole number of groups.")
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        number = int(value.this)
        if number > rules.MAX_LIMIT:
            raise _refuse_construct(f"{clause} {number}", f"use a {clause} of at most {rules.MAX_LIMIT}.")
        return number
    raise _refuse_construct(f"A non-literal {clause}", f"write {clause} as a whole number.")


def parse_one_select(sql: str) -> exp.Select:
    """Parse `sql` as exactly one SELECT in DuckDB's dialect, or refuse it."""
    if len(sql) > rules.MAX_SQL_CHARS:
        raise QueryRefused("sql_too_long", length=len(sql), limit=rules.MAX_SQL_CHARS)
    depth = deepest = 0
    for char in sql:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > rules.MAX_NESTING:
        raise QueryRefused("sql_too_complex", depth=deepest, limit=rules.MAX_NESTING)
    if "\x00" in sql:
        raise QueryRefused("sql_syntax", detail="the text contains a NUL character")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as error:
        detail = str(error).splitlines()[0][:200]
        raise QueryRefused("sql_syntax", detail=detail) from error
    if len(statements) != 1:
        raise QueryRefused("multiple_statements", count=len(statements))
    statement = statements[0]
    for refused, (construct, instead) in _REFUSED_NODES.items():
        if isinstance(statement, refused) and refused is not exp.Select:
            raise _refuse_construct(construct, instead)
    if not isinstance(statement, exp.Select):
        kind = statement.key.upper() if not isinstance(statement, exp.Command) else str(statement.this).upper()
        raise QueryRefused("not_a_select", kind=kind)
    deepest = 0
    stack: list[tuple[exp.Expr, int]] = [(statement, 1)]
    while stack:
        node, depth = stack.pop()
        node.comments = None  # comments never reach the statements that run
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter_expressions())
    if deepest > rules.MAX_TREE_DEPTH:
        raise QueryRefused("sql_too_complex", depth=deepest, limit=rules.MAX_TREE_DEPTH)
    return statement


class _Checker:
    """Walks one SELECT, refusing what the policy does not allow and canonicalising what it does."""

    def __init__(self, select: exp.Select, policy: ProtectionPolicy) -> None:
        self.select = select
        self.policy = policy
        self.refs: list[TableRef] = []
        self.by_alias: dict[str, TableRef] = {}
        self.aliases: dict[str, int] = {}
        self.referenced: dict[str, set[str]] = {}
        self._tables_ci = {name.lower(): name for name in policy.tables}
        self._columns_ci = {
            table: {c.lower(): c for c in [tp.privacy_unit, *tp.dimensions, *tp.measures, *tp.hidden]}
            for table, tp in policy.tables.items()
        }

    # -- tables ---------------------------------------------------------------------------------
    def _table_list(self) -> str:
        return ", ".join(sorted(self.policy.tables))

    def collect_tables(self) -> None:
        from_ = self.select.args.get("from_") or self.select.args.get("from")
        if from_ is None:
            raise QueryRefused("not_aggregated")
        joins = self.select.args.get("joins") or []
        for join in joins:
            self._check_join_shape(join)
        for source in [from_.this] + [join.this for join in joins]:
            self._add_table(source)

    def _check_join_shape(self, join: exp.Join) -> None:
        if join.args.get("using"):
            raise _refuse_construct("JOIN ... USING", "write the join condition with ON a.x = b.x.")
        method = str(join.args.get("method") or "").upper()
        kind = str(join.args.get("kind") or "").upper()
        if method or kind not in ("", "INNER", "OUTER", "CROSS"):
            construct = f"{method or kind} JOIN"
            raise _refuse_construct(construct, "use JOIN, LEFT JOIN, RIGHT JOIN, FULL JOIN or CROSS JOIN.")
        extra = {k for k, v in join.args.items() if v and k not in ("this", "on", "side", "kind")}
        if extra:
            raise _refuse_construct(f"The join option {sorted(extra)[0].upper()}", "use a plain JOIN ... ON.")

    def _add_table(self, source: exp.Expr) -> None:
        if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
            if isinstance(source, exp.Subquery):
                raise _refuse_construct("A subquery in FROM", _SUBQUERY_HINT)
            inner = source.this if isinstance(source, exp.Table) else source
            construct = f"Reading from {_function_name(inner)}()" if isinstance(inner, exp.Func) else "That FROM item"
            raise _refuse_construct(construct, f"query the product's tables: {self._table_list()}.")
        if source.args.get("db") or source.args.get("catalog"):
            raise QueryRefused("unknown_table", table=source.sql(DIALECT), tables=self._table_list())
        extra = {k for k, v in source.args.items() if v and k not in ("this", "alias")}
        if extra:
            raise _refuse_construct(f"The table option {sorted(extra)[0].upper()}", "name the table and an alias only.")
        name = self._tables_ci.get(source.name.lower())
        if name is None:
            raise QueryRefused("unknown_table", table=source.name, tables=self._table_list())
        alias_node = source.args.get("alias")
        if alias_node is not None and alias_node.args.get("columns"):
            raise _refuse_construct("Renaming a table's columns in its alias", "use the columns' own names.")
        alias = (source.alias or name).lower()
        if alias.startswith(rules.RESERVED_PREFIX):
            raise QueryRefused("reserved_name", name=alias)
        if any(ref.table == name for ref in self.refs):
            raise _refuse_construct(
                f"Using table '{name}' twice", "join each table at most once; a self-join can inflate rows."
            )
        if alias in self.by_alias:
            raise _refuse_construct(f"Using the name '{alias}' twice", "give each table in the query its own alias.")
        ref = TableRef(table=name, alias=alias)
        self.refs.append(ref)
        self.by_alias[alias] = ref
        source.set("this", exp.to_identifier(name, quoted=True))
        source.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))

    # -- columns --------------------------------------------------------------------------------
    def _usable_columns(self) -> str:
        usable: list[str] = []
        for ref in self.refs:
            table_policy = self.policy.tables[ref.table]
            usable += [f"{c} (dimension)" for c in table_policy.dimensions]
            usable += [f"{c} (measure)" for c in table_policy.measures]
        return ", ".join(usable) or "none"

    def resolve(self, column: exp.Column) -> tuple[TableRef, str, str]:
        """The table instance, canonical name and role of a column; refuses unknown or ambiguous ones."""
        if column.args.get("db") or column.args.get("catalog"):
            raise QueryRefused("unknown_column", column=column.sql(DIALECT), columns=self._usable_columns())
        name = column.name.lower()
        qualifier = column.table.lower()
        if qualifier:
            ref = self.by_alias.get(qualifier)
            if ref is None:
                raise QueryRefused("unknown_table", table=column.table, tables=self._table_list())
            candidates = [ref]
        else:
            candidates = [ref for ref in self.refs if name in self._columns_ci[ref.table]]
        if not candidates or name not in self._columns_ci[candidates[0].table]:
            raise QueryRefused("unknown_column", column=column.name, columns=self._usable_columns())
        if len(candidates) > 1:
            raise _refuse_construct(
                f"The unqualified column '{column.name}', present in several tables,",
                f"qualify it, e.g. {candidates[0].alias}.{column.name}.",
            )
        ref = candidates[0]
        canonical = self._columns_ci[ref.table][name]
        role = self.policy.tables[ref.table].role_of(canonical) or "hidden"
        return ref, canonical, role

    def _qualify(self, column: exp.Column, ref: TableRef, canonical: str) -> None:
        column.set("this", exp.to_identifier(canonical, quoted=True))
        column.set("table", exp.to_identifier(ref.alias, quoted=True))
        self.referenced.setdefault(ref.table, set()).add(canonical)

    def _shadowed(self, column: exp.Column) -> bool:
        """An unqualified name that is both a SELECT alias of something else and a column."""
        lowered = column.name.lower()
        if column.table or lowered not in self.aliases:
            return False
        item = self.select.expressions[self.aliases[lowered]]
        target = item.this if isinstance(item, exp.Alias) else item
        return not (isinstance(target, exp.Column) and target.name.lower() == lowered)

    def _is_alias_reference(self, column: exp.Column) -> bool:
        if column.table or column.name.lower() not in self.aliases:
            return False
        return not any(column.name.lower() in self._columns_ci[ref.table] for ref in self.refs)

    # -- expressions ----------------------------------------------------------------------------
    def check(self, node: exp.Expr, ctx: Context, *, clause: str, aliases_ok: bool = False) -> exp.Expr:
        """Check `node` in `ctx`; returns the canonical node (it may replace `node`)."""
        for refused, (construct, instead) in _REFUSED_NODES.items():
            if isinstance(node, refused):
                if isinstance(node, exp.Star):
                    raise QueryRefused("star_not_allowed")
                raise _refuse_construct(construct, instead)
        if isinstance(node, exp.Column):
            return self._check_column(node, ctx, clause=clause, aliases_ok=aliases_ok)
        if _is_aggregate_like(node):
            if ctx is not Context.OUTPUT:
                raise _refuse_construct(f"An aggregate in {clause}", "filter groups with HAVING; group by dimensions.")
            return self.check_aggregate(node)
        if isinstance(node, exp.Var):
            if not isinstance(node.parent, (exp.Interval, exp.Extract, exp.DateTrunc, exp.TimestampTrunc)):
                raise _refuse_construct(f"The bare word {node.name}", "quote strings with single quotes.")
            return node
        if isinstance(node, exp.DataType):
            return node
        if isinstance(node, (exp.Cast, exp.TryCast)):
            self._check_cast_type(node)
        elif isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                raise _refuse_construct("IN (subquery)", _SUBQUERY_HINT)
        elif isinstance(node, (exp.Like, exp.ILike)) and node.args.get("escape"):
            raise _refuse_construct("LIKE ... ESCAPE", "use LIKE without ESCAPE.")
        elif isinstance(node, exp.Tuple):
            if not isinstance(node.parent, exp.In):
                raise _refuse_construct("A row value (a, b)", "compare columns one at a time.")
        elif not isinstance(node, (*_STRUCTURAL, *rules.SCALAR_CLASSES)):
            if isinstance(node, exp.Func):
                raise QueryRefused(
                    "disallowed_function", function=_function_name(node), allowed=rules.SCALAR_ALLOWED_TEXT
                )
            raise _refuse_construct(
                f"The construct {node.key.upper()}",
                "use columns, literals, arithmetic, comparisons and the allowed functions.",
            )
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expr):
                node.set(key, self.check(value, ctx, clause=clause, aliases_ok=aliases_ok))
            elif isinstance(value, list):
                node.set(
                    key,
                    [
                        self.check(v, ctx, clause=clause, aliases_ok=aliases_ok) if isinstance(v, exp.Expr) else v
                        for v in value
                    ],
                )
        if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and _contains_column(node.this):
            # A failing cast would quote a row's value in its error: it yields NULL instead.
            return exp.TryCast(this=node.this, to=node.args["to"])
        return node

    def _check_column(self, column: exp.Column, ctx: Context, *, clause: str, aliases_ok: bool) -> exp.Expr:
        if isinstance(column.this, exp.Star):
            raise QueryRefused("star_not_allowed")
        if column.name.startswith(rules.RESERVED_PREFIX):
            raise QueryRefused("reserved_name", name=column.name)
        if aliases_ok and self._is_alias_reference(column):
            return column
        if (aliases_ok or clause == "GROUP BY") and self._shadowed(column):
            # SQL resolves such a name differently in GROUP BY and ORDER BY; refuse rather than guess.
            raise QueryRefused("alias_shadows_column", alias=column.name)
        ref, canonical, role = self.resolve(column)
        if role == "measure":
            raise QueryRefused("measure_outside_aggregate", column=canonical)
        if role != "dimension":
            raise QueryRefused("protected_column", column=canonical, exception=self._unit_exception(role, canonical))
        self._qualify(column, ref, canonical)
        return column

    def _unit_exception(self, role: str, name: str) -> str:
        if role == "privacy_unit" and self.policy.allow_count_distinct_unit:
            return f"; the only allowed use is count(DISTINCT {name})"
        return ""

    def _check_cast_type(self, node: exp.Expr) -> None:
        to = node.args.get("to")
        if not isinstance(to, exp.DataType) or to.this not in rules.CAST_TYPES:
            target = to.sql(DIALECT) if isinstance(to, exp.Expr) else "?"
            raise _refuse_construct(
                f"A cast to {target}",
                "cast to BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL(p<=18), VARCHAR, DATE, TIMESTAMP.",
            )
        if to.this == exp.DataType.Type.DECIMAL:
            params = to.expressions
            precision = params[0].this if params else None
            if not isinstance(precision, exp.Literal) or int(precision.this) > rules.MAX_DECIMAL_PRECISION:
                raise _refuse_construct(
                    f"A cast to {to.sql(DIALECT)}", f"use DECIMAL(p, s) with p at most {rules.MAX_DECIMAL_PRECISION}."
                )

    # -- aggregates -----------------------------------------------------------------------------
    def check_aggregate(self, node: exp.Expr) -> exp.Expr:
        name = rules.AGGREGATE_CLASSES.get(type(node))
        function = _function_name(node)
        if name is None:
            if isinstance(node, exp.AggFunc) or function in rules.ROW_REVEALING_AGGREGATES:
                raise QueryRefused(
                    "disallowed_aggregate", function=function, allowed=", ".join(self.policy.allowed_aggregates)
                )
            raise QueryRefused("disallowed_function", function=function, allowed=rules.SCALAR_ALLOWED_TEXT)
        if name not in self.policy.allowed_aggregates:
            raise QueryRefused(
                "disallowed_aggregate", function=function, allowed=", ".join(self.policy.allowed_aggregates)
            )
        extra = {k for k, v in node.args.items() if v and k not in ("this", "big_int")}
        if isinstance(node, exp.Count) and node.expressions:
            extra.add("expressions")
        if extra:
            raise _refuse_construct(f"Extra arguments to {function}()", f"call {function}() with one argument.")
        argument = node.this
        if isinstance(node, exp.Count):
            node.set("this", self._check_count_argument(argument))
            return node
        if isinstance(argument, exp.Distinct):
            raise _refuse_construct(f"DISTINCT inside {function}()", f"use {function}(column); DISTINCT is for count.")
        if argument is None:
            raise _refuse_construct(f"{function}() without an argument", f"aggregate a measure: {function}(column).")
        seen: set[tuple[str, str]] = set()
        checked = self._check_linear(argument, function, seen)
        if not seen:
            raise _refuse_construct(
                f"{function}() of a constant", f"aggregate a measure, e.g. {function}(<measure column>)."
            )
        if not isinstance(checked, exp.Column):
            checked = exp.Try(this=checked)
        node.set("this", checked)
        return node

    def _check_count_argument(self, argument: exp.Expr | None) -> exp.Expr:
        if argument is None or isinstance(argument, exp.Star):
            return exp.Star()
        distinct = isinstance(argument, exp.Distinct)
        target = argument
        if distinct:
            assert isinstance(argument, exp.Distinct)
            if len(argument.expressions) != 1:
                raise _refuse_construct("count(DISTINCT of several columns)", "count distinct one column at a time.")
            target = argument.expressions[0]
        if not isinstance(target, exp.Column) or isinstance(target.this, exp.Star):
            raise _refuse_construct(
                "count() of an expression", "count(*), count(column) or count(DISTINCT column) of one column."
            )
        if target.name.startswith(rules.RESERVED_PREFIX):
            raise QueryRefused("reserved_name", name=target.name)
        ref, canonical, role = self.resolve(target)
        if role == "privacy_unit":
            if not (distinct and self.policy.allow_count_distinct_unit):
                raise QueryRefused(
                    "protected_column", column=canonical, exception=self._unit_exception(role, canonical)
                )
        elif role not in ("dimension", "measure"):
            raise QueryRefused("protected_column", column=canonical, exception="")
        self._qualify(target, ref, canonical)
        return exp.Distinct(expressions=[target]) if distinct else target

    def _check_linear(self, node: exp.Expr, function: str, seen: set[tuple[str, str]]) -> exp.Expr:
        """An aggregate's argument: measures (each at most once), numbers, + - * / and numeric casts.

        Each measure appearing once keeps the aggregate to first and, through the variance family,
        second moments. Anything else inside an aggregate (CASE, comparisons, dimensions, pow, ln,
        abs...) can target single rows or compute higher moments that reconstruct a group's values.
        """
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                raise QueryRefused("star_not_allowed")
            if node.name.startswith(rules.RESERVED_PREFIX):
                raise QueryRefused("reserved_name", name=node.name)
            ref, canonical, role = self.resolve(node)
            if role == "dimension":
                raise QueryRefused("targeted_aggregate", construct=f"The dimension '{canonical}'", function=function)
            if role != "measure":
                raise QueryRefused(
                    "protected_column", column=canonical, exception=self._unit_exception(role, canonical)
                )
            if (ref.alias, canonical) in seen:
                raise QueryRefused("nonlinear_aggregate", column=canonical, function=function)
            seen.add((ref.alias, canonical))
            self._qualify(node, ref, canonical)
            return node
        if isinstance(node, exp.Literal):
            if node.is_string:
                raise _refuse_construct(f"A string inside {function}()", f"aggregate a measure: {function}(column).")
            return node
        if isinstance(node, (exp.Paren, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div)):
            for key, value in list(node.args.items()):
                if isinstance(value, exp.Expr):
                    node.set(key, self._check_linear(value, function, seen))
            return node
        if isinstance(node, (exp.Cast, exp.TryCast)):
            self._check_cast_type(node)
            to = node.args["to"]
            if to.this not in rules.NUMERIC_CAST_TYPES:
                raise _refuse_construct(f"A cast to {to.sql(DIALECT)} inside {function}()", "cast to a numeric type.")
            inner = self._check_linear(node.this, function, seen)
            return exp.TryCast(this=inner, to=to)
        if _is_aggregate_like(node):
            raise _refuse_construct("An aggregate inside another aggregate", "aggregate once per group.")
        for refused, (construct, instead) in _REFUSED_NODES.items():
            if isinstance(node, refused):
                raise _refuse_construct(construct, instead)
        construct = f"The function {_function_name(node)}()" if isinstance(node, exp.Func) else node.key.upper()
        raise QueryRefused("targeted_aggregate", construct=construct, function=function)

    def refuse_aggregates_not_allowed(self) -> None:
        """Name a refused aggregate as such wherever it sits (inside IGNORE NULLS, a subquery...)."""
        for node in self.select.walk():
            if not _is_aggregate_like(node):
                continue
            name = rules.AGGREGATE_CLASSES.get(type(node))
            refused = isinstance(node, exp.AggFunc) or _function_name(node) in rules.ROW_REVEALING_AGGREGATES
            if (name is None or name not in self.policy.allowed_aggregates) and refused:
                raise QueryRefused(
                    "disallowed_aggregate",
                    function=_function_name(node),
                    allowed=", ".join(self.policy.allowed_aggregates),
                )

    # -- clauses --------------------------------------------------------------------------------
    def run(self) -> CheckedQuery:
        select = self.select
        extra = {k for k, v in select.args.items() if v and k not in _SELECT_ARGS}
        if extra:
            key = sorted(extra)[0]
            if key in ("with", "with_"):
                raise _refuse_construct("A WITH clause (CTE)", _SUBQUERY_HINT)
            if key == "distinct":
                raise _refuse_construct("SELECT DISTINCT", "GROUP BY the columns instead.")
            for refused, (construct, instead) in _REFUSED_NODES.items():
                if isinstance(select.args[key], refused):
                    raise _refuse_construct(construct, instead)
            raise _refuse_construct(
                f"The clause {key.upper()}", "use SELECT, FROM, JOIN, WHERE, GROUP BY, HAVING, ORDER BY, LIMIT."
            )
        self.refuse_aggregates_not_allowed()
        self.collect_tables()
        if select.args.get("group") is None and not any(
            _is_aggregate_like(n) for item in select.expressions for n in item.walk()
        ):
            raise QueryRefused("not_aggregated")

        items: list[exp.Expr] = []
        columns: list[str] = []
        for position, item in enumerate(select.expressions):
            if isinstance(item, exp.Alias):
                alias = item.alias
                if not alias or alias.startswith(rules.RESERVED_PREFIX):
                    raise QueryRefused("reserved_name", name=alias or "(empty)")
                lowered = alias.lower()
                if lowered in self.aliases:
                    raise _refuse_construct(f"The alias '{alias}' used twice", "give each output column its own name.")
                self.aliases[lowered] = position
                columns.append(alias)
                items.append(item.this)
            else:
                columns.append(
                    item.name if isinstance(item, exp.Column) else item.sql(DIALECT, normalize_functions="lower")
                )
                items.append(item)
        items = [self.check(item, Context.OUTPUT, clause="SELECT") for item in items]

        where = select.args.get("where")
        if where is not None:
            where.set("this", guard(self.check(where.this, Context.ROW, clause="WHERE")))
        for join in select.args.get("joins") or []:
            on = join.args.get("on")
            if on is not None:
                join.set("on", guard(self.check(on, Context.ROW, clause="JOIN ... ON")))

        group = select.args.get("group")
        grouped = group is not None
        keys: list[exp.Expr] = []
        if group is not None:
            for key in ("grouping_sets", "cube", "rollup", "totals"):
                if group.args.get(key):
                    raise _refuse_construct(
                        key.upper().replace("_", " "), "GROUP BY the dimensions and run one query per level."
                    )
            if group.args.get("all"):
                keys = [item for item in items if not any(_is_aggregate_like(n) for n in item.walk())]
            for expression in group.expressions:
                keys.append(self._group_key(expression, items))
        has_aggregate = any(_is_aggregate_like(n) for item in items for n in item.walk())
        if not grouped and not has_aggregate:
            raise QueryRefused("not_aggregated")

        having = select.args.get("having")
        if having is not None:
            having.set("this", self.check(having.this, Context.OUTPUT, clause="HAVING", aliases_ok=True))
        order = select.args.get("order")
        if order is not None:
            for ordered in order.expressions:
                if not isinstance(ordered, exp.Ordered):
                    raise _refuse_construct("That ORDER BY item", "order by output columns or positions.")
                extra_order = {k for k, v in ordered.args.items() if v and k not in ("this", "desc", "nulls_first")}
                if extra_order:
                    raise _refuse_construct("ORDER BY ... WITH FILL", "use ORDER BY column [ASC|DESC].")
                target = ordered.this
                if not (isinstance(target, exp.Literal) and not target.is_string):
                    ordered.set("this", self.check(target, Context.OUTPUT, clause="ORDER BY", aliases_ok=True))
        limit = _literal_int(select.args.get("limit"), "LIMIT")
        offset = _literal_int(select.args.get("offset"), "OFFSET") or 0
        limit_node = select.args.get("limit")
        if limit_node is not None and limit_node.args.get("offset"):
            offset = _literal_int(limit_node.args["offset"], "OFFSET") or 0
        return CheckedQuery(
            select=select,
            refs=self.refs,
            columns=columns,
            items=items,
            aliases=self.aliases,
            group_keys=keys,
            grouped=grouped,
            referenced_columns=self.referenced,
            limit=limit,
            offset=offset,
        )

    def _group_key(self, expression: exp.Expr, items: list[exp.Expr]) -> exp.Expr:
        if isinstance(expression, exp.Literal) and not expression.is_string and expression.this.isdigit():
            position = int(expression.this)
            if not 1 <= position <= len(items):
                raise _refuse_construct(f"GROUP BY {position}", f"group by a position from 1 to {len(items)}.")
            key = items[position - 1]
        elif isinstance(expression, exp.Column) and self._is_alias_reference(expression):
            key = items[self.aliases[expression.name.lower()]]
        else:
            key = self.check(expression, Context.ROW, clause="GROUP BY")
        if any(_is_aggregate_like(n) for n in key.walk()):
            raise _refuse_construct("An aggregate in GROUP BY", "group by dimensions.")
        return key


def check(sql: str, policy: ProtectionPolicy) -> CheckedQuery:
    """Parse and check `sql` against `policy` with sqlglot; returns the canonical query."""
    try:
        select = parse_one_select(sql)
        return _Checker(select, policy).run()
    except RecursionError as error:  # a backstop: MAX_NESTING keeps real queries far from it
        raise QueryRefused("sql_too_complex", depth="too many", limit=rules.MAX_NESTING) from error


_NEVER_RAISE: tuple[type[exp.Expr], ...] = (
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Quarter,
    exp.DayOfWeek,
    exp.Extract,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Trim,
    exp.Concat,
    exp.DPipe,
    exp.Replace,
    exp.Left,
    exp.Right,
    exp.Coalesce,
    exp.Nullif,
    exp.Sqrt,
    exp.Ln,
    exp.Log,
    exp.Pow,
)
"""Functions DuckDB evaluates without raising for any input value (NULL, NaN or infinity instead);
their arguments are still guarded. Checked against DuckDB's edge values (infinite dates, extreme
integers); date_trunc, round, substring, abs and arithmetic can raise and stay in TRY()."""


def guard(node: exp.Expr) -> exp.Expr:
    """Wrap row-level arithmetic and functions over data in TRY(), so no row's value can raise an error.

    Comparisons, CASE and TRY_CAST cannot fail on data and stay bare, so DuckDB can still push
    filters down into the Parquet scan.
    """
    if isinstance(node, (*_ARITHMETIC, *rules.SCALAR_CLASSES)) and not isinstance(
        node, (exp.Case, exp.If, exp.TryCast, *_NEVER_RAISE)
    ):
        return exp.Try(this=node) if _contains_column(node) else node
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            node.set(key, guard(value))
        elif isinstance(value, list):
            node.set(key, [guard(v) if isinstance(v, exp.Expr) else v for v in value])
    return node
