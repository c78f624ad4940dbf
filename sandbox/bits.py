"""Exact distinct units by bitmaps: `BIT_COUNT(BITSTRING_AGG(unit, lo, hi))` per group (branch perf-tpch).

When a privacy-unit column holds integers within a span known when the version was built (`lo` and `hi`,
its least and greatest value in the version's file, products.storage.table_statistics "spans"), each
group's distinct units are the set bits of one bitmap of `hi - lo + 1` bits: DuckDB's BITSTRING_AGG sets
the bit `unit - lo` for every row whose unit is not NULL (NULL units set nothing, as count(DISTINCT unit)
skips them), and BIT_COUNT counts them. That is count(DISTINCT unit) exactly, with no hash table of
(group, unit) pairs: per row one bit is set in the group's bitmap. A cell's threshold is the same
bitmap over the rows where its argument is not NULL (a FILTER), and a group with no such row counts 0.

The bitmaps live outside DuckDB's buffer manager (each aggregate state allocates its own), one per group
per thread plus the finalised copy, so the path is chosen (sandbox.service.strategy) only when an UPPER
bound on the groups, from the version's public statistics, times the bitmaps' bytes fits BITS_MEMORY:
the memory it can take is then bounded whatever the rows hold. docs/sandbox.md, "Bitmaps".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from sandbox.rewrite import Plan, UnitColumn

BITS_MEMORY = 96 * 1024 * 1024
"""Most bytes of bitmaps one query's bits path may hold (every group's, every thread's, the finalised copy)."""
BITS_BYTES_PER_ROW = 4.0
"""The bitmaps' bytes may be at most this many per row the query reads (or BITS_FLOOR): past that, zeroing,
merging and counting bitmaps of groups costs more than the hash table of pairs it replaces."""
BITS_FLOOR = 1024 * 1024
"""Bitmap bytes always allowed (small products, a group or two)."""
BITS_COPIES = 5
"""Copies of each group's bitmap counted against BITS_MEMORY: one per DuckDB thread (up to 4; EngineLimits'
default is 2) and the finalised one."""

_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "HUGEINT"}
)
"""Unit column types BITSTRING_AGG takes, whose span the build records."""

_CALENDAR = {"month-of-year": 12, "quarter-of-year": 4, "day-of-month": 31, "day-of-week": 7}


def calendar_values(period: str, bounds: Sequence[Any] | None) -> int | None:
    """How many values a calendar part of a date column takes (Plan.key_periods) over the range `bounds`
    ([earliest, latest] as ISO text), or None when the range does not say. At most that many, never fewer:
    the strategy's estimate reads it over the published range (sandbox.service.estimate), the bitmaps'
    memory bound over the column's whole range (_group_bound)."""
    if period in _CALENDAR:
        return _CALENDAR[period]
    try:
        low, high = (date.fromisoformat(str(b)[:10]) for b in bounds or ())
    except ValueError:
        return None
    months = (high.year - low.year) * 12 + high.month - low.month
    spans = {
        "year": high.year - low.year + 1,
        "quarter": months // 3 + 2,
        "month": months + 1,
        "week": (high - low).days // 7 + 2,
        "day": (high - low).days + 1,
    }
    return spans.get(period)


def integer_type(column_type: str) -> bool:
    """Whether a unit column of DuckDB type `column_type` can be counted by bitmaps."""
    return column_type.upper() in _INTEGER_TYPES


def _bound(unit: UnitColumn, span: tuple[int, int], condition: str | None) -> str:
    lo, hi = span
    where = f" FILTER (WHERE {condition})" if condition is not None else ""
    return f"COALESCE(BIT_COUNT(BITSTRING_AGG({unit.sql}, {int(lo)}, {int(hi)}){where}), 0)"


def threshold_sql(plan: Plan, spans: Sequence[tuple[int, int]], whole: Sequence[bool] = ()) -> str:
    """The threshold columns of stage 1 (`__lo<i>`, `__v<m>`) as rewrite.threshold_sql's "exact" method
    writes them, each count(DISTINCT unit) replaced by its bitmap's bit count over the unit's span."""
    columns = [_bound(unit, spans[i], None) + f' AS "__lo{i}"' for i, unit in enumerate(plan.units)]
    for m, cell in enumerate(plan.cells):
        condition = None if m < len(whole) and whole[m] else cell.condition
        bounds = [_bound(unit, spans[i], condition) for i, unit in enumerate(plan.units)]
        least = bounds[0] if len(bounds) == 1 else f"LEAST({', '.join(bounds)})"
        columns.append(f'{least} AS "__v{m}"')
    return ", ".join(columns)


def _group_bound(plan: Plan, cardinality: Mapping[str, Mapping[str, int]], ranges: Mapping[str, Any]) -> int | None:
    """An upper bound on the groups stage 1 can form, from public statistics only, or None.

    Per group key, the values it can take: a calendar part with few values (month of year: 12), the years,
    quarters or months of a date column's whole range (and NULL), else the product of the distinct values
    (NULL counted as one) of every column it reads. A seeded stage 1 groups on its `__kept` flag too:
    twice. Rounded up to a power of two."""
    groups = 1
    periods = plan.key_periods or (None,) * len(plan.key_reads)
    for reads, period in zip(plan.key_reads, periods, strict=True):
        values = 1
        for table, column in reads:
            counted = cardinality.get(table, {}).get(column)
            if counted is None:
                return None
            values *= max(1, int(counted))
        spanned = calendar_values(period, ranges.get(reads[0][0], {}).get(reads[0][1])) if period else None
        if spanned is not None:
            values = min(values, spanned + 1)  # and NULL
        groups *= values
    return _bracket(groups * (2 if plan.seeded is not None else 1))


def _bracket(value: int) -> int:
    """`value` rounded up to a power of two: the choice then tells a buyer at most the bracket of the bound."""
    return 0 if value <= 0 else 1 << (value - 1).bit_length()


def bits_spans(
    plan: Plan,
    statistics: Mapping[str, Mapping[str, Any]],
    rows_scanned: int,
) -> tuple[tuple[int, int], ...] | None:
    """Per unit of `plan`, its span (lo, hi), when the bits path applies and fits; else None.

    `statistics`: per table, its build-time statistics (sandbox.service.TableFile.statistics). Needs a span
    for every unit and an upper bound on the groups (_group_bound) from the dimensions' whole distinct counts
    ("cardinality") and whole ranges ("extent"); then the bitmaps, BITS_COPIES copies of one per unit and
    per cell with its own count for every group, must fit BITS_MEMORY and BITS_BYTES_PER_ROW."""
    if not plan.fast_threshold or not plan.units:
        return None
    spans: list[tuple[int, int]] = []
    for unit in plan.units:
        found = statistics.get(unit.table, {}).get("spans", {}).get(unit.column)
        if not found:
            return None
        lo, hi = (int(v) for v in found)
        if hi < lo:
            return None
        spans.append((lo, hi))
    cardinality = {t: s.get("cardinality", {}) for t, s in statistics.items()}
    extent = {t: s.get("extent", {}) for t, s in statistics.items()}
    groups = _group_bound(plan, cardinality, extent)
    if groups is None:
        return None
    nulls = {(t, c) for t, s in statistics.items() for c in s.get("nulls", [])}
    counted_cells = sum(1 for cell in plan.cells if cell.reads is None or any(r in nulls for r in cell.reads))
    per_group = sum((hi - lo + 1 + 7) // 8 for lo, hi in spans) * (1 + counted_cells)
    needed = groups * per_group * BITS_COPIES
    if needed > BITS_MEMORY or needed > max(BITS_FLOOR, rows_scanned * BITS_BYTES_PER_ROW):
        return None
    return tuple(spans)
