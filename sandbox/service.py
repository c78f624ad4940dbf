"""Run one buyer query: validate twice, rewrite, execute in a worker, suppress small groups, measure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from time import perf_counter
from typing import Any

from sqlglot import exp

from market import phases
from sandbox import cache, crosscheck, summary
from sandbox.algebra import DecimalMeasures, Interval, decimal_scale, exact, exact_decimal_sql
from sandbox.bits import bits_spans
from sandbox.bits import calendar_values as _calendar_values
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool, shared_pool
from sandbox.rewrite import GROUPS_TABLE, RESTRICT_COLUMN, THRESHOLD_COLUMN, Plan, build_plan
from sandbox.rules import MAX_NESTING
from sandbox.syntax import DIALECT
from sandbox.validator import check


@dataclass(frozen=True)
class TableFile:
    """One table of a product version, as stored: its Parquet file and what metering needs to know."""

    name: str
    path: Path
    row_count: int
    column_bytes: Mapping[str, int] = field(default_factory=dict)
    """Compressed bytes of each column in the Parquet file: what a scan of that column reads."""
    statistics: Mapping[str, Any] = field(default_factory=dict)
    """Computed when the version was built (products.storage.table_statistics); empty for versions
    built before: the worker then computes them on its first query of the version."""


@dataclass(frozen=True)
class Measurements:
    """What a query consumed, for metering. Quantities are integers.

    rows_scanned and bytes_scanned are computed from the query text and the version's Parquet
    footers, not from timings, so the same query on the same version always measures the same:
    every row of each table the query names, and the compressed bytes of every column it names.
    cpu_ms is what the worker spent; it varies from run to run and is informational only.
    """

    rows_scanned: int
    bytes_scanned: int
    cpu_ms: int
    result_rows: int
    suppressed_groups: int

    def buyer_dict(self) -> dict[str, int]:
        """What a buyer sees: everything but suppressed_groups, whose count depends on rows the policy
        hides, and with cpu_ms 0: the worker's CPU time is a precise clock on the work, which the rows a
        filter selects still move (docs/sandbox.md, "Timing"); the audit log keeps it."""
        return {k: (0 if k == "cpu_ms" else v) for k, v in self.as_dict().items() if k != "suppressed_groups"}

    def as_dict(self) -> dict[str, int]:
        return {
            "rows_scanned": self.rows_scanned,
            "bytes_scanned": self.bytes_scanned,
            "cpu_ms": self.cpu_ms,
            "result_rows": self.result_rows,
            "suppressed_groups": self.suppressed_groups,
        }


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    sql_run: str
    measurements: Measurements


def plan_query(sql: str, policy: ProtectionPolicy, sizes: Mapping[str, int] | None = None) -> Plan:
    """Both validators and the rewrite: the statements that will run for `sql`, or QueryRefused.

    `sizes`, the version's row counts (public), choose which table of an inner join is read whole
    (rewrite.whole_sides). Accepted plans are cached per process on (policy, sizes, SQL text):
    validation reads nothing else."""
    key = ("threshold", policy.model_dump_json(), tuple(sorted(sizes.items())) if sizes else None, sql)
    found: Plan | None = cache.plans.get(key)
    if found is not None:
        return found
    plan = _plan(sql, policy, sizes)
    cache.plans.put(key, plan, len(plan.template) + len(plan.output_sql) + len(sql) + 1024)
    return plan


def _plan(sql: str, policy: ProtectionPolicy, sizes: Mapping[str, int] | None = None) -> Plan:
    with crosscheck.syntax_first(sql):  # a text DuckDB cannot read: refused with DuckDB's syntax error
        checked = check(sql, policy)
        try:
            plan = build_plan(checked, policy, sizes)
            crosscheck.confirm(
                sql,
                plan.template,
                plan.output_sql,
                policy,
                {ref.alias: ref.table for ref in checked.refs},
                threshold=THRESHOLD_COLUMN,
                restrict=RESTRICT_COLUMN,
                groups_table=GROUPS_TABLE,
                constants=plan.constants_sql,
                seeded=plan.seeded,
            )
        except RecursionError as error:
            raise QueryRefused("sql_too_complex", depth="too many", limit=MAX_NESTING) from error
    return plan


def validate(sql: str, policy: ProtectionPolicy) -> Plan:
    """Alias of plan_query, for callers that only want to know whether `sql` is allowed."""
    return plan_query(sql, policy)


def _iso_duration(value: timedelta) -> str:
    """An INTERVAL as an ISO 8601 duration, e.g. P1DT3600S; exact to the microsecond."""
    micros = value // timedelta(microseconds=1)
    days, rest = divmod(abs(micros), 86_400_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
    return f"{'-' if micros < 0 else ''}P{days}DT{text}S"


_INF = float("inf")
_PLAIN = frozenset({int, str, bool, type(None)})
"""Types whose values are their own JSON value (`_jsonable` returns them unchanged): exact types only, so a
subclass still takes `_jsonable`'s way. Checked inline per cell, a call per cell saved (docs/benchmarks.md "lean13")."""


def _jsonable(value: Any) -> Any:
    """A DuckDB answer value as a JSON value; total: never raises for any value a worker returns
    (docs/sandbox.md, "Answer values")."""
    try:
        if type(value) is float:  # the commonest kind after the plain ones (_PLAIN): its checks below, first
            if value != value or value in (_INF, -_INF):
                return None
            return 0.0 if value == 0 else value
        if isinstance(value, Decimal):
            # A DECIMAL(38) holds up to 38 digits: `value % 1` at the default 28-digit precision raised
            # (an HTTP 500 after the worker had answered, red team red12). A whole one leaves as an exact
            # integer, any other as the nearest double (finite: a DECIMAL stays under 1e38).
            if not value.is_finite():
                return None
            whole = value.to_integral_value()
            return int(whole) if whole == value else float(value)
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        if isinstance(value, timedelta):
            return _iso_duration(value)
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return None  # NaN and infinities have no JSON form
        if isinstance(value, float) and value == 0:
            # -0.0 and 0.0 are equal to ORDER BY, so their rows keep the order they were read in (the file's);
            # told apart in JSON, they showed it (red team sbx-red15). One zero, whatever its sign.
            return 0.0
        if value is None or isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).hex()  # BLOB, as hex digits
    except (ArithmeticError, ValueError, TypeError):
        pass
    return str(value)  # any other DuckDB type (UUID, ...) as its text, never a failure after metering


def measure_scan(plan: Plan, tables: Mapping[str, TableFile]) -> tuple[int, int]:
    """Rows and bytes a query scans, from the tables and columns it names: deterministic, for billing."""
    rows = 0
    size = 0
    for name in plan.tables:
        table = tables[name]
        rows += table.row_count
        size += sum(table.column_bytes.get(c, 0) for c in plan.referenced_columns.get(name, []))
    return rows, size


BASE_SECONDS = 5.0
"""Time every query may take, whatever the product's size: ample for a small product's aggregate even
on a loaded machine (the deadline is wall-clock), and a quarter of the default 20 s timeout."""
SECONDS_PER_MILLION_ROWS = 1.0
"""Time added per million rows the query reads: several times what a scan and aggregate of them takes."""


SINGLE_STATEMENT_ROWS = 2_000_000
"""Products whose tables (as the query names them) hold at most this many rows, by the row counts stored
when the version was built, run as one statement (exact or folded, `strategy`); larger ones staged."""


STAGED_MARGIN = 2.5
"""Folded when the row bound a group is expected to reach is at least this many times k. On the demo
(k = 10), `GROUP BY month` (27) ran cheaper folded and `GROUP BY carrier` (20, skewed: some carriers
have a few dozen flights, which the recheck then counts) cheaper as the exact statement."""
FOLDED_MIN_SHARE = 1 / 4
"""Folded only when the WHERE is expected to keep at least this share of the rows: the fold scans the
table twice (its recheck reads every row), which costs more than the exact count over few rows."""
PAIRS_SHARE = 1 / 16
"""Two levels in place of the folded statement when its (keys, unit) pairs are expected to be at most this
share of the rows kept (_few_pairs): the demo's `GROUP BY origin` (3.6 %) ran 0.71x the folded CPU on one
thread, `GROUP BY month` (14.6 %) the same, 4 groups of 1 M rows with 2 % 0.91x and with 40 % 1.57x."""
OTHER_FILTER_SELECTIVITY = 1 / 3
"""The share of rows a WHERE conjunct other than `column = literal` or `column IN (...)` is taken to keep."""


def _bracket(value: int) -> int:
    """`value` rounded up to a power of two (as sandbox.engine brackets the row bound M)."""
    return 0 if value <= 0 else 1 << (value - 1).bit_length()


def estimate(plan: Plan, tables: Mapping[str, TableFile]) -> tuple[float, float] | None:
    """(the row bound one group of `plan` is expected to reach, the share of rows its WHERE keeps):
    _estimate without the groups."""
    found = _estimate(plan, tables)
    return None if found is None else found[:2]


def _estimate(plan: Plan, tables: Mapping[str, TableFile]) -> tuple[float, float, float] | None:
    """(the row bound one group of `plan` is expected to reach, the share of rows its WHERE is expected
    to keep, the groups expected). The bound: the expected rows whose unit is not NULL (the version's, times that share,
    over the estimated groups) divided by M, the most rows one unit has (sandbox.engine._methods,
    "rows"). None when the version's statistics do not say (versions built before them, joins, a key
    the summary gives no distinct count for).

    Read only from public data: the query text (its group keys and the equalities of its WHERE), the
    version's row counts, the row bound M (bracketed, as the threshold uses it) and the distinct
    counts buyers see in the version's quality summary (values at least k units hold). Never from the
    rows a filter selects.
    """
    if len(plan.units) != 1 or plan.min_group_size <= 0:
        return None
    unit = plan.units[0]
    table = tables.get(unit.table)
    if table is None:
        return None
    most_nulls = table.statistics.get("units", {}).get(unit.column)
    distinct: Mapping[str, int] = table.statistics.get("distinct", {})
    if not most_nulls or not distinct:
        return None
    most, nulls = (int(v) for v in most_nulls)
    ranges: Mapping[str, list[str]] = table.statistics.get("range", {})
    groups = 1.0
    plain: set[str] = set()
    periods = plan.key_periods or (None,) * len(plan.key_reads)
    for reads, period in zip(plan.key_reads, periods, strict=True):
        columns = {column for _, column in reads}
        if period is not None and len(columns) == 1:
            (column,) = columns
            span = _calendar_values(period, ranges.get(column))
            if span is not None:
                groups *= max(1, min(span, int(distinct.get(column, span))))
                continue
        plain |= columns
    for column in sorted(plain):
        if column not in distinct:
            return None
        if int(distinct[column]) <= 0:
            return 0.0, 1.0, 1.0  # no value of the key is held by k units: every group is small
        groups *= int(distinct[column])
    values: dict[str, int] = {}
    others = 0
    for read, count in plan.filters:
        if read is None or read[1] not in distinct:
            others += 1
        else:
            values[read[1]] = min(count, values.get(read[1], count))
    kept = OTHER_FILTER_SELECTIVITY**others
    for column, count in values.items():
        kept *= min(1.0, count / max(1, int(distinct[column])))
        # A key on a column the filter pins to n values has at most n values.
        if any(r == ((unit.table, column),) and p is None for r, p in zip(plan.key_reads, periods, strict=True)):
            groups = groups / max(1, int(distinct[column])) * min(count, max(1, int(distinct[column])))
    groups = max(1.0, groups)
    return max(0, table.row_count - nulls) * kept / groups / max(1, _bracket(most)), kept, groups


def bits_for(plan: Plan, tables: Mapping[str, TableFile]) -> tuple[tuple[int, int], ...] | None:
    """Per unit of `plan`, the span its bitmaps cover when the bits path applies and fits (sandbox.bits.bits_spans),
    from the version's build-time statistics and row counts only; else None."""
    if not plan.fast_threshold or any(u.table not in tables for u in plan.units):
        return None
    rows_scanned, _ = measure_scan(plan, tables)
    return bits_spans(plan, {name: t.statistics for name, t in tables.items()}, rows_scanned)


def summary_for(plan: Plan, tables: Mapping[str, TableFile]) -> str | None:
    """The summary rows that decide `plan`'s threshold exactly (sandbox.summary.lookup), from the query text and
    the version's build-time statistics only; None when the path does not apply (versions built before it,
    joins, keys that are not plain dimensions, a WHERE that is not `dimension = literal` conjuncts, cells the
    summary does not count, a set not summarised)."""
    if not plan.fast_threshold or len(plan.units) != 1:
        return None
    table = tables.get(plan.units[0].table)
    if table is None or not table.statistics.get("summary"):
        return None
    return summary.lookup(plan, table.statistics)


def cube_for(plan: Plan, tables: Mapping[str, TableFile]) -> str | None:
    """Stage 1 of `plan` read from the version's summary alone (sandbox.summary.cube), from the query text and the
    version's build-time statistics only; None when the cube does not hold every aggregate (then summary_for)."""
    if not plan.fast_threshold or len(plan.units) != 1:
        return None
    table = tables.get(plan.units[0].table)
    if table is None or not table.statistics.get("summary"):
        return None
    return summary.cube(plan, table.statistics)


def cube_groups(plan: Plan, tables: Mapping[str, TableFile]) -> int | None:
    """An estimate of the groups of `plan`'s cube from the distinct counts buyers see (sandbox.summary.cube_groups)."""
    table = tables.get(plan.units[0].table) if plan.units else None
    return summary.cube_groups(plan, table.statistics) if table is not None else None


def strategy(plan: Plan, tables: Mapping[str, TableFile]) -> str:
    """How `plan` runs: "cube" (engine.execute_cube), "summary" (engine.execute_summary), "bits"
    (engine.execute_bits), "two-level" (engine.execute_two_level), "single" (engine.execute_single), "folded"
    (engine.execute_folded) or "staged" (engine.execute_plan).

    First, wherever the version's build-time unit summary decides the query's threshold exactly (summary_for,
    from the query text and the version's statistics only): no distinct count at all (docs/sandbox.md,
    "Decided from build-time unit counts (pre16)"); and where the summary holds every aggregate of the query too,
    its whole stage 1 read from the summary (cube_for; docs/sandbox.md, "Answered from the build-time summary").

    First, for a join or a product of at most SINGLE_STATEMENT_ROWS, whenever its unit columns are integers
    of a recorded span and an upper bound on its groups keeps the bitmaps small (sandbox.bits.bits_spans):
    the exact statement with its distinct counts by bitmaps, one pass and no pairs
    hashed (docs/sandbox.md, "Bitmaps").

    By cost (docs/sandbox.md, "Choosing the strategy by cost"), from public data only: products larger
    than SINGLE_STATEMENT_ROWS run staged. Smaller ones run as one statement: the staged method folded
    into it when the groups are expected to be large (the row bound then passes them, and the exact
    count runs on few rows), the exact count over every row when they are expected to be small (it
    decides most of them anyway, and the bound would cost a second scan for nothing), or when the
    version's statistics do not say (versions built before them, joins). The exact statement counts
    in two levels (one grouping on (keys, unit), engine.execute_two_level) whenever every aggregate of
    the query combines exactly over it and it reads one table instance (Plan.partials): the same
    answer, one hash table over the (keys, unit) pairs in place of one per count(DISTINCT unit); and in place
    of the folded statement where those pairs are expected to be few on a product read on one thread
    (_few_pairs: the groups times the published unit count, against the rows kept).
    """
    if not plan.fast_threshold:
        return "staged"
    # Decided from build-time unit counts: no distinct count at all, whatever the product's size
    # (docs/sandbox.md, "Decided from build-time unit counts (pre16)").
    if cube_for(plan, tables) is not None:
        return "cube"
    if summary_for(plan, tables) is not None:
        return "summary"
    rows_scanned, _ = measure_scan(plan, tables)
    # Bitmaps in place of a second pass: the join again (staged, for a join), or the recheck or the hash of
    # (keys, unit) pairs of the one-statement paths. A large product of one table stays staged: its bound
    # and recheck cost what setting a bit per row does (1.05-1.15x on TPC-H's lineitem, docs/benchmarks.md).
    if (len(plan.units) > 1 or rows_scanned <= SINGLE_STATEMENT_ROWS) and bits_for(plan, tables):
        return "bits"
    estimated = _estimate(plan, tables)
    if rows_scanned > SINGLE_STATEMENT_ROWS:
        # Large products: staged, unless the groups are expected small and every aggregate combines in
        # two levels (then the staged bound would pass few groups and the recheck count nearly all rows).
        small = estimated is not None and estimated[0] < STAGED_MARGIN * plan.min_group_size
        return "two-level" if small and plan.partials is not None and plan.key_columns else "staged"
    # The exact statement, its counts in two levels where every aggregate combines exactly (Plan.partials).
    exact = "two-level" if plan.partials is not None else "single"
    if estimated is None:
        return exact
    bound, kept, groups = estimated
    if bound < STAGED_MARGIN * plan.min_group_size or kept < FOLDED_MIN_SHARE:
        return exact
    if exact == "two-level" and _few_pairs(plan, tables, rows_scanned, kept, groups):
        return exact
    return "folded"


def _few_pairs(plan: Plan, tables: Mapping[str, TableFile], rows_scanned: int, kept: float, groups: float) -> bool:
    """Whether the two-level statement's (keys, unit) pairs are expected to be few: at most the groups times
    the unit count (bracketed), at most a PAIRS_SHARE of the rows the WHERE keeps, on a product read on one
    DuckDB thread (threads_for). Its one scan then costs less than the folded statement's two (its recheck
    reads every row again): the demo's `GROUP BY origin`, 0.71x the folded CPU (docs/benchmarks.md,
    "perf-small"). With many pairs it costs more (1.6x at 40 % of the rows), so the folded one stays.
    From public data only: the row counts, the published distinct counts, and the unit count, which any
    buyer can ask (`SELECT count(DISTINCT unit) FROM t`); None for versions built before it: no change."""
    if rows_scanned > ONE_THREAD_ROWS or len(plan.units) != 1:
        return False
    unit = plan.units[0]
    table = tables.get(unit.table)
    count = table.statistics.get("unit_counts", {}).get(unit.column) if table is not None else None
    if count is None:
        return False
    return groups * _bracket(int(count)) <= PAIRS_SHARE * rows_scanned * kept


def single_statement(plan: Plan, tables: Mapping[str, TableFile]) -> bool:
    """Whether `plan` runs as one exact statement (engine.execute_single, execute_two_level, execute_summary)."""
    return strategy(plan, tables) in ("single", "two-level", "summary", "cube")


ONE_THREAD_ROWS = 1_000_000
"""Queries reading at most this many rows (by the version's row counts) run DuckDB on one thread: on small
data, a second thread costs more CPU (scheduling, merging its hash tables) than it saves in time."""


def threads_for(rows_scanned: int, limits: EngineLimits) -> int:
    """DuckDB threads for a query that reads `rows_scanned` rows: 1 up to ONE_THREAD_ROWS, else the configured
    maximum. From the version's public row counts only (never the rows a filter selects), so the thread
    count, like the budget, says nothing about hidden data."""
    return 1 if rows_scanned <= ONE_THREAD_ROWS else max(1, limits.threads)


def budget_seconds(rows_scanned: int, limits: EngineLimits) -> float:
    """A query's time and CPU budget from the size of what it reads, at most the configured timeout.

    It depends only on the tables the query names (their row counts), never on the rows themselves,
    so a timeout says nothing about hidden data; and a heavy query on a small product stops early,
    leaving the workers to others. The configured timeout stays the safety net for large products.
    """
    return min(limits.timeout_seconds, BASE_SECONDS + SECONDS_PER_MILLION_ROWS * rows_scanned / 1_000_000)


def run_query(
    sql: str,
    policy: ProtectionPolicy,
    tables: Mapping[str, TableFile],
    limits: EngineLimits,
    max_rows: int,
    pool: WorkerPool | None = None,
) -> QueryResult:
    """Validate `sql` against `policy` and run it over `tables`; raises QueryRefused or QueryFailed."""
    return execute(plan_query(sql, policy, row_counts(tables)), tables, limits, max_rows, pool)


def decimal_measures(template: str, tables: Mapping[str, TableFile]) -> DecimalMeasures:
    """Per (alias, column) of `template`'s tables, each DECIMAL column of at most 18 digits (algebra.decimal_scale;
    only measures are read inside an aggregate, as the validator's algebra admits): its scale and its declared
    bounds (as the version's build checked every value against), from the version's build-time statistics
    (`types`, `bounds`; products.storage.table_statistics). Public facts only: the column's type and the policy's
    bounds, never the values. Empty for versions built before `types` were recorded."""
    if not any(t.statistics.get("types") for t in tables.values()):
        return {}
    try:
        tree: exp.Expr = exp.maybe_parse(template, dialect=DIALECT)
    except Exception:
        return {}
    found: dict[tuple[str, str], tuple[int, Interval | None]] = {}
    for node in tree.find_all(exp.Table):
        table = tables.get(node.name)
        if table is None:
            continue
        types: Mapping[str, str] = table.statistics.get("types") or {}
        bounds: Mapping[str, list[float]] = table.statistics.get("bounds") or {}
        for column, kind in types.items():
            scale = decimal_scale(str(kind))
            if scale is None:
                continue
            low_high = bounds.get(column)
            interval = Interval(exact(low_high[0]), exact(low_high[1])) if low_high else None
            found[(node.alias_or_name, column)] = (scale, interval)
    return found


def summed_rows(template: str, tables: Mapping[str, TableFile]) -> int | None:
    """At most how many rows one group of `template` sums: the product of the row counts of the tables it reads
    (every join's output is at most that; the validator admits no subquery or CTE in FROM), public facts. None when
    it reads something that is not one of `tables` (branch redx15: exact sums only where their cast stays fast)."""
    try:
        tree: exp.Expr = exp.maybe_parse(template, dialect=DIALECT)
    except Exception:
        return None
    rows = 1
    for node in tree.find_all(exp.Table):
        table = tables.get(node.name)
        if table is None:
            return None
        rows *= max(table.row_count, 1)
    return rows


EXACT_PLANS_ENTRIES = 4096
EXACT_PLANS_SIZE = 32 * 1024 * 1024
_EXACT_PLANS: cache.BoundedCache[tuple[str, str | None]] = cache.BoundedCache(EXACT_PLANS_ENTRIES, EXACT_PLANS_SIZE)
"""exact_plan's rewritten texts (stage 1, its seeded form; ("", None) when nothing changes) per (template, seeded, the
version's files): a version's files and statistics never change. Only the texts are kept, never the Plan: two
plans with the same template may differ in everything else (the policy's k, the pass condition)."""


def exact_plan(plan: Plan, tables: Mapping[str, TableFile]) -> Plan:
    """`plan` with its sums and averages of DECIMAL measures exact (algebra.exact_decimal_sql; branch tpch15), in
    stage 1 and in its seeded form, and `partials` None (the two-level statement's per-pair DOUBLE partials would
    not be exact); `plan` itself when nothing changes. Every strategy then runs the same aggregates (the cube holds
    the same exact sums: sandbox.summary). From the query text and the version's statistics only."""
    if "SUM(" not in plan.template and "AVG(" not in plan.template:
        return plan
    key = (plan.template, plan.seeded or "", tuple(sorted((name, _resolve(t.path)) for name, t in tables.items())))
    texts = _EXACT_PLANS.get(key)
    if texts is None:
        measures = decimal_measures(plan.template, tables)
        rows = summed_rows(plan.template, tables) if measures else None
        template = exact_decimal_sql(plan.template, measures, rows) if rows is not None else plan.template
        if template == plan.template:
            texts = ("", None)
        else:
            seeded = exact_decimal_sql(plan.seeded, measures, rows or 1) if plan.seeded is not None else None
            texts = (template, seeded)
        _EXACT_PLANS.put(key, texts, 2 * len(plan.template) + 2 * len(plan.seeded or "") + 1024)
    if not texts[0]:
        return plan
    return replace(plan, template=texts[0], seeded=texts[1], partials=None)


def row_counts(tables: Mapping[str, TableFile]) -> dict[str, int]:
    """The row counts stored with a version (public: the catalogue shows them), for plan_query."""
    return {name: table.row_count for name, table in tables.items()}


_resolved: dict[Path, str] = {}


def _resolve(path: Path) -> str:
    """`path` made absolute with its links resolved, remembered: a version's files never move."""
    found = _resolved.get(path)
    if found is None:
        if len(_resolved) > 10_000:
            _resolved.clear()
        found = _resolved[path] = str(path.resolve())
    return found


def files_of(tables: Mapping[str, TableFile]) -> tuple[tuple[str, str], ...]:
    """(table name, resolved Parquet path) pairs, sorted: a Job's `tables`."""
    return _files(tables)


def _files(tables: Mapping[str, TableFile]) -> tuple[tuple[str, str], ...]:
    """The tables' files and, for a table whose version has one, its unit summary (sandbox.summary), as the
    view SUMMARY_PREFIX + name: part of the version, so of the warm connection's key and the cache's."""
    files = [(name, _resolve(t.path)) for name, t in tables.items()]
    for name, t in tables.items():
        described = t.statistics.get("summary")
        if described and described.get("file"):
            files.append((summary.SUMMARY_PREFIX + name, _resolve(t.path.parent / str(described["file"]))))
    return tuple(sorted(files))


def _seeds(tables: Mapping[str, TableFile]) -> tuple[tuple[tuple[str, ...], Any], ...]:
    """The build-time statistics of `tables`, as entries of the worker's statistics cache
    (sandbox.engine.TableStatistics' keys, after the version): read there instead of computed."""
    seeds: list[tuple[tuple[str, ...], Any]] = []
    for name, table in tables.items():
        if not table.statistics:
            continue
        # Units and join keys: the same fact of a column, (most rows per value, NULL rows), one cache entry.
        per_value = {**table.statistics.get("units", {}), **table.statistics.get("fanouts", {})}
        for column, (most, nulls) in per_value.items():
            seeds.append(((name, column), (int(most), int(nulls))))
        seeds.append(((name, "\0rows"), table.row_count))
        with_nulls = set(table.statistics.get("nulls", []))
        seeds.extend(((name, column, "\0nulls"), column in with_nulls) for column in table.column_bytes)
    return tuple(seeds)


def statistics_free(tables: Mapping[str, TableFile]) -> bool:
    """Whether every table's file was recorded statistics-free when the version was built
    (products.storage.table_statistics); versions built before record nothing: False."""
    return bool(tables) and all(table.statistics.get("statistics_free") is True for table in tables.values())


def _result_key(plan: Plan, files: tuple[tuple[str, str], ...], max_rows: int) -> tuple[Any, ...]:
    """The version's files, the mode and everything of the plan the worker reads (docs/sandbox.md).

    Not only the three statements: the privacy units (which column stage 1 counts), the cells, the
    pass condition and the single statement's texts are filled in by the worker, so two policies
    that differ only there (say, the unit column) give the same three statements (red team, session 5).
    """
    return (
        "threshold",
        files,
        plan.template,
        plan.decide_sql,
        plan.output_sql,
        plan.fast_threshold,
        max_rows,
        tuple(plan.units),
        tuple(plan.cells),
        plan.passes_sql,
        plan.counted_output_sql,
        plan.masked_columns_sql,
        plan.mask_sql,
        plan.restriction,
        plan.undecided,
        plan.constants_sql,
        plan.join_keys,
        tuple(plan.key_columns),
        plan.partials,
        plan.seeded,
    )


def result_key(plan: Plan, tables: Mapping[str, TableFile], max_rows: int) -> tuple[Any, ...]:
    """The result cache's key of `plan` over `tables` (also the key of sandbox.cache.flight)."""
    return _result_key(plan, _files(tables), max_rows)


def cached_result(plan: Plan, tables: Mapping[str, TableFile], max_rows: int) -> QueryResult | None:
    """The answer an identical query on the same version already got in this process, or None.

    The caller still meters, audits and charges it as a query (metering.service); cpu_ms is 0. The
    columns are `plan`'s: the key holds the statements, whose output columns are sandbox-named, so
    queries that differ only in their aliases share an entry, and the one that filled it must not name
    another buyer's columns (red team red13)."""
    found: QueryResult | None = cache.results.get(_result_key(plan, _files(tables), max_rows))
    if found is None:
        return None
    return replace(found, columns=plan.columns, measurements=replace(found.measurements, cpu_ms=0))


def execute(
    plan: Plan,
    tables: Mapping[str, TableFile],
    limits: EngineLimits,
    max_rows: int,
    pool: WorkerPool | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> QueryResult:
    """Run a validated `plan` over `tables` in a sandbox worker and measure it; raises QueryFailed
    (`query_cancelled` once `cancelled()` answers True while it runs).

    The answer is kept in this process's result cache (sandbox.cache) for identical queries."""
    files = _files(tables)
    result = _execute(plan, tables, files, limits, max_rows, pool, cancelled)
    if cache.results.max_entries > 0:  # off (MARKET_SANDBOX_RESULT_CACHE_ENTRIES=0): no key, no size to work out
        cache.results.put(_result_key(plan, files, max_rows), result, cache.size_of(result.rows))
    return result


def _execute(
    plan: Plan,
    tables: Mapping[str, TableFile],
    files: tuple[tuple[str, str], ...],
    limits: EngineLimits,
    max_rows: int,
    pool: WorkerPool | None,
    cancelled: Callable[[], bool] | None = None,
) -> QueryResult:
    started = perf_counter()
    plan = exact_plan(plan, tables)
    rows_scanned, bytes_scanned = measure_scan(plan, tables)
    chosen = strategy(plan, tables)
    phases.add("5b measure scan + strategy (in 5)", perf_counter() - started)
    job = Job(
        tables=files,
        plan=plan,
        max_rows=max_rows,
        seconds=budget_seconds(rows_scanned, limits),
        single=chosen == "single",
        folded=chosen == "folded",
        two_level=chosen == "two-level",
        bits=(bits_for(plan, tables) or ()) if chosen == "bits" else (),
        cube=(cube_for(plan, tables) or "") if chosen == "cube" else "",
        cube_groups=cube_groups(plan, tables) if chosen == "cube" else None,
        summary=(summary_for(plan, tables) or "") if chosen == "summary" else "",
        statistics_free=statistics_free(tables),
        seeds=_seeds(tables),
        threads=threads_for(rows_scanned, limits),
    )
    execution = (pool or shared_pool(limits)).run(job, cancelled)
    if execution.refused is not None:
        code, params = execution.refused
        raise QueryRefused(code, **params)
    if execution.too_many_rows:
        raise QueryFailed("too_many_rows", limit=max_rows)
    started = perf_counter()
    plain = _PLAIN
    rows = [[v if type(v) in plain else _jsonable(v) for v in row] for row in execution.rows]
    phases.add("5e rows to JSON values (in 5)", perf_counter() - started)
    return QueryResult(
        columns=plan.columns,
        rows=rows,
        sql_run=";\n".join(execution.statements),
        measurements=Measurements(
            rows_scanned=rows_scanned,
            bytes_scanned=bytes_scanned,
            cpu_ms=execution.cpu_ms,
            result_rows=len(execution.rows),
            suppressed_groups=execution.suppressed_groups,
        ),
    )
