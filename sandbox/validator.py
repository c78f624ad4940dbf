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

from dataclasses import dataclass, field
from enum import Enum

from sqlglot import exp

from market.i18n import Msg
from sandbox import cost, rules
from sandbox.algebra import Argument
from sandbox.errors import QueryRefused
from sandbox.policy import MeasureBounds, ProtectionPolicy
from sandbox.syntax import (
    DIALECT,
    REFUSED_NODES,
    SELECT_ARGS,
    SUBQUERY_HINT,
    contains_column,
    function_name,
    guard,
    is_aggregate_like,
    is_allowed_type,
    is_refused_type,
    literal_int,
    output_name,
    parse_one_select,
    refuse_construct,
)

__all__ = ["DIALECT", "CheckedQuery", "Context", "TableRef", "check", "guard", "parse_one_select"]


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
            raise refuse_construct("JOIN ... USING", "write the join condition with ON a.x = b.x.")
        method = str(join.args.get("method") or "").upper()
        kind = str(join.args.get("kind") or "").upper()
        if method or kind not in ("", "INNER", "OUTER", "CROSS"):
            construct = f"{method or kind} JOIN"
            raise refuse_construct(construct, "use JOIN, LEFT JOIN, RIGHT JOIN, FULL JOIN or CROSS JOIN.")
        extra = {k for k, v in join.args.items() if v and k not in ("this", "on", "side", "kind")}
        if extra:
            raise refuse_construct(f"The join option {sorted(extra)[0].upper()}", "use a plain JOIN ... ON.")

    def _add_table(self, source: exp.Expr) -> None:
        if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
            if isinstance(source, exp.Subquery):
                raise refuse_construct("A subquery in FROM", SUBQUERY_HINT)
            inner = source.this if isinstance(source, exp.Table) else source
            construct = f"Reading from {function_name(inner)}()" if isinstance(inner, exp.Func) else "That FROM item"
            raise refuse_construct(construct, f"query the product's tables: {self._table_list()}.")
        if source.args.get("db") or source.args.get("catalog"):
            raise QueryRefused("unknown_table", table=source.sql(DIALECT), tables=self._table_list())
        extra = {k for k, v in source.args.items() if v and k not in ("this", "alias")}
        if extra:
            raise refuse_construct(f"The table option {sorted(extra)[0].upper()}", "name the table and an alias only.")
        name = self._tables_ci.get(source.name.lower())
        if name is None:
            raise QueryRefused("unknown_table", table=source.name, tables=self._table_list())
        alias_node = source.args.get("alias")
        if alias_node is not None and alias_node.args.get("columns"):
            raise refuse_construct("Renaming a table's columns in its alias", "use the columns' own names.")
        alias = (source.alias or name).lower()
        if alias.startswith(rules.RESERVED_PREFIX):
            raise QueryRefused("reserved_name", name=alias)
        if any(ref.table == name for ref in self.refs):
            raise refuse_construct(
                f"Using table '{name}' twice", "join each table at most once; a self-join can inflate rows."
            )
        if alias in self.by_alias:
            raise refuse_construct(f"Using the name '{alias}' twice", "give each table in the query its own alias.")
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
            raise refuse_construct(
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
        if not _plain_kind(node):  # a comparison, AND, OR, arithmetic, a literal...: only its children to check
            if is_refused_type(node):
                if isinstance(node, exp.Star):
                    raise QueryRefused("star_not_allowed")
                for refused, (construct, instead) in REFUSED_NODES.items():
                    if isinstance(node, refused):
                        raise refuse_construct(construct, instead)
            if isinstance(node, exp.Column):
                return self._check_column(node, ctx, clause=clause, aliases_ok=aliases_ok)
            if is_aggregate_like(node):
                if ctx is not Context.OUTPUT:
                    raise refuse_construct(
                        f"An aggregate in {clause}", "filter groups with HAVING; group by dimensions."
                    )
                return self.check_aggregate(node)
            if isinstance(node, exp.Var):
                if not isinstance(node.parent, (exp.Interval, exp.Extract, exp.DateTrunc, exp.TimestampTrunc)):
                    raise refuse_construct(f"The bare word {node.name}", "quote strings with single quotes.")
                return node
            if isinstance(node, exp.DataType):
                return node
            if isinstance(node, (exp.Cast, exp.TryCast)):
                self._check_cast_type(node)
            elif isinstance(node, exp.In):
                if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                    raise refuse_construct("IN (subquery)", SUBQUERY_HINT)
            elif isinstance(node, (exp.Like, exp.ILike)) and node.args.get("escape"):
                raise refuse_construct("LIKE ... ESCAPE", "use LIKE without ESCAPE.")
            elif isinstance(node, exp.Tuple):
                if not isinstance(node.parent, exp.In):
                    raise refuse_construct("A row value (a, b)", "compare columns one at a time.")
            elif not is_allowed_type(node):
                if isinstance(node, exp.Func):
                    raise QueryRefused(
                        "disallowed_function", function=function_name(node), allowed=rules.SCALAR_ALLOWED_TEXT
                    )
                raise refuse_construct(
                    f"The construct {node.key.upper()}",
                    "use columns, literals, arithmetic, comparisons and the allowed functions.",
                )
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expr):
                checked = self.check(value, ctx, clause=clause, aliases_ok=aliases_ok)
                if checked is not value:
                    node.set(key, checked)
            elif isinstance(value, list):
                items = [
                    self.check(v, ctx, clause=clause, aliases_ok=aliases_ok) if isinstance(v, exp.Expr) else v
                    for v in value
                ]
                if any(new is not old for new, old in zip(items, value, strict=True)):
                    node.set(key, items)
        if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and _reads_data(node.this):
            # A failing cast would quote a row's value in its error: it yields NULL instead. An aggregate reads
            # data even with no column in it (count(*)): in stage 2 it is the groups table's column.
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
            raise refuse_construct(
                f"A cast to {target}",
                "cast to BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL(p<=18), VARCHAR, DATE, TIMESTAMP.",
            )
        if to.this == exp.DataType.Type.DECIMAL:
            params = to.expressions
            precision = params[0].this if params else None
            if not isinstance(precision, exp.Literal) or int(precision.this) > rules.MAX_DECIMAL_PRECISION:
                raise refuse_construct(
                    f"A cast to {to.sql(DIALECT)}", f"use DECIMAL(p, s) with p at most {rules.MAX_DECIMAL_PRECISION}."
                )

    # -- aggregates -----------------------------------------------------------------------------
    def check_aggregate(self, node: exp.Expr) -> exp.Expr:
        name = rules.AGGREGATE_CLASSES.get(type(node))
        function = function_name(node)
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
            raise refuse_construct(f"Extra arguments to {function}()", f"call {function}() with one argument.")
        argument = node.this
        if isinstance(node, exp.Count):
            node.set("this", self._check_count_argument(argument))
            return node
        if isinstance(argument, exp.Distinct):
            raise refuse_construct(f"DISTINCT inside {function}()", f"use {function}(column); DISTINCT is for count.")
        if argument is None:
            raise refuse_construct(f"{function}() without an argument", f"aggregate a measure: {function}(column).")
        checked, _ = Argument(function, self._bounded_measure).check(argument)
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
                raise refuse_construct("count(DISTINCT of several columns)", "count distinct one column at a time.")
            target = argument.expressions[0]
        if not isinstance(target, exp.Column) or isinstance(target.this, exp.Star):
            raise refuse_construct(
                "count() of an expression", "count(*), count(column) or count(DISTINCT column) of one column."
            )
        if target.name.startswith(rules.RESERVED_PREFIX):
            raise QueryRefused("reserved_name", name=target.name)
        ref, canonical, role = self.resolve(target)
        if distinct and role in ("dimension", "measure"):
            # count(DISTINCT d) counts values that fewer than k units may hold: over `dest IN ('LEX', 'ATL')`
            # it answered 2 or 1 as the one LEX flight existed or not (red team, issue 9), the fact the old
            # suppressed-groups count leaked. The groups of GROUP BY d each cover k units.
            raise refuse_construct(
                f"count(DISTINCT {canonical}) (it counts values fewer than k units may hold)",
                f"GROUP BY {canonical} and count the groups: each group returned covers at least k units.",
            )
        if role == "privacy_unit":
            if not (distinct and self.policy.allow_count_distinct_unit):
                raise QueryRefused(
                    "protected_column", column=canonical, exception=self._unit_exception(role, canonical)
                )
        elif role not in ("dimension", "measure"):
            raise QueryRefused("protected_column", column=canonical, exception="")
        self._qualify(target, ref, canonical)
        return exp.Distinct(expressions=[target]) if distinct else target

    def _bounded_measure(self, node: exp.Column, function: str) -> tuple[object, MeasureBounds]:
        """A column inside sum/avg/variance: a measure with declared bounds, qualified; its identity and bounds."""
        if isinstance(node.this, exp.Star):
            raise QueryRefused("star_not_allowed")
        if node.name.startswith(rules.RESERVED_PREFIX):
            raise QueryRefused("reserved_name", name=node.name)
        ref, canonical, role = self.resolve(node)
        if role == "dimension":
            raise QueryRefused("targeted_aggregate", construct=f"The dimension '{canonical}'", function=function)
        if role != "measure":
            raise QueryRefused("protected_column", column=canonical, exception=self._unit_exception(role, canonical))
        bounds = self.policy.tables[ref.table].bounds.get(canonical)
        if bounds is None:
            raise QueryRefused("unbounded_measure", column=canonical, function=function)
        self._qualify(node, ref, canonical)
        return (ref.alias, canonical), bounds

    def refuse_aggregates_not_allowed(self) -> None:
        """Name a refused aggregate as such wherever it sits (inside IGNORE NULLS, a subquery...)."""
        for node in self.select.walk():
            if not is_aggregate_like(node):
                continue
            name = rules.AGGREGATE_CLASSES.get(type(node))
            refused = isinstance(node, exp.AggFunc) or function_name(node) in rules.ROW_REVEALING_AGGREGATES
            if (name is None or name not in self.policy.allowed_aggregates) and refused:
                raise QueryRefused(
                    "disallowed_aggregate",
                    function=function_name(node),
                    allowed=", ".join(self.policy.allowed_aggregates),
                )

    # -- clauses --------------------------------------------------------------------------------
    def run(self) -> CheckedQuery:
        select = self.select
        extra = {k for k, v in select.args.items() if v and k not in SELECT_ARGS}
        if extra:
            key = sorted(extra)[0]
            if key in ("with", "with_"):
                raise refuse_construct("A WITH clause (CTE)", SUBQUERY_HINT)
            if key == "distinct":
                raise refuse_construct("SELECT DISTINCT", "GROUP BY the columns instead.")
            for refused, (construct, instead) in REFUSED_NODES.items():
                if isinstance(select.args[key], refused):
                    raise refuse_construct(construct, instead)
            raise refuse_construct(
                f"The clause {key.upper()}", "use SELECT, FROM, JOIN, WHERE, GROUP BY, HAVING, ORDER BY, LIMIT."
            )
        self.refuse_aggregates_not_allowed()
        self.collect_tables()
        if select.args.get("group") is None and not any(
            is_aggregate_like(n) for item in select.expressions for n in item.walk()
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
                    raise refuse_construct(f"The alias '{alias}' used twice", "give each output column its own name.")
                self.aliases[lowered] = position
                columns.append(alias)
                items.append(item.this)
            else:
                columns.append(item.name if isinstance(item, exp.Column) else output_name(item))
                items.append(item)
        items = [self.check(item, Context.OUTPUT, clause="SELECT") for item in items]

        where = select.args.get("where")
        if where is not None:
            where.set("this", guard(self.check(where.this, Context.ROW, clause="WHERE")))
        for join in select.args.get("joins") or []:
            on = join.args.get("on")
            if on is not None:
                join.set("on", guard(self.check(on, Context.ROW, clause="JOIN ... ON")))
        for clause in [where, *[join.args.get("on") for join in select.args.get("joins") or []]]:
            if clause is not None:
                for conjunct in _conjuncts(clause.this if isinstance(clause, exp.Where) else clause):
                    _check_join_key(conjunct)

        group = select.args.get("group")
        grouped = group is not None
        keys: list[exp.Expr] = []
        if group is not None:
            for key in ("grouping_sets", "cube", "rollup", "totals"):
                if group.args.get(key):
                    raise refuse_construct(
                        key.upper().replace("_", " "), "GROUP BY the dimensions and run one query per level."
                    )
            if group.args.get("all"):
                keys = [item for item in items if not any(is_aggregate_like(n) for n in item.walk())]
            for expression in group.expressions:
                keys.append(self._group_key(expression, items))
        has_aggregate = any(is_aggregate_like(n) for item in items for n in item.walk())
        if not grouped and not has_aggregate:
            raise QueryRefused("not_aggregated")

        having = select.args.get("having")
        if having is not None:
            having.set("this", self.check(having.this, Context.OUTPUT, clause="HAVING", aliases_ok=True))
        order = select.args.get("order")
        if order is not None:
            for ordered in order.expressions:
                if not isinstance(ordered, exp.Ordered):
                    raise refuse_construct("That ORDER BY item", "order by output columns or positions.")
                extra_order = {k for k, v in ordered.args.items() if v and k not in ("this", "desc", "nulls_first")}
                if extra_order:
                    raise refuse_construct("ORDER BY ... WITH FILL", "use ORDER BY column [ASC|DESC].")
                target = ordered.this
                if not (isinstance(target, exp.Literal) and not target.is_string):
                    ordered.set("this", self.check(target, Context.OUTPUT, clause="ORDER BY", aliases_ok=True))
        cost.check(select)
        if grouped:
            # The rows' order, and so what LIMIT and OFFSET keep, must follow the answer's values alone. Left to
            # DuckDB, groups come out in the order their first rows were read, which is the order of the
            # version's file (e.g. time): the group of the single earliest row came first, `arg_min` by another
            # name (red team sbx-red15). So every output column, by position, breaks the buyer's ties.
            terms = list(order.expressions) if order is not None else []
            terms += [exp.Ordered(this=exp.Literal.number(i + 1), desc=False) for i in range(len(items))]
            select.set("order", exp.Order(expressions=terms))
        limit = literal_int(select.args.get("limit"), "LIMIT")
        offset = literal_int(select.args.get("offset"), "OFFSET") or 0
        limit_node = select.args.get("limit")
        if limit_node is not None and limit_node.args.get("offset"):
            offset = literal_int(limit_node.args["offset"], "OFFSET") or 0
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
                raise refuse_construct(f"GROUP BY {position}", f"group by a position from 1 to {len(items)}.")
            key = items[position - 1]
        elif isinstance(expression, exp.Column) and self._is_alias_reference(expression):
            key = items[self.aliases[expression.name.lower()]]
        else:
            key = self.check(expression, Context.ROW, clause="GROUP BY")
        if any(is_aggregate_like(n) for n in key.walk()):
            raise refuse_construct("An aggregate in GROUP BY", "group by dimensions.")
        return key


_NOT_PLAIN = (exp.Column, exp.Var, exp.DataType, exp.Cast, exp.TryCast, exp.In, exp.Like, exp.ILike, exp.Tuple)
_PLAIN_KINDS: dict[type, bool] = {}


def _plain_kind(node: exp.Expr) -> bool:
    """Whether `check` does nothing to a node of this kind but check its children (branch val16): an allowed
    kind that is not refused, not an aggregate and none of the kinds it tests one by one (_NOT_PLAIN). Known
    per class (an anonymous function's answer depends on its name: never plain), so one dict lookup per node
    replaces the dozen tests of `check` (the OR chain's 720 nodes)."""
    kind = type(node)
    answer = _PLAIN_KINDS.get(kind)
    if answer is None:
        answer = (
            not isinstance(node, exp.Anonymous)
            and is_allowed_type(node)
            and not is_refused_type(node)
            and not is_aggregate_like(node)
            and not isinstance(node, _NOT_PLAIN)
        )
        if not isinstance(node, exp.Anonymous):
            _PLAIN_KINDS[kind] = answer
    return answer


JOIN_COMPARISONS: tuple[type[exp.Expr], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.LT,
    exp.LTE,
    exp.GT,
    exp.GTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
)
"""The comparisons a condition reading two tables may be: `a.x OP b.y`, both sides bare columns."""


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    """The top-level AND terms of `node`, parentheses removed."""
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _bare(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _check_join_key(conjunct: exp.Expr) -> None:
    """Refuse a condition (of a JOIN's ON, or of WHERE, which sandbox.rewrite.whole_sides moves into an ON)
    that reads two or more tables unless it is a comparison of two bare columns of different tables.

    The rows a table row meets in a join must depend only on the values the table holds, the same for
    every query, never on a condition the buyer writes into the key: `CASE WHEN f.dest = 'LEX' THEN
    f.origin ELSE 'none' END = w.origin` gave every flight but one a key no weather row has, and the hidden
    one thousands of matches (red9: 320 against 101 ms, and 408 against 200 under the query's budget).
    With bare columns, every row holding the same key value meets the same rows in every query, so one
    row's share of the join's work is its key's fan-out, whatever the buyer writes elsewhere. Conditions
    on one table stay allowed: whole_sides tests the root's after the joins and a joined table's inside
    its ON, on every candidate match."""
    tables = {column.table for column in conjunct.find_all(exp.Column)}
    if len(tables) < 2:
        return
    if isinstance(conjunct, JOIN_COMPARISONS):
        left, right = _bare(conjunct.this), _bare(conjunct.expression)
        if isinstance(left, exp.Column) and isinstance(right, exp.Column) and left.table != right.table:
            return
    raise QueryRefused(
        "disallowed_construct",
        construct=Msg("A condition on two tables other than a comparison of two columns"),
        instead=Msg(
            "join on columns as stored: one comparison of two columns per condition, joined with AND "
            "(a.x = b.y AND a.z <= b.w), and conditions on one table in WHERE; for a computed key (CASE, "
            "if, coalesce, year(), arithmetic, a cast) or an OR between tables, ask the seller for a column "
            "that holds the key."
        ),
    )


def check(sql: str, policy: ProtectionPolicy) -> CheckedQuery:
    """Parse and check `sql` against `policy` with sqlglot; returns the canonical query."""
    try:
        select = parse_one_select(sql)
        return _Checker(select, policy).run()
    except RecursionError as error:  # a backstop: MAX_NESTING keeps real queries far from it
        raise QueryRefused("sql_too_complex", depth="too many", limit=rules.MAX_NESTING) from error


def _reads_data(node: exp.Expr) -> bool:
    """Whether `node`'s value comes from the data: it mentions a column or holds an aggregate."""
    return contains_column(node) or any(is_aggregate_like(inner) for inner in node.walk())
