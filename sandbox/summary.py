"""Decided from build-time unit counts (branch pre16, issue 12): the threshold of a small query read from a
per-version summary of exact distinct-unit counts, in place of counting (keys, unit) pairs on every query.

When a version's table is built (products.storage.table_statistics), for every set S of its dimensions of
size 0, 1 and 2 whose cardinalities' product is at most MAX_COMBINATIONS, `build` writes, per combination of
S's values (NULL a value of its own, as GROUP BY makes it), exactly what the exact statement's threshold
reads about the rows of that combination (sandbox.engine.execute_single, rewrite.threshold_sql):

- `__units`: count(DISTINCT unit) (NULL units are no unit), the group's `__lo0`;
- `__m<i>`: per measure i, count(DISTINCT unit) FILTER (WHERE TRY_CAST(measure AS DOUBLE) IS NOT NULL), the
  cell `__v<m>` of every aggregate over that measure (rewrite._cells: the rows where its argument is not NULL).

One Parquet file per version's table, beside it, written like every product file (statistics-free), never
listed in a catalogue nor shown: only the sandbox's worker reads it, through a view whose name a buyer
cannot write (SUMMARY_PREFIX: names with __ are refused).

A query whose shape the summary decides (`shape`: one table, group keys that are plain dimension columns or
calendar forms of a DATE one, a WHERE absent or a conjunction of `dimension = literal` where equality is
injective, predicates that read only the group keys, and ranges that are one calendar period of a DATE; every
cell over one measure or over a column without NULLs, keys plus pinned dimensions a recorded set; branch cal13
for dates, calendar keys and filters on keys: docs/sandbox.md, "Dates, calendar keys and filters on keys") runs
engine.execute_summary: the buyer's stage 1 as the plan wrote it, with no distinct count, LEFT JOINed on
its keys to `lookup`: the summary's rows of S (read whole, a fixed number per version and S), grouped on
the keys with the counts of the one combination the filter pins (FILTER (WHERE <the buyer's filter>)).
Then the same masking, decision and stage 2 as the exact statement. docs/sandbox.md, "Decided from
build-time unit counts (pre16)".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from sandbox.cache import BoundedCache
from sandbox.rewrite import KEPT_COLUMN, PLACEHOLDER, RESTRICT_COLUMN, Plan
from sandbox.syntax import DIALECT, to_sql

MAX_COMBINATIONS = 20_000
"""A set of dimensions is summarised when the product of its cardinalities (distinct values, NULL one of
them: products.storage `cardinality`) is at most this: the summary then holds at most this many rows per
set, so the file every summary query reads whole stays small (the demo's 29 sets: a few thousand rows).
A pair of a 100-value and a 200-value dimension fits; a date by a 300-value dimension does not."""
MAX_SET_SIZE = 2
"""Sets of at most this many dimensions: the demo's small queries group by one or two and filter on one."""

SUMMARY_PREFIX = "__summary__"
"""The worker's view of a table's summary is named SUMMARY_PREFIX + the table's name (buyers cannot write
a name with __)."""
SET_COLUMN = "__set"
UNITS_COLUMN = "__units"
ROWS_COLUMN = "__rows"
CUBE_VERSION = 1
"""The summary's description records `cube` = this when it holds the cube's columns (build_sql); a summary built
before (or by another layout) has none and its queries take the pre16 path."""

INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
STRING_TYPES = ("VARCHAR",)
NUMERIC_TYPES = (*INTEGER_TYPES, "FLOAT", "DOUBLE", "DECIMAL", "REAL")
"""Measure types whose TRY_CAST to DOUBLE is NULL exactly where the value is (the summary's `__m<i>` counts)."""
DATE_TYPES = ("DATE",)
SUMMARISED_TYPES = INTEGER_TYPES + STRING_TYPES + DATE_TYPES
"""Dimension types a summary covers: types whose equality is identity, as GROUP BY groups them (no floating
point: -0.0 and 0.0, NaN), and where `column = <literal of the matching kind>` holds for one value at most
(DATE: the literal `CAST('...' AS DATE)`, as the validator writes `DATE '...'`; branch cal13)."""

CALENDAR: dict[str, tuple[str, str]] = {
    "year": ("year", "CAST(DATE_TRUNC('YEAR', {x}) AS DATE)"),
    "month": ("month", "CAST(DATE_TRUNC('MONTH', {x}) AS DATE)"),
    "month-of-year": ("moy", "MAKE_DATE(2000, MONTH({x}), 1)"),
}
"""Calendar partitions of a DATE dimension d summarised as derived dimensions (branch cal13): per kind, the name
part of its summary column (`__<part>__<d>`) and the representative each row's d is mapped to (a DATE: the
first day of its year, of its month, or of its month in the year 2000). Every key form of the kind (KEY_FORMS)
f satisfies f(rep(d)) = f(d) and takes distinct values on distinct representatives, so a group on f(d) is
exactly the rows of one representative, and the lookup computes the key's value as f(rep)."""
KEY_FORMS: dict[str, tuple[str, str]] = {
    "YEAR({x})": ("year", "int"),
    "EXTRACT(YEAR FROM {x})": ("year", "int"),
    "TRY(DATE_TRUNC('YEAR', {x}))": ("year", "date"),
    "DATE_TRUNC('YEAR', {x})": ("year", "date"),
    "TRY(DATE_TRUNC('MONTH', {x}))": ("month", "date"),
    "DATE_TRUNC('MONTH', {x})": ("month", "date"),
    "MONTH({x})": ("month-of-year", "int"),
    "EXTRACT(MONTH FROM {x})": ("month-of-year", "int"),
}
"""The calendar key expressions, as the validator writes them (`year(d)`, `extract(year from d)`,
`date_trunc('year', d)`, `date_trunc('month', d)`, `month(d)`, `extract(month from d)`), each with its
partition and the kind of literal an equality with it pins one partition by (`year(d) = 1994`)."""


def derived_name(kind: str, column: str) -> str:
    """The summary column of the calendar partition `kind` of the DATE dimension `column` (a name with __, which
    no table column summarised has and no buyer can write)."""
    return f"__{CALENDAR[kind][0]}__{column}"


def derived_dimensions(dates: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Per derived dimension of the DATE dimensions `dates`: (kind, column)."""
    return {derived_name(kind, d): (kind, d) for d in dates for kind in CALENDAR}


def derived_cardinality(kind: str, extent: Sequence[str] | None) -> int | None:
    """An upper bound on the values of a calendar partition from the DATE column's [earliest, latest] (the
    version's `extent`), NULL counted as one; None when the column has no extent (no value)."""
    if not extent or extent[0] is None or extent[1] is None:
        return None
    try:
        first = [int(part) for part in str(extent[0])[:10].split("-")]
        last = [int(part) for part in str(extent[1])[:10].split("-")]
    except ValueError:
        return None
    if len(first) != 3 or len(last) != 3:
        return None
    years = last[0] - first[0] + 1
    months = years * 12 - (first[1] - 1) - (12 - last[1])
    return 1 + {"year": years, "month": months, "month-of-year": min(12, months)}[kind]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_EXTREMES: dict[str, tuple[str, str]] = {
    "TINYINT": ("-128", "127"),
    "SMALLINT": ("-32768", "32767"),
    "INTEGER": ("-2147483648", "2147483647"),
    "BIGINT": ("-9223372036854775808", "9223372036854775807"),
    "HUGEINT": ("-170141183460469231731687303715884105728", "170141183460469231731687303715884105727"),
    "UTINYINT": ("0", "255"),
    "USMALLINT": ("0", "65535"),
    "UINTEGER": ("0", "4294967295"),
    "UBIGINT": ("0", "18446744073709551615"),
    # '' is the least string; two U+10FFFF (F4 8F BF BF, the greatest UTF-8 sequence) fill the 8 bytes of
    # DuckDB's string statistics with the greatest prefix any string can have.
    "VARCHAR": ("''", "'\U0010ffff\U0010ffff'"),
    # DATE's finite range (the infinities past it make YEAR() fail).
    "DATE": ("'5877642-06-25 (BC)'", "'5881580-07-10'"),
    # The cube's sums and averages (branch cube13): -infinity and NaN (the greatest DOUBLE in DuckDB's order).
    "DOUBLE": ("'-inf'", "'nan'"),
}


def _decimal_extremes(kind: str) -> tuple[str, str]:
    """The least and greatest values of a DECIMAL(p, s) type (the cube's exact sums, branch tpch15), else NULLs."""
    matched = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", kind)
    if matched is None:
        return ("NULL", "NULL")
    width, scale = int(matched.group(1)), int(matched.group(2))
    largest = "9" * (width - scale) + ("." + "9" * scale if scale else "")
    return (f"-{largest}", largest)


def bounding_rows_sql(described: Sequence[tuple[Any, ...]]) -> str:
    """Two rows for the in-memory summary (engine.open_locked), one with every column's least value of its type
    and one with its greatest, `__set` -1 (no set: no lookup reads them). The table's statistics then span each
    type's whole range, so DuckDB's statistics propagation cannot fold a comparison of the lookup (`dest =
    'ZZZ'` outside the data's values, a count never reaching k) by what the version's rows hold."""
    rows = []
    for side in (0, 1):
        items = []
        for column in described:
            name, kind = str(column[0]), str(column[1]).upper()
            value = "-1" if name == SET_COLUMN else _EXTREMES.get(kind, _decimal_extremes(kind))[side]
            items.append(f"CAST({value} AS {kind}) AS {_q(name)}")
        rows.append("SELECT " + ", ".join(items))
    return " UNION ALL ".join(rows)


def set_id(dimensions: Sequence[str], chosen: Sequence[str]) -> int:
    """DuckDB's GROUPING(<dimensions>) of the grouping set `chosen`: bit (n - 1 - i) set when dimension i is
    not in it (the first dimension is the most significant bit)."""
    n = len(dimensions)
    return sum(1 << (n - 1 - i) for i, column in enumerate(dimensions) if column not in chosen)


def summary_sets(
    cardinality: Mapping[str, int], dimensions: Sequence[str], calendar: Collection[str] = ()
) -> list[tuple[str, ...]]:
    """The sets of `dimensions` summarised: every one of size 0 to MAX_SET_SIZE whose cardinalities' product is at
    most MAX_COMBINATIONS (a dimension without a recorded cardinality is left out) and that holds at most one of
    `calendar` (the DATE dimensions and their derived ones, branch cal13: a date by a date, or a year by a month of
    one date, is a rare key and would double the build's sets on a table of three dates)."""
    found: list[tuple[str, ...]] = []
    known = [d for d in dimensions if d in cardinality]
    for size in range(MAX_SET_SIZE + 1):
        for chosen in itertools.combinations(known, size):
            if sum(1 for column in chosen if column in calendar) > 1:
                continue
            product = 1
            for column in chosen:
                product *= max(1, int(cardinality[column]))
            if product <= MAX_COMBINATIONS:
                found.append(chosen)
    return found


EXACT_LIMIT = 2.0**53
"""A measure is summed exactly (`exact_measures`) when its values, as the validator's TRY_CAST to DOUBLE, are
integers whose absolute values sum to less than this: every partial sum, in any order, is then an integer a DOUBLE
holds."""


_TYPE_BOUNDS = {"TINYINT": 2**7, "SMALLINT": 2**15, "INTEGER": 2**31, "UTINYINT": 2**8, "USMALLINT": 2**16}
_TYPE_BOUNDS |= {"UINTEGER": 2**32, "BIGINT": 2**63, "UBIGINT": 2**64, "HUGEINT": 2**127}


def exact_measures(
    types: Mapping[str, str], measures: Sequence[str], bounds: Mapping[str, tuple[float, float]], rows: int
) -> list[str]:
    """The measures whose SUM and AVG the cube holds: an integer type, and the version's rows times the greatest
    absolute value any of them may hold (the declared bounds, which the build checked every value against:
    products.storage.check_bounds, else the type's range) less than EXACT_LIMIT. Each TRY_CAST to DOUBLE is then
    an integer (never -0.0) and every partial sum, in any order, one a DOUBLE holds: SUM over any subset of the
    rows is the same DOUBLE whatever the order they are added in, and AVG that sum over the count, so the build's
    per-combination value is the query's. From public facts only (the column's type, the row count, the policy's
    bounds), never the values: which path runs says nothing of a hidden row. Fractional measures: not held."""
    found = []
    for m in measures:
        by_type = _TYPE_BOUNDS.get(types.get(m, ""))
        if by_type is None:
            continue
        largest = float(by_type)
        if m in bounds:
            largest = min(largest, max(abs(float(bounds[m][0])), abs(float(bounds[m][1]))) + 1)
        if max(1, rows) * largest < EXACT_LIMIT:
            found.append(m)
    return found


def build_sql(
    source: str,
    unit: str,
    dimensions: Sequence[str],
    types: Mapping[str, str],
    measures: Sequence[str],
    sets: Sequence[tuple[str, ...]],
    exact: Sequence[str] = (),
    derived: Mapping[str, tuple[str, str]] | None = None,
    decimal: Sequence[str] = (),
) -> str:
    """The summary's rows: per set, its combinations' counts in two levels (one grouping on (S, unit), whose
    non-NULL units are the combination's distinct units, with a flag per measure that some row of the pair has
    it), `__set` the set's id (set_id), a dimension not in the set NULL. One UNION ALL of a small grouping per
    set: GROUPING SETS with a distinct count per set and measure held every set's hash tables at once (out of
    memory at 1 GB on the demo).

    The cube (branch cube13): per combination also `__rows` (count(*)), per measure `__n<i>` (count(m)) and, for
    the measures in `exact` (exact_measures), `__sum<i>`: the SUM of `TRY_CAST(m AS DOUBLE)`, the argument the
    validator writes, summed in the same two levels (per pair, then per combination), exact, so an integer kept as
    a BIGINT (a fifth of the DOUBLE's bytes in the file): cast back, the same DOUBLE as the buyer's own SUM over the
    combination's rows; the AVG is that DOUBLE over the count (`__n<i>`: an integer measure's TRY_CAST is NULL
    exactly where it is), as DuckDB's AVG finalises (checked equal by the property test).

    For the DECIMAL measures in `decimal` (of at most 18 digits: sandbox.algebra.decimal_scale; branch tpch15),
    `__dsum<i>`: the exact SUM of the DECIMAL values, per pair then per combination, a DECIMAL(38, s): the exact sum
    the query's `CAST(SUM(m) AS DOUBLE)` casts (sandbox.algebra.exact_decimal_sql), cast the same way by `cube`.

    A derived dimension (`derived`: name -> (calendar kind, DATE column); branch cal13) is its representative of
    the column (CALENDAR), a DATE."""
    derived = derived or {}

    def value(column: str) -> str:
        if column in derived:
            kind, base = derived[column]
            return CALENDAR[kind][1].format(x=_q(base))
        return _q(column)

    parts: list[str] = []
    flags = [f"BOOL_OR(TRY_CAST({_q(m)} AS DOUBLE) IS NOT NULL) AS {_q(f'__f{i}')}" for i, m in enumerate(measures)]
    partials = ['COUNT(*) AS "__r"']
    for i, m in enumerate(measures):
        partials.append(f"COUNT({_q(m)}) AS {_q(f'__k{i}')}")
        if m in exact:
            partials.append(f"SUM(TRY_CAST({_q(m)} AS DOUBLE)) AS {_q(f'__t{i}')}")
        if m in decimal:
            partials.append(f"SUM({_q(m)}) AS {_q(f'__d{i}')}")
    for chosen in sets:
        inner = ", ".join(
            [*(f"{value(c)} AS {_q(c)}" for c in chosen), f"{_q(unit)} AS {_q('__u')}", *flags, *partials]
        )
        grouped_inner = ", ".join([*(value(c) for c in chosen), _q(unit)])
        items = [f"{set_id(dimensions, chosen)} AS {_q(SET_COLUMN)}"]
        items += [
            _q(d) if d in chosen else f"CAST(NULL AS {'DATE' if d in derived else types[d]}) AS {_q(d)}"
            for d in dimensions
        ]
        items.append(f'COUNT("__u") AS {_q(UNITS_COLUMN)}')
        items += [f'COUNT("__u") FILTER (WHERE {_q(f"__f{i}")}) AS {_q(f"__m{i}")}' for i in range(len(measures))]
        items.append(f'CAST(SUM("__r") AS BIGINT) AS {_q(ROWS_COLUMN)}')
        for i, m in enumerate(measures):
            items.append(f"CAST(SUM({_q(f'__k{i}')}) AS BIGINT) AS {_q(f'__n{i}')}")
            if m in exact:
                items.append(f"CAST(SUM({_q(f'__t{i}')}) AS BIGINT) AS {_q(f'__sum{i}')}")
            if m in decimal:
                items.append(f"SUM({_q(f'__d{i}')}) AS {_q(f'__dsum{i}')}")
        outer_group = f" GROUP BY {', '.join(_q(c) for c in chosen)}" if chosen else ""
        pairs = f"SELECT {inner} FROM {source} GROUP BY {grouped_inner}"
        parts.append(f'SELECT {", ".join(items)} FROM ({pairs}) AS "__i"{outer_group}')
    return " UNION ALL ".join(parts)


@dataclass(frozen=True)
class Shape:
    """What the summary path reads from a plan's stage 1 text (`shape`)."""

    alias: str
    table: str
    keys: tuple[str, ...]
    """Per group key (`__g<i>`), the summary dimension it is: a dimension column, or a calendar partition of a
    DATE column (derived_name) for a calendar key (KEY_FORMS)."""
    pinned: tuple[tuple[str, str], ...]
    """Per conjunct of WHERE that pins a dimension not a key to one value: (dimension, the literal's kind:
    "string", "int" or "date"), checked against the dimension's type by `lookup`."""
    filter_sql: str | None
    """The WHERE as stage 1 writes it (without the restriction), to run over the summary's rows: the buyer's
    text with each calendar expression of a column read on that partition's representative (its value is
    the same there) and a range that is one calendar period read as its representative's equality."""
    cells: tuple[tuple[str, ...], ...]
    """Per cell: the (table, column) pairs its argument reads, when its condition is the measure form."""
    key_sql: tuple[str, ...] = ()
    """Per group key, its expression over the summary's rows (the buyer's key, a calendar one read on the
    representative)."""
    items: tuple[tuple[str, str], ...] | None = None
    """The cube (branch cube13): stage 1's columns before the threshold, in order: ("key", `__g<i>`) or (aggregate
    kind, measure column) per `__a<j>`, the kind one of "rows" (count(*)), "count" (count(m)), "sum", "avg" (over
    `TRY_CAST(m AS DOUBLE)`), "dsum", "davg" (a DECIMAL measure's exact sum and average, as
    sandbox.algebra.exact_decimal_sql writes them; branch tpch15), "units" (count(DISTINCT unit)); None when some
    column is none of them."""


SHAPES_ENTRIES = 4096
SHAPES_SIZE = 16 * 1024 * 1024
"""Bounds of the shapes remembered per API process: entries, and characters of their keys (a template may be
tens of KB: 4,096 of a 20,000-character query's held ~80 MB unbounded; red16p)."""
_SHAPES: BoundedCache[tuple[Shape | None]] = BoundedCache(SHAPES_ENTRIES, SHAPES_SIZE)
"""Every request thread of an API process reads and writes the shapes: sandbox.cache's locked LRU (unlocked, a
hit could be evicted by another thread before its move to the end: a KeyError, a 500; red16p). A shape is held
in a 1-tuple, so that a remembered None (no summary shape) is told from a miss."""


def shape(plan: Plan) -> Shape | None:
    """The summary shape of `plan`, from its text only, or None (remembered per template and unit)."""
    if len(plan.units) != 1 or plan.join_keys is not None or len(plan.tables) != 1:
        return None
    key = (plan.template, plan.units[0].sql)
    held = _SHAPES.get(key)
    if held is not None:
        return held[0]
    found = _shape(plan)  # two threads may parse one template, to the same shape
    _SHAPES.put(key, (found,), len(key[0]) + len(key[1]) + 256)
    return found


def _dimension(node: exp.Expr, alias: str) -> tuple[str, exp.Expr, str] | None:
    """The summary dimension `node` is: (its name, `node` read on the summary's rows, the kind of literal an
    equality with it pins one value by: "" for a plain column, whose type decides), or None.

    A plain column of the table, or a calendar key form (KEY_FORMS) of one: then the name is the partition's
    derived dimension and the expression reads the column's representative in place of the column."""
    if isinstance(node, exp.Column):
        if node.table != alias or not node.name or node.name.startswith("__"):
            return None
        return node.name, node, ""
    columns = list(node.find_all(exp.Column))
    if len(columns) != 1 or columns[0].table != alias or columns[0].name.startswith("__"):
        return None
    column = columns[0]
    text = to_sql(node)
    for form, (kind, literal) in KEY_FORMS.items():
        if text == form.format(x=to_sql(column)):
            name = derived_name(kind, column.name)
            replaced = exp.column(name, table=alias, quoted=True)
            read = node.copy().transform(lambda n, r=replaced: r.copy() if isinstance(n, exp.Column) else n)
            return name, read, literal
    return None


_DATE = exp.DataType.build("DATE")


def _literal_kind(node: exp.Expr) -> str | None:
    """The kind of a literal: "string", "int" or "date" (`CAST('...' AS DATE)`: the validator's DATE
    '...'), else None."""
    if isinstance(node, exp.Literal):
        return "string" if node.is_string else ("int" if node.is_int else None)
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        return "date" if node.to == _DATE else None
    return None


_UNSAFE = (exp.Subquery, exp.Select, exp.Window, exp.AggFunc, exp.Placeholder, exp.Exists)


READABLE = {"year": ("year", "month"), "month": ("month",), "month-of-year": ("month-of-year", "month")}
"""Per calendar partition, the partitions whose representative gives every key form of it its value: the year and
the month in the year of a date are those of the first day of its month (`YEAR(rep_month(d))` = `YEAR(d)`)."""


def _read_on(node: exp.Expr, alias: str, dimensions: Collection[str]) -> exp.Expr | None:
    """A calendar form `node` of a column read on the representative of one of `dimensions` that determines it
    (READABLE), or None."""
    columns = list(node.find_all(exp.Column))
    text = to_sql(node)
    for form, (kind, _) in KEY_FORMS.items():
        if len(columns) == 1 and columns[0].table == alias and text == form.format(x=to_sql(columns[0])):
            for finer in READABLE[kind]:
                name = derived_name(finer, columns[0].name)
                if name in dimensions:
                    column = exp.column(name, table=alias, quoted=True)
                    read: exp.Expr = node.copy().transform(
                        lambda n, c=column: c.copy() if isinstance(n, exp.Column) else n
                    )
                    return read
    return None


def _on_keys(node: exp.Expr, keys: Mapping[str, exp.Expr], alias: str, dimensions: Collection[str]) -> exp.Expr | None:
    """`node` read on the summary's rows when every column it reads lies inside one of the group keys'
    expressions (`keys`: a key's SQL to its expression over the summary) or inside a calendar form of a
    key's partition (`year(d)` under the key `extract(year FROM d)`: `dimensions`, the keys' summary
    dimensions): a pure function of the keys' values then (every function the validator admits is one: no
    subquery, window, aggregate or parameter), the same for every row of a group. None otherwise."""
    if any(isinstance(n, _UNSAFE) for n in node.walk()):
        return None
    failed = False

    def swap(n: exp.Expr) -> exp.Expr:
        nonlocal failed
        held = keys.get(to_sql(n)) if isinstance(n, (exp.Column, exp.Func)) else None
        if held is not None:
            return held.copy()
        if isinstance(n, exp.Func):
            read = _read_on(n, alias, dimensions)
            if read is not None:
                return read
        if isinstance(n, exp.Column):
            failed = True
        return n

    # Top-down: a key's whole expression is replaced before its own column is reached.
    read = node.copy().transform(swap)
    return None if failed else read


def _period(low: exp.Expr, high: exp.Expr) -> tuple[str, str] | None:
    """The calendar period `[low, high)` is exactly, as (kind, its first day): a year or a month."""
    texts = []
    for bound in (low, high):
        if _literal_kind(bound) != "date":
            return None
        text = bound.this.this
        digits = text[:4] + text[5:7] + text[8:]
        # ASCII digits only: str.isdigit holds for superscripts, which int() refuses (a ValueError, a 500; red13).
        if len(text) != 10 or text[4] != "-" or text[7] != "-" or not (digits.isascii() and digits.isdigit()):
            return None
        texts.append((int(text[:4]), int(text[5:7]), int(text[8:])))
    (y0, m0, d0), (y1, m1, d1) = texts
    if d0 != 1 or d1 != 1 or not (1 <= m0 <= 12 and 1 <= m1 <= 12) or y0 < 1 or y0 > 9998:
        return None
    first = f"{y0:04d}-{m0:02d}-01"
    if m0 == 1 and (y1, m1) == (y0 + 1, 1):
        return "year", first
    if (y1, m1) == ((y0, m0 + 1) if m0 < 12 else (y0 + 1, 1)):
        return "month", first
    return None


def _shape(plan: Plan) -> Shape | None:
    unit = plan.units[0]
    try:
        tree: exp.Expr = exp.maybe_parse(plan.template, dialect=DIALECT)
    except Exception:
        return None
    if not isinstance(tree, exp.Select) or tree.args.get("joins") or tree.args.get("having"):
        return None
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if isinstance(source, exp.From) else None
    if not isinstance(table, exp.Table) or table.name != unit.table or table.alias_or_name != unit.alias:
        return None
    alias = unit.alias
    keys: list[str] = []
    key_nodes: list[exp.Expr] = []
    on_keys: dict[str, exp.Expr] = {}
    for item in tree.expressions:
        name = item.alias if isinstance(item, exp.Alias) else ""
        if name.startswith("__g"):
            found = _dimension(item.this, alias)
            if found is None or name != f"__g{len(keys)}":
                return None
            keys.append(found[0])
            key_nodes.append(item.this)
            on_keys[to_sql(item.this)] = found[1]
    if len(keys) != len(plan.key_columns):
        return None
    for name in list(keys):
        # `GROUP BY year(d), month(d)`: each group one month of d, read on the month partition (no set of two
        # partitions of one date is built).
        base = name.removeprefix(f"__{CALENDAR['year'][0]}__")
        if name != base and derived_name("month-of-year", base) in keys:
            month = derived_name("month", base)
            for j, other in enumerate(keys):
                if other in (name, derived_name("month-of-year", base)):
                    keys[j] = month
                    on_month = _read_on(key_nodes[j], alias, (month,))
                    if on_month is None:
                        return None
                    on_keys[to_sql(key_nodes[j])] = on_month
    group = tree.args.get("group")
    grouped = [] if group is None else list(group.expressions)
    if len(grouped) != len(keys) or any(g != k for g, k in zip(grouped, key_nodes, strict=True)):
        return None
    where = tree.args.get("where")
    if where is None:
        return None
    condition = where.this
    restrict = exp.column(RESTRICT_COLUMN, quoted=True)
    pinned: list[tuple[str, str]] = []
    filter_sql = None
    if isinstance(condition, exp.And) and condition.expression == restrict:
        conjuncts: list[exp.Expr] = []
        stack = [condition.this]
        while stack:
            node = stack.pop()
            if isinstance(node, exp.Paren):
                stack.append(node.this)
            elif isinstance(node, exp.And):
                stack += [node.expression, node.this]
            else:
                conjuncts.append(node)
        read: list[exp.Expr] = []
        ranges: dict[str, dict[str, exp.Expr]] = {}
        for node in conjuncts:
            on = _on_keys(node, on_keys, alias, keys)
            if on is not None:  # reads only the keys: selects whole groups
                read.append(on)
                continue
            if isinstance(node, exp.EQ):
                column, literal = node.this, node.expression
                if _literal_kind(column) is not None:
                    column, literal = literal, column
                found = _dimension(column, alias)
                kind = _literal_kind(literal)
                if found is not None and kind is not None and (not found[2] or found[2] == kind):
                    pinned.append((found[0], kind))
                    read.append(exp.EQ(this=found[1], expression=literal.copy()))
                    continue
            if (
                isinstance(node, (exp.GTE, exp.LT))
                and isinstance(node.this, exp.Column)
                and _dimension(node.this, alias) is not None
                and _literal_kind(node.expression) == "date"
            ):
                bounds = ranges.setdefault(node.this.name, {})
                side = "low" if isinstance(node, exp.GTE) else "high"
                if side not in bounds:
                    bounds[side] = node.expression
                    continue
            return None
        for column, bounds in ranges.items():
            # `d >= DATE 'Y-M-01' AND d < <the next period's first day>`: one period of d (a DATE; `lookup`
            # checks the type), which the derived dimension's representative equals.
            period = _period(bounds["low"], bounds["high"]) if len(bounds) == 2 else None
            if period is None:
                return None
            name = derived_name(period[0], column)
            pinned.append((name, "date"))
            first = exp.Cast(this=exp.Literal.string(period[1]), to=_DATE.copy())
            read.append(exp.EQ(this=exp.column(name, table=alias, quoted=True), expression=first))
        filter_sql = " AND ".join(f"({to_sql(n)})" for n in read) if read else None
    elif condition != restrict:
        return None
    if PLACEHOLDER not in plan.template:
        return None
    cells = tuple(_cell_reads(cell.condition, cell.reads, alias) for cell in plan.cells)
    key_sql = tuple(to_sql(on_keys[to_sql(k)]) for k in key_nodes)
    items = _items(tree, alias, unit.column)
    return Shape(alias, unit.table, tuple(keys), tuple(pinned), filter_sql, cells, key_sql=key_sql, items=items)


_NAME = r'"((?:[^"]|"")+)"'


def _items(tree: exp.Select, alias: str, unit: str) -> tuple[tuple[str, str], ...] | None:
    """Shape.items: each of stage 1's columns matched, as text, against exactly what the validator writes."""
    column = rf"{re.escape(_q(alias))}\.{_NAME}"
    forms = [
        ("rows", r"COUNT\(\*\)"),
        ("count", rf"COUNT\({column}\)"),
        ("units", rf"COUNT\(DISTINCT {column}\)"),
        ("sum", rf"SUM\(TRY_CAST\({column} AS DOUBLE\)\)"),
        ("avg", rf"AVG\(TRY_CAST\({column} AS DOUBLE\)\)"),
        # Exact sums of DECIMAL measures (sandbox.algebra.exact_decimal_sql, branch tpch15).
        ("dsum", rf"CAST\(SUM\({column}\) AS DOUBLE\)"),
        ("davg", rf"\(CAST\(SUM\({column}\) AS DOUBLE\) / COUNT\({column}\)\)"),
    ]
    found: list[tuple[str, str]] = []
    aggregates = 0
    for item in tree.expressions:
        name = item.alias if isinstance(item, exp.Alias) else ""
        if name.startswith("__g"):
            found.append(("key", name))
            continue
        if name != f"__a{aggregates}":
            if to_sql(item) == PLACEHOLDER:
                continue
            return None
        aggregates += 1
        text = to_sql(item.this)
        for kind, form in forms:
            matched = re.fullmatch(form, text)
            if matched is not None and (kind != "davg" or matched.group(1) == matched.group(2)):
                measure = matched.group(1).replace('""', '"') if matched.groups() else ""
                if kind == "units" and measure != unit:
                    return None
                found.append((kind, measure))
                break
        else:
            return None
    return tuple(found)


def _cell_reads(condition: str, reads: tuple[tuple[str, str], ...] | None, alias: str) -> tuple[str, ...]:
    """The columns a cell's argument reads when its condition is NULL exactly where one of them is."""
    if reads is None:
        return ()
    if len(reads) == 1:
        column = reads[0][1]
        if condition == f"(TRY_CAST({_q(alias)}.{_q(column)} AS DOUBLE)) IS NOT NULL":
            return ("measure", column)
        if condition == f"({_q(alias)}.{_q(column)}) IS NOT NULL":
            return ("plain", column)  # count(m): the same rows as the measure form when m is a number
    return ("reads", *(c for _, c in reads))


def lookup(plan: Plan, statistics: Mapping[str, Any]) -> str | None:
    """The summary rows `plan`'s threshold reads, as one SELECT with the key columns `__g<i>`, `__lo0` and
    `__v<m>`, or None when the summary does not decide `plan` exactly (then another strategy runs).

    From the query text and the version's statistics only (`statistics`: products.storage.table_statistics):
    the recorded sets, the dimensions' types, the measures, the columns with NULLs."""
    decided = _decided(plan, statistics)
    if decided is None:
        return None
    found, set_number, values = decided
    alias = _q(found.alias)
    where = found.filter_sql or "TRUE"
    keys = [f"{sql} AS {_q(f'__g{i}')}" for i, sql in enumerate(found.key_sql)]
    counts = [f"MAX({_q(UNITS_COLUMN)}) FILTER (WHERE {where}) AS {_q('__lo0')}"]
    counts += [f"MAX({v}) FILTER (WHERE {where}) AS {_q(f'__v{m}')}" for m, v in enumerate(values)]
    grouped = f" GROUP BY {', '.join(found.key_sql)}" if found.keys else ""
    return (
        f"SELECT {', '.join(keys + counts)} FROM {_q(SUMMARY_PREFIX + found.table)} AS {alias} "
        f"WHERE {_q(SET_COLUMN)} = {set_number}{grouped}"
    )


def cube(plan: Plan, statistics: Mapping[str, Any]) -> str | None:
    """Stage 1 of `plan` read from the summary alone (branch cube13), or None where it cannot be: where `lookup`
    decides the threshold and every column of stage 1 is a key or an aggregate the summary holds for every
    combination (Shape.items: count(*), count(m), count(DISTINCT unit), and SUM and AVG of a measure recorded
    `exact`, whose per-combination DOUBLE is the query's whatever the order of its rows: exact_measures).

    Every group of such a query is exactly one combination of the summarised set S (its keys and its pinned
    columns), so each aggregate is MAX(<the combination's value>) FILTER (WHERE <the buyer's filter, verbatim>):
    the one combination that passes. EVERY key tuple of S's rows is a group (their number fixed per version and S,
    whatever the filter), with `__kept` TRUE exactly when a combination passes, as a group exists exactly when a
    row passes the WHERE: the seeded stage 1's column (rewrite.seeded_stage), so engine._exact_statement's seeded
    form masks the others' bounds and counts only the kept ones (_seeded_groups). Without keys the one row is a
    plain aggregate's: count(*) 0 and the others NULL when none passes. The same columns as the seeded exact
    stage 1 (`__g<i>`, `__a<j>`, `__kept`, `__lo0`, `__v<m>`); no row of the table is read."""
    summary = statistics.get("summary") or {}
    if summary.get("cube") != CUBE_VERSION:
        return None
    decided = _decided(plan, statistics)
    if decided is None:
        return None
    found, set_number, values = decided
    if found.items is None:
        return None
    measures: list[str] = list(summary.get("measures", []))
    exact = set(summary.get("exact", []))
    decimal = set(summary.get("decimal", []))
    alias = _q(found.alias)
    where = found.filter_sql or "TRUE"
    # The inner SELECT reads each of S's rows once: its keys, the buyer's filter once per row as a 0/1 INTEGER
    # (`__f`: `CAST((<filter>) IS TRUE AS INTEGER)`, a NULL verdict 0), and each summary column the aggregates read
    # (branch cube18). The outer one groups by the keys and takes every value by arithmetic on `__f`, never by a
    # branch per row (branch red18): a count (`__rows`, `__units`, `__n<i>`, a cell's count: never negative) is
    # MAX(<column> * "__f"), the passing combination's count or 0 when none passes; a sum (`__sum<i>`, `__dsum<i>`)
    # is SUM(<column> * "__f"), the passing combination's value, times 1 or NULL: NULL unless the passing
    # combination holds one (MAX("__f" * CAST(<column> IS NOT NULL AS INTEGER)) = 1 OR NULL, per group).
    # `MAX(CASE WHEN "__f" THEN <column> END)` (cube18) and `MAX(<column>) FILTER (WHERE ...)` without the optimizer
    # cost DuckDB more when some row of S passes than when none does (CASE's all-false fast path; FILTER's
    # selection), and so did a CASE per group: docs/sandbox.md, "Red team red18".
    passing = _q("__f")
    read: list[str] = []

    def taken(source: str) -> str:
        if source not in read:
            read.append(source)
        return source

    def count(source: str) -> str:
        return f"COALESCE(MAX({taken(source)} * {passing}), 0)"

    def held(source: str, value: str) -> str:
        # 1, or NULL unless the passing combination holds a value: a product per group, not a CASE (a CASE evaluates
        # its THEN only when some group passes).
        return f"{value} * CAST(MAX({passing} * CAST({taken(source)} IS NOT NULL AS INTEGER)) = 1 OR NULL AS INTEGER)"

    def total(source: str) -> str:
        return f"CAST(SUM({taken(source)} * {passing}) AS DOUBLE)"

    columns: list[str] = []
    aggregates = 0
    for kind, name in found.items:
        if kind == "key":
            columns.append(_q(name))
            continue
        if kind == "rows":
            value = count(_q(ROWS_COLUMN))
        elif kind == "units":
            value = count(_q(UNITS_COLUMN))
        elif name not in measures or name not in {"sum": exact, "avg": exact, "dsum": decimal, "davg": decimal}.get(
            kind, measures
        ):
            return None
        elif kind == "count":
            value = count(_q(f"__n{measures.index(name)}"))
        else:
            source = _q(f"__{'dsum' if kind in ('dsum', 'davg') else 'sum'}{measures.index(name)}")
            value = total(source)
            if kind in ("avg", "davg"):
                # At least 1 where the sum is held; 1 where it is not (no division by zero), the product NULL then.
                value += f" / CAST(GREATEST(MAX({taken(_q(f'__n{measures.index(name)}'))} * {passing}), 1) AS DOUBLE)"
                value = f"({value})"
            value = held(source, value)
        columns.append(f"{value} AS {_q(f'__a{aggregates}')}")
        aggregates += 1
    # Every row of S is a combination with at least one row: a key tuple is kept exactly when one of its passes.
    columns.append(f"MAX({passing}) = 1 AS {_q(KEPT_COLUMN)}")
    columns.append(f"{count(_q(UNITS_COLUMN))} AS {_q('__lo0')}")
    columns += [f"{count(v)} AS {_q(f'__v{m}')}" for m, v in enumerate(values)]
    keys = [f"{sql} AS {_q(f'__g{i}')}" for i, sql in enumerate(found.key_sql)]
    inner = ", ".join([*keys, f"CAST(({where}) IS TRUE AS INTEGER) AS {passing}", *read])
    grouped = f" GROUP BY {', '.join(_q(f'__g{i}') for i in range(len(found.key_sql)))}" if found.keys else ""
    return (
        f"SELECT {', '.join(columns)} FROM (SELECT {inner} FROM {_q(SUMMARY_PREFIX + found.table)} AS {alias} "
        f"WHERE {_q(SET_COLUMN)} = {set_number}) AS {_q('__c')}{grouped}"
    )


def cube_groups(plan: Plan, statistics: Mapping[str, Any]) -> int | None:
    """An estimate of the groups of `plan`'s cube (`cube`) from what buyers see: the product of its keys' distinct
    counts in the quality summary (`distinct`: over values at least k units hold, products.service._statistics; a
    calendar key's from its DATE column's `range` there, derived_cardinality), 1 without keys; None when a key has
    none. Never the whole cardinalities: which statement runs shows in its time, and a whole count tells how many
    rare values a dimension holds (branch every19). Only the statement's cost depends on it, never its answer (a
    set may hold more groups, its rare values'; at most summary.MAX_COMBINATIONS)."""
    found = shape(plan)
    if found is None:
        return None
    distinct: Mapping[str, int] = statistics.get("distinct") or {}
    shown: Mapping[str, Any] = statistics.get("range") or {}
    derived = derived_dimensions(list(shown))
    bound = 1
    for key in found.keys:
        if key in distinct:
            count: int | None = int(distinct[key])
        elif key in derived:
            kind, column = derived[key]
            count = derived_cardinality(kind, shown.get(column))
        else:
            count = None
        if count is None:
            return None
        bound *= max(1, count)
    return bound


def _decided(plan: Plan, statistics: Mapping[str, Any]) -> tuple[Shape, int, list[str]] | None:
    """(the shape, S's grouping id, per cell the summary's count column) when the summary decides `plan`'s
    threshold exactly (`lookup`), else None."""
    found = shape(plan)
    summary = statistics.get("summary")
    if found is None or not summary:
        return None
    types: Mapping[str, str] = summary.get("types", {})
    measures: list[str] = list(summary.get("measures", []))
    measure_types: Mapping[str, str] = summary.get("measure_types", {})
    nulls = set(statistics.get("nulls", []))
    wanted = tuple(sorted(set(found.keys) | {c for c, _ in found.pinned}))
    ids = {tuple(sorted(columns)): int(number) for columns, number in summary.get("sets", [])}
    if wanted not in ids:
        return None
    matching = {"string": STRING_TYPES, "int": INTEGER_TYPES, "date": DATE_TYPES}
    for column, literal in found.pinned:
        if column.startswith("__"):
            continue  # a calendar partition's: its form and literal kind were matched by `shape`
        if types.get(column, "") not in matching[literal]:
            return None  # a comparison that may hold for several values (a cast of the column): not exact
    values: list[str] = []
    for reads in found.cells:
        numeric = str(measure_types.get(reads[1], "") if reads[1:] else "").startswith(NUMERIC_TYPES)
        if reads[1:] and reads[1] in measures and (reads[0] == "measure" or (reads[0] == "plain" and numeric)):
            values.append(_q(f"__m{measures.index(reads[1])}"))
        elif reads[1:] and not any(c in nulls for c in reads[1:]):
            values.append(_q(UNITS_COLUMN))  # never NULL in this version: the cell is the group itself
        else:
            return None
    return found, ids[wanted], values


def stage_sql(plan: Plan, template: str, found: str) -> str:
    """Stage 1 of the summary path: `template` (the plan's stage 1, seeded or not) with no threshold column,
    LEFT JOINed on its keys (as GROUP BY matches them) to the summary's counts `found` (`lookup`); a group
    the summary has no row for counts 0 (only the seeds' groups, whose bounds are masked anyway)."""
    # A column of its own name in place of the threshold columns (the audit's SQL shows no placeholder left).
    data = template.replace(PLACEHOLDER, 'TRUE AS "__counted"').replace(f'"{RESTRICT_COLUMN}"', "TRUE")
    counts = ['COALESCE("__c"."__lo0", 0) AS "__lo0"']
    counts += [f'COALESCE("__c"."__v{m}", 0) AS "__v{m}"' for m in range(len(plan.cells))]
    on = " AND ".join(f'"__d"."{c}" IS NOT DISTINCT FROM "__c"."{c}"' for c in plan.key_columns)
    joined = f'LEFT JOIN ({found}) AS "__c" ON {on}' if on else f'CROSS JOIN ({found}) AS "__c"'
    return f'SELECT "__d".* EXCLUDE ("__counted"), {", ".join(counts)} FROM ({data}) AS "__d" {joined}'
