"""Turns a checked query into the statements that run: groups first, then the buyer's view of them.

Stage 1 (`Plan.template`) computes, per group, the group keys (`__g<i>`), every aggregate the query
uses (`__a<j>`), and, in place of a placeholder, a lower bound on each table instance's distinct
privacy units (`__lo<i>`; see `threshold_sql` for the methods).
Every bound is an exact statement about the data, not an estimate. A group passes when every
`__lo` >= k; every other group is recomputed, over exactly its rows (`Plan.restriction`), with
count(DISTINCT unit), which alone decides that a group fails. So cheap bounds only pass clear cases
and never decide a group near k, and the statements that run are always the same, whatever the data
(see engine.execute_plan).

Stage 2 (`output_sql`) reads the groups that passed and evaluates SELECT, HAVING and ORDER BY over
them, then LIMIT/OFFSET. Nothing the buyer wrote after grouping ever sees a group below k, so
HAVING, ORDER BY, LIMIT or a run-time error cannot reveal anything about one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from market.i18n import Msg
from sandbox.algebra import Interval, post_aggregate, temporal_arithmetic
from sandbox.errors import QueryRefused
from sandbox.fanout import JoinStep, join_steps
from sandbox.policy import ProtectionPolicy
from sandbox.syntax import ARITHMETIC, DIALECT, TypeTest, guard, to_sql
from sandbox.validator import CheckedQuery

GROUPS_TABLE = "__groups"
_BIGINT = exp.DataType.build("BIGINT")
BUCKETS = 64
"""Hash buckets for the lower bound: a bit per bucket in one UBIGINT, combined with bit_or."""


@dataclass(frozen=True)
class Plan:
    """The statements that answer one buyer query, and what metering needs to know about it."""

    template: str
    """Stage 1 with placeholders for the threshold columns (PLACEHOLDER) and a row restriction (RESTRICT)."""
    restriction: str
    """Restricts the recheck to the rows whose group keys and filter value (HASH(keys, (filter))) hash into
    UNDECIDED_TABLE's `__h`, which holds HASH(keys, TRUE) of undecided groups: rows that pass the filter
    and lie in an undecided group (an uncorrelated IN: a mark join that reads every row; the list is never
    empty, engine.SENTINEL)."""
    key_columns: list[str]
    join_keys: tuple[tuple[str, str], tuple[str, str]] | None
    """For two tables under one inner equi-join: ((alias, column), (alias, column))."""
    units: list[UnitColumn]
    output_sql: str
    decide_sql: str
    undecided: str
    """The condition that holds for groups the last method did not show to reach k."""
    columns: list[str]
    tables: list[str]
    referenced_columns: dict[str, list[str]] = field(default_factory=dict)
    fast_threshold: bool = True
    """False runs the exact statement straight away (the naive method, kept for the benchmark)."""
    counted_output_sql: str = ""
    """Stage 2 with two trailing columns, `"__s"` and `"__n"` (suppressed groups, groups), for the
    single statement (engine.execute_single); the same tree as `output_sql` otherwise."""
    passes_sql: str = ""
    """The condition a group of stage 1 passes (every `__lo<i>` >= k)."""
    constants_sql: str | None = None
    """`SELECT <each computed constant of stage 1>`: run once before stage 1, so a constant that fails
    (CAST('x' AS INTEGER) in a CASE branch) fails whether or not its branch is reached."""
    cells: list[Cell] = field(default_factory=list)
    """The per-aggregate thresholds (`__v<m>`): one per distinct argument of an aggregate but count(*)."""
    mask_sql: str | None = None
    """Staged path: `UPDATE "__groups"` setting every aggregate whose cell threshold is under k to NULL."""
    masked_columns_sql: str = "*"
    """Single statement: `* REPLACE (...)`, the same masking as a projection over stage 1."""
    min_group_size: int = 0
    """The policy's k."""
    key_reads: tuple[tuple[tuple[str, str], ...], ...] = ()
    """Per group key, the (table, column) pairs it reads: a key has at most as many values as the
    product of its columns' (sandbox.service.single_statement's estimate of the number of groups)."""
    key_periods: tuple[str | None, ...] = ()
    """Per group key: the calendar part it takes of a date (`year(d)`: "year", `month(d)`: "month-of-year",
    `date_trunc('month', d)`: "month"), which bounds its values more tightly than d's; else None."""
    filters: tuple[tuple[tuple[str, str] | None, int], ...] = ()
    """Per top-level conjunct of WHERE: ((table, column), n) for `column = literal` (n = 1) or
    `column IN (n literals)`, else (None, 0): the query text's selectivity, for the same estimate."""
    partials: tuple[Partial, ...] | None = None
    """Per aggregate (`__a<j>`), how its values over the (group keys, unit) groups combine into the
    group's (two_level_sql); None when some aggregate does not combine exactly, or the query reads more
    than one table instance: the two-level statement does not apply."""
    seeded: str | None = None
    """Stage 1 with seeded rows (seeded_stage), with the same two placeholders: what the one-statement paths
    run (engine.execute_single, execute_two_level, execute_folded). None when the query has no filter (every
    row reaches the aggregates anyway)."""
    seed: str = ""
    """The seed condition, `("<root>"."__row" & 2047) = 0`: TRUE on a fixed 1/2048 of the root table's rows."""
    joins: tuple[JoinStep, ...] = ()
    """The tables stage 1 joins to its root, in order, with their key comparisons (sandbox.fanout's bound)."""


@dataclass(frozen=True)
class Partial:
    """How one aggregate combines over the (group keys, unit) groups of the two-level statement.

    kind: "count" (count(*), count(x): summed), "units" (count(DISTINCT unit): the count of the
    (keys, unit) groups whose unit is not NULL, as the group threshold),
    "sum" (summed), "min", "max" (the least or greatest), "avg" (the sum of `argument`'s sums over
    the sum of its counts, as DuckDB's avg divides; its own value per (keys, unit) is not read)."""

    kind: str
    argument: str = ""


def _q(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _unit(alias: str, unit: str) -> exp.Column:
    return exp.column(unit, table=alias, quoted=True)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class UnitColumn:
    """The privacy-unit column of one table instance in a query."""

    table: str
    alias: str
    column: str

    @property
    def sql(self) -> str:
        return f"{_quoted(self.alias)}.{_quoted(self.column)}"


@dataclass(frozen=True)
class Cell:
    """A per-aggregate threshold: the rows where `condition` holds (the argument is not NULL) must
    cover k distinct units of every table instance, or the aggregates `columns` (`__a<j>`) are NULL."""

    condition: str
    columns: tuple[str, ...]
    reads: tuple[tuple[str, str], ...] | None = None
    """(table, column) the argument reads, when it is plain arithmetic over them (then it is NULL
    exactly where one of them is, and no outer join adds NULLs): a cell whose columns hold no NULL
    in the version is the group itself, and the engine gives it the group's own bound. None: always
    counted."""


def threshold_sql(
    units: list[UnitColumn],
    method: str,
    max_rows_per_unit: Sequence[int] = (),
    cells: Sequence[Cell] = (),
    whole: Sequence[bool] = (),
) -> str:
    """The threshold columns `__lo<i>`: a lower bound on instance i's distinct units, per method.

    - "rows": where no unit of instance i can have more than `max_rows_per_unit[i]` rows in the
      query's rows (see engine._methods for where the bound comes from). A group of n rows whose unit
      is not NULL then has at least ceil(n / max) units; rows whose unit is NULL are no unit at all
      (count(DISTINCT unit) ignores them too), so they count for nothing: `count(unit)`, not `count(*)`.
    - "buckets": the distinct 64-way hash buckets the units fall into (minus one if a NULL is
      present): distinct units can share a bucket, one unit never fills two.
    - "exact": count(DISTINCT unit).

    Then one column `__v<m>` per cell: the same bound over the rows where the cell's argument is
    not NULL (a FILTER on each count), the least over the table instances. A cell marked in `whole`
    (its argument is never NULL in this version: engine.whole_cells) gets the group's own bound,
    the same expression as `__lo<i>`, which DuckDB computes once.
    """
    columns = [
        _bound(unit, method, max_rows_per_unit[i] if method == "rows" else 0, None) + f' AS "__lo{i}"'
        for i, unit in enumerate(units)
    ]
    for m, cell in enumerate(cells):
        bounds = [
            _bound(
                unit,
                method,
                max_rows_per_unit[i] if method == "rows" else 0,
                None if m < len(whole) and whole[m] else cell.condition,
            )
            for i, unit in enumerate(units)
        ]
        least = bounds[0] if len(bounds) == 1 else f"LEAST({', '.join(bounds)})"
        columns.append(f'{least} AS "__v{m}"')
    return ", ".join(columns)


def _bound(unit: UnitColumn, method: str, bound: int, condition: str | None) -> str:
    """One lower bound on the distinct units of `unit`, over the rows where `condition` holds (all if None)."""
    where = f" FILTER (WHERE {condition})" if condition is not None else ""
    if method == "exact":
        return f"COUNT(DISTINCT {unit.sql}){where}"
    if method == "rows":
        per_unit = max(1, abs(bound))
        counted = unit.sql if bound < 0 else "*"
        return f"(COUNT({counted}){where} + {per_unit - 1}) // {per_unit}"
    return (
        f"COALESCE(BIT_COUNT(BIT_OR(CAST(1 AS UBIGINT) << (HASH({unit.sql}) % {BUCKETS})){where}), 0)"
        f" - CAST(COUNT(*){where} > COUNT({unit.sql}){where} AS BIGINT)"
    )


def _equi_join(checked: CheckedQuery) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """((alias, column), (alias, column)) when the query is two tables under one inner `ON a.x = b.y`."""
    joins = checked.select.args.get("joins") or []
    if len(checked.refs) != 2 or len(joins) != 1:
        return None
    join = joins[0]
    side, kind = str(join.args.get("side") or "").upper(), str(join.args.get("kind") or "").upper()
    on = join.args.get("on")
    if side or kind not in ("", "INNER") or not isinstance(on, exp.EQ):
        return None
    left, right = on.this, on.expression
    if not isinstance(left, exp.Column) or not isinstance(right, exp.Column) or left.table == right.table:
        return None
    return (left.table, left.name), (right.table, right.name)


THRESHOLD_COLUMN = "__threshold__"
PLACEHOLDER = _quoted(THRESHOLD_COLUMN)
RESTRICT_COLUMN = "__restrict__"
RESTRICT = _quoted(RESTRICT_COLUMN)
UNDECIDED_TABLE = "__undecided"
KEPT_COLUMN = "__kept"
"""Seeded stage 1's last group key: whether the group's rows pass the buyer's filter (seeded_stage)."""
ROW_COLUMN = "__row"
"""The hidden column every product view of the sandbox carries: the row's number in its Parquet file
(engine.open_locked); buyers cannot name it (names with __ are refused)."""
SEED_MASK = 2047
"""A row is a seed when `__row & SEED_MASK = 0`: the first row of every 2,048-row vector of a scan."""


class _PostAggregate:
    """Rewrites SELECT/HAVING/ORDER BY expressions to read group keys and aggregates from stage 1.

    The rewrite works in place on the checked tree, which build_plan consumes: the SELECT items
    first (`outputs`, in order), then HAVING and ORDER BY, where an alias of a SELECT item stands
    for a copy of that item's rewritten form. The aggregates it finds move into stage 1 as they are.
    """

    def __init__(self, checked: CheckedQuery) -> None:
        self.checked = checked
        texts = [to_sql(key) for key in checked.group_keys]
        self.key_texts = texts
        self.keys = {text: i for i, text in enumerate(texts)}
        self.key_types = {type(key) for key in checked.group_keys}
        self.key_objects = {id(key): self.keys[text] for key, text in zip(checked.group_keys, texts, strict=True)}
        """A key that is itself a SELECT item (GROUP BY 1, GROUP BY alias): found without generating its text."""
        self.aggregates: dict[str, int] = {}
        self.aggregate_nodes: list[exp.Expr] = []
        self.outputs: list[exp.Expr] = []

    def rewrite_items(self) -> list[exp.Expr]:
        self.outputs = [self._walk(item, aliases_ok=False) for item in self.checked.items]
        return self.outputs

    def rewrite(self, node: exp.Expr, *, aliases_ok: bool) -> exp.Expr:
        return self._walk(node, aliases_ok=aliases_ok)

    def _walk(self, node: exp.Expr, *, aliases_ok: bool) -> exp.Expr:
        if id(node) in self.key_objects:
            return _col(f"__g{self.key_objects[id(node)]}")
        if type(node) in self.key_types:
            text = to_sql(node)
            if text in self.keys:
                return _col(f"__g{self.keys[text]}")
        if isinstance(node, exp.AggFunc):
            text = to_sql(node)
            if text not in self.aggregates:
                self.aggregates[text] = len(self.aggregate_nodes)
                self.aggregate_nodes.append(node)
            return _col(f"__a{self.aggregates[text]}")
        if isinstance(node, _TEMPORAL_CHECKED) and temporal_arithmetic(node) and node.find(exp.AggFunc, exp.Column):
            raise QueryRefused("post_aggregate_may_fail", expression=_buyer_text(node))
        if isinstance(node, exp.Column):
            lowered = node.name.lower()
            if aliases_ok and not node.table and lowered in self.checked.aliases:
                return self.outputs[self.checked.aliases[lowered]].copy()
            raise QueryRefused("not_grouped", column=node.name)
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expr):
                walked = self._walk(value, aliases_ok=aliases_ok)
                if walked is not value:
                    node.set(key, walked)
            elif isinstance(value, list):
                items = [self._walk(v, aliases_ok=aliases_ok) if isinstance(v, exp.Expr) else v for v in value]
                if any(new is not old for new, old in zip(items, value, strict=True)):
                    node.set(key, items)
        return node


_TEMPORAL_CHECKED = (*ARITHMETIC, exp.Neg)


def _buyer_text(node: exp.Expr) -> str:
    """`node` as the buyer wrote it, near enough for a message: a measure's `TRY_CAST(m AS DOUBLE)` (the
    validator's form inside aggregates) shown as `m`."""
    shown = node.copy()
    for cast in list(shown.find_all(exp.TryCast)):
        to = cast.args.get("to")
        if isinstance(cast.this, exp.Column) and isinstance(to, exp.DataType) and to.this == exp.DataType.Type.DOUBLE:
            cast.replace(cast.this)
    text = to_sql(shown)
    return text if len(text) <= 200 else text[:197] + "..."


def _counts(post: _PostAggregate, checked: CheckedQuery, sizes: Mapping[str, int] | None) -> dict[str, Interval]:
    """The bounds of the count aggregates (`__a<j>`): 0 to the rows the query can read (the product of its
    tables' public row counts: a join yields at most that many rows); none without the row counts."""
    if sizes is None or any(ref.table not in sizes for ref in checked.refs):
        return {}
    rows = 1
    for ref in checked.refs:
        rows *= max(int(sizes[ref.table]), 1)
    bound = Interval(0, rows)
    return {f"__a{j}": bound for j, node in enumerate(post.aggregate_nodes) if isinstance(node, exp.Count)}


def _column_of(node: exp.Expr, tables: dict[str, str]) -> tuple[str, str] | None:
    return (tables[node.table], node.name) if isinstance(node, exp.Column) and node.table in tables else None


KeyReads = tuple[tuple[tuple[str, str], ...], ...]
Filters = tuple[tuple[tuple[str, str] | None, int], ...]
_PARTS: dict[type[exp.Expr], str] = {
    exp.Year: "year",
    exp.Quarter: "quarter-of-year",
    exp.Month: "month-of-year",
    exp.Day: "day-of-month",
    exp.DayOfWeek: "day-of-week",
}
_EXTRACTED = {"YEAR": "year", "QUARTER": "quarter-of-year", "MONTH": "month-of-year", "DAY": "day-of-month"}
_TRUNCATED = {"YEAR": "year", "QUARTER": "quarter", "MONTH": "month", "WEEK": "week", "DAY": "day"}


def _period(key: exp.Expr) -> str | None:
    """The calendar part a group key takes of one date column (Plan.key_periods), or None."""
    if type(key) in _PARTS and isinstance(key.this, exp.Column):
        return _PARTS[type(key)]
    unit = key.args.get("unit")
    if isinstance(key, exp.TimestampTrunc | exp.DateTrunc) and isinstance(unit, exp.Var):
        return _TRUNCATED.get(unit.name.upper())
    if isinstance(key, exp.Extract) and isinstance(key.this, exp.Var):
        return _EXTRACTED.get(key.this.name.upper())
    return None


def _shape(checked: CheckedQuery) -> tuple[KeyReads, tuple[str | None, ...], Filters]:
    """What the cost estimate reads from the query text (Plan.key_reads, key_periods, filters)."""
    tables = {ref.alias: ref.table for ref in checked.refs}
    key_reads = tuple(
        tuple(sorted({found for c in key.find_all(exp.Column) if (found := _column_of(c, tables))}))
        for key in checked.group_keys
    )
    periods = tuple(
        _period(key) if len(reads) == 1 else None for key, reads in zip(checked.group_keys, key_reads, strict=True)
    )
    filters: list[tuple[tuple[str, str] | None, int]] = []
    where = checked.select.args.get("where")
    stack = [where.this] if where is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, exp.And):
            stack.extend((node.this, node.expression))
        elif isinstance(node, exp.Paren):
            stack.append(node.this)
        elif isinstance(node, exp.EQ) and isinstance(node.expression, exp.Literal) and _column_of(node.this, tables):
            filters.append((_column_of(node.this, tables), 1))
        elif isinstance(node, exp.EQ) and isinstance(node.this, exp.Literal) and _column_of(node.expression, tables):
            filters.append((_column_of(node.expression, tables), 1))
        elif (
            isinstance(node, exp.In)
            and _column_of(node.this, tables)
            and node.expressions
            and all(isinstance(e, exp.Literal) for e in node.expressions)
        ):
            filters.append((_column_of(node.this, tables), len(node.expressions)))
        else:
            filters.append((None, 0))
    return key_reads, periods, tuple(filters)


def _guarded_key_texts(keys: list[exp.Expr], guarded: list[exp.Expr], texts: list[str]) -> list[str]:
    """to_sql of each guarded key (branch val16): a bare column's is its key's text, which _PostAggregate has
    generated already (guard leaves a column as it is: nothing under it reads data but the column itself)."""
    return [
        text if isinstance(key, exp.Column) and isinstance(copy, exp.Column) else to_sql(copy)
        for key, copy, text in zip(keys, guarded, texts, strict=True)
    ]


def build_plan(checked: CheckedQuery, policy: ProtectionPolicy, sizes: Mapping[str, int] | None = None) -> Plan:
    """The statements for `checked`: stage 1 (fast and exact variants), the decision query and stage 2.

    `sizes` (the version's row counts, public) chooses which table of an inner join is read whole
    (whole_sides); without them, the first written."""
    key_reads, key_periods, filters = _shape(checked)
    post = _PostAggregate(checked)
    outputs = post.rewrite_items()
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

    # Stage 2 cannot raise for any value of the groups' columns (algebra.post_aggregate): integer arithmetic
    # proven within BIGINT from the counts' bounds stays as written, the rest is computed in DOUBLE.
    counts = _counts(post, checked, sizes)
    outputs = [post_aggregate(output, counts) for output in outputs]
    if having_expr is not None:
        having_expr = post_aggregate(having_expr, counts)
    for ordered in order_terms:
        ordered.set("this", post_aggregate(ordered.this, counts))
    guarded_keys = [guard(key.copy()) for key in checked.group_keys]
    key_texts = _guarded_key_texts(checked.group_keys, guarded_keys, post.key_texts)
    projections: list[exp.Expr] = [
        exp.alias_(key, f"__g{i}", quoted=True, copy=False) for i, key in enumerate(guarded_keys)
    ]
    units = [
        UnitColumn(table=ref.table, alias=ref.alias, column=policy.tables[ref.table].privacy_unit)
        for ref in checked.refs
    ]
    joins = select.args.get("joins") or []
    outer = any(str(join.args.get("side") or "").upper() in ("LEFT", "RIGHT", "FULL") for join in joins)
    cells = _cells(post.aggregate_nodes, units, outer)
    projections += [exp.alias_(agg, f"__a{j}", quoted=True, copy=False) for j, agg in enumerate(post.aggregate_nodes)]
    projections.append(_col(THRESHOLD_COLUMN))
    stage = exp.Select(expressions=projections)
    join_keys = _equi_join(checked)
    restrict = _col(RESTRICT_COLUMN)
    whole = whole_sides(checked, policy, sizes)
    if whole is None:
        stage.set("from_", select.args.get("from_") or select.args.get("from"))
        stage.set("joins", select.args.get("joins") or None)
        where = select.args.get("where")
        # The checked tree is consumed here: its WHERE moves into stage 1 as it is, without a copy.
        filtered = exp.Paren(this=where.this) if where else None
    else:
        # Joins: no join input is ever empty because of what a filter selects (whole_sides).
        from_, rejoined, tested = whole
        stage.set("from_", from_)
        stage.set("joins", rejoined)
        filtered = exp.Paren(this=tested) if tested is not None else None
    condition = exp.and_(filtered, restrict, copy=False) if filtered is not None else restrict
    stage.set("where", exp.Where(this=condition))
    if checked.group_keys:
        # A whole-number literal in GROUP BY is a position to DuckDB (`SELECT 2 AS two, count(*) ... GROUP BY 1`
        # would group by stage 1's second column, an aggregate): such a key is grouped as a cast constant.
        stage.set("group", exp.Group(expressions=[_grouped(key) for key in guarded_keys]))
    passed = to_sql(filtered) if filtered is not None else "TRUE"
    template = _template_text(stage, condition, filtered, passed)
    seed = _seed(whole[0].this if whole is not None else stage.args["from_"].this)
    seed_sql = to_sql(seed)
    seeded = None
    if filtered is not None:
        group = stage.args.get("group")
        seeded = _seeded_text(template, passed, seed_sql, to_sql(group) if group is not None else None)
        if seeded is None:
            seeded = seeded_stage(stage, filtered, restrict, seed, guarded_keys)
    constants = _constants([condition, *[on for join in stage.args.get("joins") or [] if (on := join.args.get("on"))]])
    constants += _constants(guarded_keys)
    # Stage 2's computed constants too (`1 + 2147483647` fails for every group alike): refused before
    # running. A bare INTERVAL stays an answer value (answer_out_of_range when JSON cannot carry it).
    post_nodes = [*outputs, *([having_expr] if having_expr is not None else []), *(o.this for o in order_terms)]
    constants += [c for c in _constants(post_nodes) if not isinstance(c, exp.Interval)]
    # The threshold columns and the recheck restriction go in place of placeholders the buyer cannot
    # write (names with __ are refused), each found exactly once. All variants of stage 1 differ
    # only there, so the buyer part DuckDB's parser confirms in the template is the same text in each.
    if (
        template.count(PLACEHOLDER) != 1
        or template.count(RESTRICT) != 1
        or (seeded is not None and (seeded.count(PLACEHOLDER) != 1 or seeded.count(RESTRICT) != 1))
    ):
        raise QueryRefused("parser_mismatch", detail="the threshold columns could not be placed")
    # The recheck's rows: those whose group keys, with the buyer's filter's value, hash into the list of
    # undecided groups (an uncorrelated IN, planned as a mark join that reads and hashes every row; never
    # an empty list). The list holds HASH(keys, TRUE) (engine.execute_plan), so only rows that pass the
    # filter AND lie in an undecided group match: without the filter in the hash, every row of an
    # undecided group's keys matched, and the filter was then tested on them all (all the flights of a
    # carrier, for `WHERE flight = 7 GROUP BY carrier`) and on none when no group was undecided, so the
    # time told whether one hidden row existed (docs/sandbox.md, "The recheck's rows"). The filter
    # stays in WHERE too: a row that fails it is never counted, even if its hash collides with a listed one.
    # A group whose hash collides with an undecided one is recomputed too, exactly, and replaced like it.
    if key_texts:
        restriction = f'HASH({", ".join(key_texts)}, {passed}) IN (SELECT "__h" FROM "{UNDECIDED_TABLE}")'
    else:
        # No group keys: one group. The list then holds HASH(TRUE, TRUE) and HASH(FALSE, TRUE) when the
        # group is undecided (engine.execute_plan), matched on a value every row has, never a constant.
        restriction = f'HASH({units[0].sql} IS NULL, {passed}) IN (SELECT "__h" FROM "{UNDECIDED_TABLE}")'
    k = policy.min_group_size
    n = len(checked.refs)
    passes = _passes_condition(k, n)
    # Built node by node rather than with sqlglot's builder methods, which parse their arguments.
    output = exp.Select(
        expressions=[exp.alias_(e, f"__c{i}", quoted=True, copy=False) for i, e in enumerate(outputs)],
        from_=exp.From(this=exp.Table(this=_q(GROUPS_TABLE))),
        where=exp.Where(this=exp.and_(passes, having_expr, copy=False) if having_expr is not None else passes),
    )
    if order_terms:
        output.set("order", exp.Order(expressions=order_terms))
    if checked.limit is not None:
        output.set("limit", exp.Limit(expression=exp.Literal.number(checked.limit)))
    if checked.offset:
        output.set("offset", exp.Offset(expression=exp.Literal.number(checked.offset)))
    output_sql = to_sql(output)
    counted_output_sql = _counted_text(output, output_sql)
    return Plan(
        template=template,
        restriction=restriction,
        key_columns=[f"__g{i}" for i in range(len(key_texts))],
        join_keys=join_keys,
        units=units,
        output_sql=output_sql,
        counted_output_sql=counted_output_sql,
        passes_sql=_passes_text(k, n),
        decide_sql=_decide_sql(k, n, len(cells)),
        undecided=_undecided_sql(k, n, len(cells)),
        columns=checked.columns,
        tables=[ref.table for ref in checked.refs],
        referenced_columns={t: sorted(c) for t, c in checked.referenced_columns.items()},
        constants_sql=_constants_sql(constants),
        cells=cells,
        mask_sql=_mask_sql(k, cells),
        masked_columns_sql=_masked_columns_sql(k, cells),
        min_group_size=k,
        key_reads=key_reads,
        key_periods=key_periods,
        filters=filters,
        partials=_partials(post.aggregate_nodes, units),
        seeded=seeded,
        seed=seed_sql,
        joins=join_steps(stage.args.get("joins") or [], {ref.alias: ref.table for ref in checked.refs}),
    )


_FILTER_HOLE = _quoted("__filter__")
"""Where the filter's text goes in the template's text (_template_text): a name the buyer cannot write."""


def _template_text(stage: exp.Select, condition: exp.Expr, filtered: exp.Expr | None, passed: str) -> str:
    """to_sql(stage), with the filter's text `passed` (to_sql(filtered), already generated for the restriction
    and the seeded stage) written in instead of generated a second time (branch val13: the filter was the
    largest part of the template's generation, and all of a long OR chain's).

    The stage is generated with a one-name hole in place of `filtered` (the left operand of `condition`, the
    WHERE's `AND`), whose text is then replaced by `passed`. sqlglot writes an AND's operands side by side
    with " AND " between them, whatever they are, and `passed` was generated from the same node in the same
    place of the same tree, so the result is to_sql(stage) byte for byte (bench/valplans.py over the corpus;
    tests/sandbox/test_val13_texts.py). When the hole's text is not found exactly once (a string constant of
    the query spelling it), the stage is generated whole, as before. Nothing here is trusted either way:
    DuckDB's parser reads the template that runs and the groups walk checks it."""
    if filtered is None or condition.this is not filtered:
        return to_sql(stage)
    condition.set("this", _col("__filter__"))
    try:
        holed = to_sql(stage)
    finally:
        condition.set("this", filtered)
    head, hole, tail = holed.partition(_FILTER_HOLE)
    if not hole or _FILTER_HOLE in tail:
        return to_sql(stage)
    return head + passed + tail


_COUNTS_AT = ' FROM "__groups" WHERE '
_COUNTS = ', "__s", "__n"'


def _counted_text(output: exp.Select, output_sql: str) -> str:
    """Plan.counted_output_sql: stage 2 with the group counts it carries appended as the last two columns
    (sandbox-written names the buyer cannot write; positions of ORDER BY unchanged), written into stage 2's
    text where its select list ends instead of generating the whole statement again (branch val13).

    sqlglot writes the select list, then ` FROM "__groups"`, then ` WHERE ` (stage 2 always has a WHERE: the
    passing condition), so when that text occurs exactly once it is where the list ends, and the two columns
    (`"__s", "__n"` joined with ", " like every item) go right before it. Otherwise (a string constant of the
    query spelling it) the tree is generated with the two columns, as before."""
    head, found, tail = output_sql.partition(_COUNTS_AT)
    if found and _COUNTS_AT not in tail and output_sql.startswith("SELECT "):
        return head + _COUNTS + found + tail
    output.set("expressions", [*output.expressions, _col("__s"), _col("__n")])
    return to_sql(output)


def _seed(source: exp.Expr) -> exp.Expr:
    """`("<alias>"."__row" & 2047) = 0` for the table `source` (the root: read whole by every variant)."""
    alias = source.alias_or_name if isinstance(source, exp.Table) else ""
    row = exp.column(ROW_COLUMN, table=alias, quoted=True)
    masked = exp.Paren(this=exp.BitwiseAnd(this=row, expression=exp.Literal.number(SEED_MASK)))
    return exp.EQ(this=masked, expression=exp.Literal.number(0))


def _seeded_text(template: str, filtered: str, seed: str, group: str | None) -> str | None:
    """seeded_stage's text, written into the template's text instead of generated from a copy of its tree
    (copying and generating the filter four times made a long filter's validation slow); None when the
    template is not shaped as build_plan writes it (seeded_stage then builds the tree).

    The result is the same text seeded_stage generates (bench/valplans.py compares both for every corpus
    query), and it is checked like any other statement: DuckDB's parser reads it and check_seeded walks
    it, so nothing here is trusted."""
    flag = f"COALESCE({filtered}, FALSE)"
    head, threshold, tail = template.partition(", " + PLACEHOLDER + " FROM ")
    if not threshold or PLACEHOLDER in tail or PLACEHOLDER in head:
        return None
    where = " WHERE " + filtered + " AND " + RESTRICT
    before, found, after = tail.partition(where)
    if not found or RESTRICT in after or RESTRICT in before:
        return None
    if group is None:
        if after:
            return None
        grouped = " GROUP BY " + flag
    elif after != " " + group:
        return None
    else:
        grouped = after + ", " + flag
    return (
        f"{head}, {flag} AS {_quoted(KEPT_COLUMN)}, {PLACEHOLDER} FROM {before} WHERE ({filtered} OR {seed}) AND "
        f"{RESTRICT}{grouped}"
    )


def seeded_stage(
    stage: exp.Select, filtered: exp.Expr, restrict: exp.Expr, seed: exp.Expr, keys: list[exp.Expr]
) -> str:
    """Stage 1 through which a fixed sample of rows always flows, whatever the buyer's filter keeps.

    With `flag` = `COALESCE((<filter>), FALSE)`: WHERE `((<filter>) OR <seed>) AND <restrict>`, `flag AS "__kept"`
    as the item before the threshold placeholder, and `flag` as the last group key. So the first row of
    every 2,048-row vector of the root table's scan (a seed, by its row number in the file) reaches the
    aggregates whether or not any row passes the filter: every operator from the scan up, in every thread,
    gets rows and builds its state on both sides of a pair of queries that differ in one hidden row (the
    first-row step, docs/sandbox.md "Timing"). A seed that fails the filter lands in a group whose `__kept`
    is FALSE, never shown nor counted (engine: its bounds are masked to NULL, the counts read `__kept`); a
    seed that passes it is a row of its own group anyway. So every answer is unchanged."""
    seeded = stage.copy()
    flag = exp.Coalesce(this=filtered.copy(), expressions=[exp.false()])
    items = list(seeded.expressions)
    items.insert(len(items) - 1, exp.alias_(flag.copy(), KEPT_COLUMN, quoted=True, copy=False))
    seeded.set("expressions", items)
    # WHERE reads the filter bare: NULL OR seed is the seed, as COALESCE(NULL, FALSE) OR seed (and a third cheaper).
    either = exp.or_(filtered.copy(), seed.copy(), copy=False)
    condition = exp.and_(exp.Paren(this=either), restrict.copy(), copy=False)
    seeded.set("where", exp.Where(this=condition))
    seeded.set("group", exp.Group(expressions=[*[_grouped(key) for key in keys], flag]))
    return to_sql(seeded)


_COMBINED: dict[type[exp.Expr], str] = {exp.Count: "count", exp.Sum: "sum", exp.Min: "min", exp.Max: "max"}


def _grouped(key: exp.Expr) -> exp.Expr:
    """`key` as a GROUP BY item: a number literal (DuckDB reads it as a position) becomes its text."""
    if isinstance(key, exp.Literal) and not key.is_string:
        # Grouped by its text: one value like the constant, and no cast that could fail (the SELECT keeps the literal).
        return exp.Cast(this=key.copy(), to=exp.DataType.build("VARCHAR"))
    return key.copy()


def _partials(aggregates: list[exp.Expr], units: list[UnitColumn]) -> tuple[Partial, ...] | None:
    """Plan.partials: how each aggregate combines over (keys, unit) groups, or None if one does not
    combine exactly (the variance family, count(DISTINCT x) for x other than the unit, any other
    aggregate, a FILTER or ORDER BY inside one) or the query reads several table instances."""
    if len(units) != 1:
        return None
    found: list[Partial] = []
    for aggregate in aggregates:
        kind = _COMBINED.get(type(aggregate)) or ("avg" if type(aggregate) is exp.Avg else None)
        argument = aggregate.this
        if kind is None or any(value for name, value in aggregate.args.items() if name not in ("this", "big_int")):
            return None
        if isinstance(argument, exp.Distinct):
            # count(DISTINCT unit): the group's distinct units, `count(__u)` over the (keys, unit) groups.
            distinct = argument.expressions
            if not (
                kind == "count"
                and len(distinct) == 1
                and isinstance(distinct[0], exp.Column)
                and distinct[0].name == units[0].column
                and distinct[0].table in ("", units[0].alias)
            ):
                return None
            kind = "units"
        elif not isinstance(argument, exp.Expr) or (isinstance(argument, exp.Star) and kind != "count"):
            return None
        found.append(Partial(kind, to_sql(argument) if kind == "avg" else ""))
    return tuple(found)


def two_level_sql(plan: Plan, whole: Sequence[bool] = (), *, seeded: bool = False) -> str | None:
    """Stage 1 with the exact thresholds, as ONE grouping on (group keys, unit) feeding every count,
    or None when it does not apply (Plan.partials).

    Inner: the confirmed stage 1 template, grouped by the unit too (its GROUP BY is the template's
    last clause), with sandbox-written columns in place of the threshold placeholder: the unit
    (`__u`), per cell whose argument can be NULL a flag that some row of the (keys, unit) group has
    it non-NULL (`__f<m>`), per avg the sum and count of its argument (`__p<j>`, `__q<j>`). Outer,
    per group: the keys, each aggregate combined (Partial), `count(__u)` as `__lo0` (the distinct
    units: the rows whose unit is NULL form one inner group, which counts for no unit but whose rows
    still reach the aggregates), `count(__u) FILTER (WHERE __f<m>)` as `__v<m>` (a cell in `whole`
    gets the group's own count). The same columns as stage 1 with the exact method.

    `seeded`: over the seeded template (Plan.seeded, seeded_stage), its `__kept` carried through and grouped
    on at both levels (its GROUP BY always exists: `__kept` is its last key)."""
    partials = plan.partials
    template = plan.seeded if seeded and plan.seeded is not None else plan.template
    seeded = template is not plan.template
    if partials is None or len(plan.units) != 1 or (plan.key_columns and " GROUP BY " not in template):
        return None
    unit = plan.units[0]
    inner = [f'{unit.sql} AS "__u"']
    # Per cell, what shows that a (keys, unit) group has a row where the cell's argument is not NULL:
    # a count(x) or avg(x) of the cell counts those rows already (every aggregate of a cell has the
    # same argument), else a flag of its own.
    flags: list[str | None] = []
    for m, cell in enumerate(plan.cells):
        if m < len(whole) and whole[m]:
            flags.append(None)
            continue
        counted = [
            int(c[len("__a") :]) for c in cell.columns if partials[int(c[len("__a") :])].kind in ("count", "avg")
        ]
        if counted:
            j = counted[0]
            flags.append(f'"__a{j}" > 0' if partials[j].kind == "count" else f'"__q{j}" > 0')
        else:
            inner.append(f'BOOL_OR({cell.condition}) AS "__f{m}"')
            flags.append(f'"__f{m}"')
    outer = [_quoted(c) for c in plan.key_columns]
    grouped_by = list(outer)
    if seeded:
        outer.append(_quoted(KEPT_COLUMN))
        grouped_by.append(_quoted(KEPT_COLUMN))
    for j, partial in enumerate(partials):
        column = f'"__a{j}"'
        if partial.kind == "units":
            outer.append(f'COUNT("__u") AS {column}')
        elif partial.kind == "count":
            outer.append(f"CAST(COALESCE(SUM({column}), 0) AS BIGINT) AS {column}")
        elif partial.kind == "avg":
            inner += [f'SUM({partial.argument}) AS "__p{j}"', f'COUNT({partial.argument}) AS "__q{j}"']
            outer.append(f'SUM("__p{j}") / SUM("__q{j}") AS {column}')
        else:
            outer.append(f"{partial.kind.upper()}({column}) AS {column}")
    outer.append('COUNT("__u") AS "__lo0"')
    for m, flag in enumerate(flags):
        where = "" if flag is None else f" FILTER (WHERE {flag})"
        outer.append(f'COUNT("__u"){where} AS "__v{m}"')
    stage = template.replace(PLACEHOLDER, ", ".join(inner)).replace(RESTRICT, "TRUE")
    stage += f", {unit.sql}" if grouped_by else f" GROUP BY {unit.sql}"
    grouped = f" GROUP BY {', '.join(grouped_by)}" if grouped_by else ""
    return f'SELECT {", ".join(outer)} FROM ({stage}) AS "__i"{grouped}'


def _cells(aggregates: list[exp.Expr], units: list[UnitColumn], outer: bool) -> list[Cell]:
    """One per-aggregate threshold per distinct argument (sum(x), avg(x) and count(x) share one).

    count(*) has none (the group's own threshold is its cell's), nor has count(DISTINCT unit) over
    one table (the rows where the unit is not NULL are exactly the units the group's threshold counts).
    Every other aggregate covers only the rows where its arguments are all non-NULL, and those rows
    must hold k units: the rule that closes "one known row among rows whose measures are NULL".
    """
    by_condition: dict[str, list[str]] = {}
    reads: dict[str, tuple[tuple[str, str], ...] | None] = {}
    for j, aggregate in enumerate(aggregates):
        arguments: list[exp.Expr] = []
        for argument in aggregate.iter_expressions():
            arguments.extend(argument.expressions if isinstance(argument, exp.Distinct) else [argument])
        if not arguments or any(isinstance(a, exp.Star) for a in arguments):
            continue
        if (
            len(units) == 1
            and len(arguments) == 1
            and isinstance(arguments[0], exp.Column)
            and arguments[0].name == units[0].column
        ):
            continue
        condition = " AND ".join(f"({to_sql(a)}) IS NOT NULL" for a in arguments)
        by_condition.setdefault(condition, []).append(f"__a{j}")
        reads[condition] = None if outer else _reads(arguments, units)
    return [Cell(condition=c, columns=tuple(columns), reads=reads[c]) for c, columns in by_condition.items()]


_PLAIN = (exp.Column, exp.Identifier, exp.Literal, exp.Add, exp.Sub, exp.Mul, exp.Paren, exp.Neg, exp.DataType)


def _reads(arguments: list[exp.Expr], units: list[UnitColumn]) -> tuple[tuple[str, str], ...] | None:
    """(table, column) the arguments read, when they are plain arithmetic (and TRY_CAST to DOUBLE) of
    qualified columns and number literals: NULL exactly where a column read is; else None."""
    tables = {unit.alias: unit.table for unit in units}
    found: set[tuple[str, str]] = set()
    for argument in arguments:
        for node in argument.walk():
            if isinstance(node, exp.TryCast):
                if not node.to.is_type(exp.DataType.Type.DOUBLE):
                    return None
            elif not isinstance(node, _PLAIN) or (isinstance(node, exp.Literal) and node.is_string):
                return None
            if isinstance(node, exp.Column):
                if node.table not in tables:
                    return None
                found.add((tables[node.table], node.name))
    return tuple(sorted(found))


def _cell_masks(k: int, cells: list[Cell]) -> list[tuple[str, str]]:
    """(column, its masked value) for every aggregate with a cell threshold."""
    return [
        (column, f'CASE WHEN "__v{m}" >= {k} THEN "{column}" END')
        for m, cell in enumerate(cells)
        for column in cell.columns
    ]


def _mask_sql(k: int, cells: list[Cell]) -> str | None:
    masks = _cell_masks(k, cells)
    if not masks:
        return None
    return f'UPDATE "{GROUPS_TABLE}" SET ' + ", ".join(f'"{column}" = {value}' for column, value in masks)


def _masked_columns_sql(k: int, cells: list[Cell]) -> str:
    masks = _cell_masks(k, cells)
    if not masks:
        return "*"
    return "* REPLACE (" + ", ".join(f'{value} AS "{column}"' for column, value in masks) + ")"


def _kept_bounds(plan: Plan) -> list[tuple[str, str]]:
    return [(f"__lo{i}", f'CASE WHEN "{KEPT_COLUMN}" THEN "__lo{i}" END') for i in range(len(plan.units))]


def seeded_columns_sql(plan: Plan, *, cells: bool = True) -> str:
    """Plan.masked_columns_sql over a seeded stage 1 (seeded_stage): also every group bound `__lo<i>` NULL
    in a group whose `__kept` is FALSE (seeds that fail the filter), so it never passes, like a group
    under k (stage 2's WHERE tests the bounds before anything the buyer wrote). `cells=False`: the bounds
    alone (the staged path masks its cells after the recheck, Plan.mask_sql)."""
    masks = _kept_bounds(plan) + (_cell_masks(plan.min_group_size, plan.cells) if cells else [])
    return "* REPLACE (" + ", ".join(f'{value} AS "{column}"' for column, value in masks) + ")"


def seeded_recheck(plan: Plan, source: str, sentinel: str) -> tuple[str, str, str]:
    """The recheck over a seeded stage 1 (engine.execute_plan, engine.execute_folded), as three texts:

    - `listed`: the undecided groups' hashes read from `source` (stage 1's groups), one entry per group:
      HASH(keys, TRUE) of a kept, undecided group, else `sentinel` (the DISTINCT sees every group, the
      seeds' too: never none because no row passes the filter), plus `sentinel` once more;
    - `rechecked`: which groups of the recheck (or of `source`) are the kept, listed ones: only those
      replace stage 1's (a recheck group of seeds alone, or of a kept seed in a decided group, is partial);
    - `restriction`: the recheck's row restriction, `(<Plan.restriction>) OR <seed>`, so its aggregates
      get the seeds plus the kept rows of the undecided groups, whether or not any group is undecided."""
    kept = f'"{KEPT_COLUMN}"'
    hashed = f"HASH({', '.join(_quoted(c) for c in plan.key_columns)}, TRUE)"
    listed = (
        f'SELECT DISTINCT CASE WHEN {kept} AND ({plan.undecided}) THEN {hashed} ELSE {sentinel} END AS "__h" '
        f"FROM {source} UNION ALL SELECT {sentinel}"
    )
    rechecked = f'{kept} AND {hashed} IN (SELECT "__h" FROM "{UNDECIDED_TABLE}")'
    return listed, rechecked, f"({plan.restriction} OR {plan.seed})"


_COMPUTED = (exp.Func, exp.Interval, *ARITHMETIC)
"""Constants DuckDB computes (a function, a cast, arithmetic, an interval), as opposed to literals."""


def _constants(nodes: list[exp.Expr]) -> list[exp.Expr]:
    """The largest computed sub-expressions of `nodes` that read no column (copies)."""
    found: list[exp.Expr] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, _COMPUTED) and node.find(exp.Column) is None:
            found.append(node.copy())
            continue
        stack.extend(node.iter_expressions())
    return found


def _constants_sql(constants: list[exp.Expr]) -> str | None:
    """`SELECT <c0> AS "__k0", ...`: the text to_sql of that SELECT gives (_constants_select), written from each
    constant's text, without the generator's pass over a whole SELECT (a tenth of a millisecond; branch val15,
    tests/sandbox/test_val15_output_tokens.py compares the two)."""
    if not constants:
        return None
    return "SELECT " + ", ".join(f'{to_sql(c)} AS "__k{i}"' for i, c in enumerate(constants))


def _constants_select(constants: list[exp.Expr]) -> str | None:
    """What _constants_sql wrote before branch val15: kept as the reference the tests compare it with."""
    if not constants:
        return None
    items = [exp.alias_(c, f"__k{i}", quoted=True) for i, c in enumerate(constants)]
    return to_sql(exp.Select(expressions=items))


def _passes_condition(k: int, n: int) -> exp.Expr:
    """`"__lo0" >= k AND ...`, a fresh tree (built directly: the `>=` operator on sqlglot nodes is slow)."""
    return exp.and_(*[exp.GTE(this=_col(f"__lo{i}"), expression=exp.Literal.number(k)) for i in range(n)], copy=False)


@functools.lru_cache(maxsize=256)
def _passes(k: int, n: int) -> exp.Expr:
    return _passes_condition(k, n)


@functools.lru_cache(maxsize=256)
def _passes_text(k: int, n: int) -> str:
    """Plan.passes_sql: to_sql(_passes_condition(k, n)), a function of (k, n) alone, generated once."""
    return to_sql(_passes_condition(k, n))


def _cells_pass(k: int, n: int, cells: int) -> exp.Expr:
    """Every group bound and every cell bound at least k."""
    checks = [exp.GTE(this=_col(f"__v{m}"), expression=exp.Literal.number(k)) for m in range(cells)]
    return exp.and_(_passes(k, n).copy(), *checks, copy=False)


@functools.lru_cache(maxsize=256)
def _decide_sql(k: int, n: int, cells: int = 0) -> str:
    """Counts groups, groups that no bound so far shows to reach k, and groups with a group or cell
    bound under k (what the next method recomputes; only the exact count decides a cell is NULL)."""
    not_passing = exp.Sum(this=exp.Cast(this=exp.not_(_passes(k, n).copy()), to=_BIGINT.copy()))
    undecided = exp.Sum(this=exp.Cast(this=exp.not_(_cells_pass(k, n, cells)), to=_BIGINT.copy()))
    decide = exp.select(
        exp.alias_(exp.Count(this=exp.Star()), "groups", quoted=True),
        exp.alias_(not_passing, "not_passing", quoted=True),
        exp.alias_(undecided, "undecided", quoted=True),
    ).from_(exp.Table(this=_q(GROUPS_TABLE)))
    return str(decide.sql(DIALECT, comments=False))


@functools.lru_cache(maxsize=256)
def _undecided_sql(k: int, n: int, cells: int = 0) -> str:
    return str(exp.not_(_cells_pass(k, n, cells)).sql(DIALECT))


# -- joins whose sides are never empty (docs/sandbox.md, "Joins: no side skipped") -----------------------

_STRICT = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
"""Comparisons that are TRUE only when both operands are not NULL."""
_STRICT_SUBJECT = (exp.Like, exp.ILike, exp.In, exp.Between)
"""Predicates that are TRUE only when their subject (`this`) is not NULL."""
_PROPAGATING = TypeTest(
    exp.Column, exp.Identifier, exp.Literal, exp.DataType, exp.Var, exp.Paren, exp.TryCast, exp.Cast, exp.Try,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.Abs, exp.Round, exp.Floor, exp.Ceil, exp.Sqrt,
    exp.Ln, exp.Log, exp.Pow, exp.Upper, exp.Lower, exp.Trim, exp.Length, exp.Substring, exp.Left, exp.Right,
    exp.DPipe, exp.Year, exp.Month, exp.Day, exp.Quarter, exp.DayOfWeek, exp.Extract, exp.DateTrunc,
    exp.TimestampTrunc,
)  # fmt: skip
"""Expressions that are NULL whenever every column they read is NULL (each such function returns NULL for
a NULL argument; `concat`, `coalesce`, CASE and the like do not, and are not here)."""


def _conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    """The top-level AND terms of `node`, parentheses removed."""
    if node is None:
        return []
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _aliases(node: exp.Expr) -> set[str]:
    return {column.table for column in node.find_all(exp.Column)}


def _marker(conjuncts: list[exp.Expr], alias: str) -> exp.Expr | None:
    """An expression over table `alias` alone that is not NULL on every row where all of `conjuncts` hold,
    and NULL where that table's columns are all NULL (the row a LEFT JOIN adds when nothing matched)."""
    for conjunct in conjuncts:
        if isinstance(conjunct, _STRICT):
            operands = [conjunct.this, conjunct.expression]
        elif isinstance(conjunct, _STRICT_SUBJECT) and not conjunct.args.get("query"):
            operands = [conjunct.this]
        else:
            continue
        for operand in operands:
            if (
                isinstance(operand, exp.Expr)
                and _aliases(operand) == {alias}
                and all(_PROPAGATING(node) for node in operand.walk())
            ):
                return operand
    return None


def _join_side(join: exp.Join) -> str:
    side = str(join.args.get("side") or "").upper()
    return side if side in ("LEFT", "RIGHT", "FULL") else "INNER"


def whole_sides(
    checked: CheckedQuery, policy: ProtectionPolicy, sizes: Mapping[str, int] | None = None
) -> tuple[exp.From, list[exp.Join], exp.Expr | None] | None:
    """FROM, the joins and the WHERE condition of stage 1, rewritten so that no join's input is ever
    empty because of what a filter selects. DuckDB stops a join that cannot produce a row (an inner,
    RIGHT or semi hash join whose build side is empty, a piecewise-merge or nested-loop join, a cross
    product) and with it the scan of its other side: `orders JOIN lineitem ... WHERE o_orderkey = 8`
    read 4,096 lineitem rows instead of 6,001,215, whether any order matched being one bit a buyer
    chooses. None for a query of one table (nothing to stop). The answer is unchanged.

    - The root is read whole: the table with the most rows by `sizes` (the version's row counts, public),
      else the first written; with the buyer's own LEFT JOIN, the first written (the kept side). Its own
      filters are tested after every join.
    - Every other table LEFT JOINs the root's chain, its own filters and join conditions in the ON (each
      condition of WHERE or of an inner join goes to the latest table it reads), so they still filter
      its scan. An inner join's match is tested after the joins on its `marker` (_marker): NULL on the
      row a LEFT JOIN adds where nothing matched, never NULL on a match. A table with no marker (a CROSS
      JOIN) joins whole, its conditions tested after the joins.
    - What is tested after the joins is ONE CASE that reads every table but the root (a marker, a
      condition, or `_reference`): no optimizer splits it into per-table filters, pushes it into a scan
      or reads it as NULL-rejecting (which turns a LEFT JOIN back into an inner one). So every join's
      inputs are the chain (never fewer rows than the root table) and one table's own scan: a LEFT JOIN
      with an empty build side still reads its probe side, and one DuckDB flips into a RIGHT JOIN has
      the chain as its build side. RIGHT JOIN of two tables is the LEFT JOIN the other way round; FULL
      JOIN of two tables never stops, and its filters go after it; with more tables both are refused.
    """
    select = checked.select
    joins: list[exp.Join] = list(select.args.get("joins") or [])
    if not joins:
        return None
    from_ = select.args.get("from_") or select.args.get("from")
    if not isinstance(from_, exp.From):
        return None
    sources: list[exp.Expr] = [from_.this, *[join.this for join in joins]]
    refs = list(checked.refs)
    sides = ["INNER", *[_join_side(join) for join in joins]]
    where = select.args.get("where")
    if "RIGHT" in sides[2:] or ("FULL" in sides and len(sides) > 2):
        raise QueryRefused(
            "disallowed_construct",
            construct=Msg("RIGHT JOIN or FULL JOIN with more than two tables"),
            instead=Msg("write the table whose rows are all kept first, and use LEFT JOIN."),
        )
    aliases = [ref.alias for ref in refs]
    if sides[1] == "RIGHT":
        # a RIGHT JOIN b ON c is b LEFT JOIN a ON c: two tables, so nothing else refers to the order.
        sources.reverse()
        refs.reverse()
        aliases.reverse()
        sides[1] = "LEFT"
    if "FULL" in sides:
        # Two tables FULL JOINed: a full join never stops for an empty side; the filters, tested after it,
        # keep both sides whole (a filter pushed into one side would make it a LEFT or inner join again).
        tests = _conjuncts(where.this if where else None)
        tests += [t for ref in refs if (t := _reference(policy, ref.table, ref.alias)) is not None]
        return from_, joins, _opaque([], tests)
    outer = "LEFT" in sides
    root = 0
    if not outer and sizes:
        most = max(sizes.get(ref.table, 0) for ref in refs)
        root = next(i for i, ref in enumerate(refs) if sizes.get(ref.table, 0) == most)
    order = [root, *[i for i in range(len(aliases)) if i != root]]
    position = {aliases[i]: n for n, i in enumerate(order)}
    # Conditions of inner joins and WHERE: each goes to the ON of the latest table it reads (in the new
    # order), if that table is inner-joined; else it is tested after the joins.
    pool = _conjuncts(where.this if where else None)
    for side, join in zip(sides[1:], joins, strict=True):
        if side == "INNER":
            pool += _conjuncts(join.args.get("on"))
    assigned: dict[int, list[exp.Expr]] = {i: [] for i in range(len(aliases))}
    after: list[exp.Expr] = []
    for conjunct in pool:
        read = [position[a] for a in _aliases(conjunct) if a in position]
        latest = order[max(read)] if read else root
        if latest != root and sides[latest] == "INNER":
            assigned[latest].append(conjunct)
        else:
            after.append(conjunct)
    markers: list[exp.Expr] = []
    new_joins: list[exp.Join] = []
    chain = _reference_column(policy, refs[root].table, aliases[root])
    for i in order[1:]:
        source = sources[i]
        if sides[i] == "LEFT":
            # The buyer's own LEFT JOIN, its conditions as written (those on this table alone kept out of
            # its build side); tested after the joins only for a reference to it.
            on = _conjuncts(joins[i - 1].args.get("on"))
            new_joins.append(exp.Join(this=source, side="LEFT", on=_in_join(on, aliases[i], chain)))
            reference = _reference(policy, refs[i].table, aliases[i])
            if reference is not None:
                after.append(reference)
            continue
        marker = _marker(assigned[i], aliases[i])
        if marker is None:
            after += assigned[i]
            new_joins.append(exp.Join(this=source, kind="CROSS"))
            reference = _reference(policy, refs[i].table, aliases[i])
            if reference is not None:
                after.append(reference)
            continue
        markers.append(marker.copy())
        new_joins.append(exp.Join(this=source, side="LEFT", on=_in_join(assigned[i], aliases[i], chain)))
    return exp.From(this=sources[root]), new_joins, _opaque(markers, after)


def _in_join(conjuncts: list[exp.Expr], alias: str, chain: exp.Column | None) -> exp.Expr | None:
    """The ON of a LEFT JOIN bringing in table `alias`, with every condition on that table alone written
    `CASE WHEN <chain column> IS NULL THEN c ELSE c END`: it then reads both sides, so DuckDB keeps it a
    condition of the join, tested on each candidate match, instead of a filter below the join. The
    join's build side is then the whole table, never empty because no row matches the filter (an empty
    hash table lets DuckDB skip hashing and probing every row of the other side)."""
    if not conjuncts:
        return None
    written: list[exp.Expr] = []
    for conjunct in conjuncts:
        if chain is not None and _aliases(conjunct) == {alias}:
            test = exp.Is(this=chain.copy(), expression=exp.Null())
            conjunct = exp.Case(ifs=[exp.If(this=test, true=exp.Paren(this=conjunct))], default=conjunct.copy())
        written.append(conjunct)
    return exp.and_(*written, copy=False)


def _reference_column(policy: ProtectionPolicy, table: str, alias: str) -> exp.Column | None:
    dimensions = policy.tables[table].dimensions
    return exp.column(dimensions[0], table=alias, quoted=True) if dimensions else None


def _reference(policy: ProtectionPolicy, table: str, alias: str) -> exp.Expr | None:
    """`d IS NULL OR d IS NOT NULL` for a dimension d of the table: TRUE on every row, so the test after
    the joins reads that table and cannot be placed below the join that brings it in. None if the table
    has no dimension (then none of its columns can be filtered on either)."""
    column = _reference_column(policy, table, alias)
    if column is None:
        return None
    return exp.Paren(
        this=exp.or_(
            exp.Is(this=column, expression=exp.Null()),
            exp.Not(this=exp.Is(this=column.copy(), expression=exp.Null())),
            copy=False,
        )
    )


def _opaque(markers: list[exp.Expr], tests: list[exp.Expr]) -> exp.Expr | None:
    """One CASE: FALSE where some marker is NULL (no match), else every test. None if nothing to test."""
    if not markers and not tests:
        return None
    rest = exp.and_(*[exp.Paren(this=t) for t in tests], copy=False) if tests else exp.true()
    if not markers:
        return exp.Case(ifs=[exp.If(this=rest, true=exp.true())], default=exp.false())
    unmatched = exp.or_(*[exp.Is(this=exp.Paren(this=m), expression=exp.Null()) for m in markers], copy=False)
    return exp.Case(ifs=[exp.If(this=unmatched, true=exp.false())], default=rest)
