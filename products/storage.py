"""Product files: turn an uploaded CSV or Parquet file into an immutable Parquet table of a version.

Conversion runs in DuckDB, which streams the file: nothing is read whole into memory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb

from market.errors import Unprocessable
from products import footer
from sandbox import summary as unit_summaries
from sandbox.algebra import decimal_scale
from sandbox.policy import MeasureBounds

_NUMERIC_TYPES: tuple[str, ...] = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT")
_NUMERIC_TYPES += ("UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")

PRODUCT_PARQUET = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880, WRITE_BLOOM_FILTER false"
"""DuckDB's COPY options for a product version's table (write_product_parquet): no Bloom filters, and no
page index (DuckDB's default)."""

SERVER_PATH = re.compile(r"(?<![\w.])/(?:[^\s\"'/]+/)+[^\s\"']*")
"""An absolute path left in a DuckDB message: the server's layout is none of the caller's business."""
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
WORKBOOK_SUFFIXES = (".xlsx", ".xls", ".ods")
"""Spreadsheets: stored as the CSV of their one sheet (products.pipeline.workbooks), so read as CSV."""
NULL_STRINGS = ("", "NA", "N/A", "NULL", "null")
"""Spellings of a missing value in CSV files as government systems and R/pandas exports write them."""


@dataclass(frozen=True)
class StoredColumn:
    name: str
    type: str
    bytes: int


@dataclass(frozen=True)
class StoredTable:
    name: str
    path: Path
    row_count: int
    columns: list[StoredColumn]

    def describe(
        self, roles: dict[str, str], bounds: Mapping[str, tuple[float, float]] | None = None
    ) -> dict[str, Any]:
        """The JSON kept on the version row, with the statistics the sandbox needs (`statistics`); `bounds`, the
        measures' declared (min, max) the build checked (check_bounds), for the summary's cube."""
        return {
            "name": self.name,
            "file": self.path.name,
            "row_count": self.row_count,
            "columns": [
                {"name": c.name, "type": c.type, "role": roles.get(c.name, "hidden"), "bytes": c.bytes}
                for c in self.columns
            ],
            "statistics": table_statistics(self.path, [c.name for c in self.columns], roles, bounds),
        }


def table_statistics(
    path: Path, columns: list[str], roles: dict[str, str], bounds: Mapping[str, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """Facts the sandbox's threshold needs about a version's table, computed once when it is built:

    - `units`: per privacy-unit column, [most rows any one unit has, rows whose unit is NULL] (the
      row bound, sandbox.engine._methods);
    - `unit_counts`: per privacy-unit column, its distinct non-NULL units (what any buyer can ask:
      `SELECT count(DISTINCT unit) FROM t`), for the strategy's estimate of (keys, unit) pairs
      (sandbox.service.strategy);
    - `fanouts`: per dimension (the columns a join may compare), [most rows sharing one value, rows whose
      value is NULL]: the join fan-out bound (sandbox.fanout), the threshold's row bound under a join;
    - `nulls`: the columns that hold a NULL anywhere (sandbox.engine.whole_cells);
    - `statistics_free`: the file's footer holds no value statistics, Bloom filter or page index
      (write_product_parquet), so the sandbox may let DuckDB plan with statistics again (it has none
      of the data's): sandbox.engine.open_locked. Absent (versions built before): the full switches;
    - `summary`: for a table with one privacy-unit column, the build-time unit counts per combination of
      dimension values (unit_summary; sandbox.summary), written to a file beside the table's;
    - `types`: every column's DuckDB type, and `bounds`: the measures' declared [min, max] the build checked every
      value against (check_bounds): which sums of DECIMAL measures run exactly (sandbox.service.exact_plan, branch
      tpch15). Absent (versions built before): DOUBLE sums, as before.

    Facts of the version, never of a query; the worker would otherwise compute them on its first query
    of the version (sandbox.engine.TableStatistics), on the query's time.
    """
    units = [c for c in columns if roles.get(c) == "privacy_unit"]
    keys = [c for c in columns if roles.get(c) == "dimension"]
    source = f"read_parquet({_lit(str(path))})"
    with duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "1GB"}) as connection:
        counted = ", ".join(f"count({_q(c)})" for c in columns)
        row = connection.execute(f"SELECT count(*){', ' + counted if counted else ''} FROM {source}").fetchone()
        total = int(row[0]) if row else 0
        nulls = [c for c, n in zip(columns, (row or ())[1:], strict=False) if int(n) < total]
        per_value: dict[str, list[int]] = {}
        counts: dict[str, int] = {}
        for column in units + keys:
            found = connection.execute(
                "SELECT coalesce(max(n) FILTER (WHERE v IS NOT NULL), 0), "
                "coalesce(sum(n) FILTER (WHERE v IS NULL), 0), count(v) "
                f"FROM (SELECT {_q(column)} AS v, count(*) AS n FROM {source} GROUP BY 1)"
            ).fetchone()
            per_value[column] = [int(found[0]), int(found[1])] if found else [0, 0]
            counts[column] = int(found[2]) if found else 0
        plain = statistics_free(connection, path)
        described = connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        types = {str(r[0]): str(r[1]).upper() for r in described}
        shape = _bits_statistics(connection, source, columns, roles)
        summary = unit_summary(
            connection, path, columns, roles, shape["cardinality"], bounds, total, shape.get("extent", {})
        )
    return {
        "units": {c: per_value[c] for c in units},
        "unit_counts": {c: counts[c] for c in units},
        "fanouts": {c: per_value[c] for c in keys},
        "nulls": nulls,
        "statistics_free": plain,
        "types": {c: types[c] for c in columns if c in types},
        "bounds": {c: [low, high] for c, (low, high) in (bounds or {}).items() if c in types},
        **shape,
        **({"summary": summary} if summary else {}),
    }


def summary_path(path: Path) -> Path:
    """Where the unit summary of the table at `path` is kept: beside it, `<table>.summary.parquet` (a table's
    name has no dot, so no table's file is named so)."""
    return path.with_name(f"{path.stem}.summary.parquet")


def unit_summary(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    columns: list[str],
    roles: dict[str, str],
    cardinality: dict[str, int],
    bounds: Mapping[str, tuple[float, float]] | None = None,
    rows: int = 0,
    extent: dict[str, list[str]] | None = None,
) -> dict[str, Any] | None:
    """Write the table's unit summary (sandbox.summary) beside `path` and describe it, or None when the table
    has not exactly one privacy-unit column.

    The description (in the statistics JSON, read by sandbox.summary.lookup): `file` (its name beside the
    table's), `sets` ([[dimensions], grouping id] per summarised set), `types` (the summarised dimensions'
    DuckDB types), `derived` (per calendar partition of a DATE dimension summarised, branch cal13: [kind,
    column]; its type DATE), `measures` (in the order of the `__m<i>` columns), `rows`, `bytes`; `cube` (the
    layout of the cube's columns, sandbox.summary.CUBE_VERSION) and `exact` (the measures whose SUM and AVG it
    holds, sandbox.summary.exact_measures), `decimal` (the DECIMAL measures whose exact sums it holds, branch tpch15).

    A calendar partition's cardinality is bounded from the column's `extent` (its years or months, NULL one
    value), so the same MAX_COMBINATIONS rule decides its sets."""
    units = [c for c in columns if roles.get(c) == "privacy_unit"]
    if len(units) != 1:
        return None
    source = f"read_parquet({_lit(str(path))})"
    types = {str(r[0]): str(r[1]).upper() for r in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    # A column named with __ (which no buyer can write in a query) is left out: it could clash with the
    # summary's own columns.
    dimensions = [
        c
        for c in columns
        if roles.get(c) == "dimension" and types.get(c) in unit_summaries.SUMMARISED_TYPES and not c.startswith("__")
    ]
    measures = [c for c in columns if roles.get(c) == "measure" and not c.startswith("__")]
    if units[0].startswith("__"):
        return None
    dates = [c for c in dimensions if types.get(c) in unit_summaries.DATE_TYPES]
    derived: dict[str, tuple[str, str]] = {}
    bounded = dict(cardinality)
    for name, (kind, column) in unit_summaries.derived_dimensions(dates).items():
        count = unit_summaries.derived_cardinality(kind, (extent or {}).get(column))
        if count is not None:
            derived[name] = (kind, column)
            bounded[name] = count
    every = dimensions + list(derived)
    sets = unit_summaries.summary_sets(bounded, every, {*dates, *derived})
    target = summary_path(path)
    partial = target.with_suffix(".partial")
    try:
        exact = unit_summaries.exact_measures(types, measures, bounds or {}, rows)
        decimal = [m for m in measures if decimal_scale(types.get(m, "")) is not None]
        write_product_parquet(
            connection,
            unit_summaries.build_sql(source, units[0], every, types, measures, sets, exact, derived, decimal),
            partial,
        )
    except duckdb.Error:
        # The summary only makes some queries cheaper: a table it cannot be built for (out of memory on a huge
        # one) gets none, and its queries run the other strategies, as a version built before it.
        partial.unlink(missing_ok=True)
        return None
    os.replace(partial, target)
    row = connection.execute(
        f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({_lit(str(target))})"
    ).fetchone()
    return {
        "file": target.name,
        "sets": [[list(chosen), unit_summaries.set_id(every, chosen)] for chosen in sets],
        "types": {c: types[c] for c in dimensions} | {c: "DATE" for c in derived},
        "derived": {c: list(v) for c, v in derived.items()},
        "measures": measures,
        "measure_types": {c: types.get(c, "") for c in measures},
        "cube": unit_summaries.CUBE_VERSION,
        "exact": exact,
        "decimal": decimal,
        "rows": int(row[0]) if row else 0,
        "bytes": target.stat().st_size,
    }


_INTEGER_UNITS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_DATED = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")


def _bits_statistics(
    connection: duckdb.DuckDBPyConnection, source: str, columns: list[str], roles: dict[str, str]
) -> dict[str, Any]:
    """What sandbox.bits needs to count distinct units by bitmaps, and to bound the memory that takes:

    - `spans`: per integer privacy-unit column, [least, greatest] value (the bitmap's bits);
    - `cardinality`: per dimension, its distinct values over every row, NULL counted as one (an upper bound
      on the groups a key on it forms);
    - `extent`: per date or timestamp dimension, [earliest, latest] over every row, as ISO text (the years or
      months a calendar key can take).

    Facts of the version, read only by the sandbox's choice of path (sandbox.service.strategy), never shown."""
    types = {str(r[0]): str(r[1]).upper() for r in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    units = [c for c in columns if roles.get(c) == "privacy_unit" and types.get(c) in _INTEGER_UNITS]
    dimensions = [c for c in columns if roles.get(c) == "dimension"]
    dated = [c for c in dimensions if types.get(c) in _DATED]
    items = [f"min({_q(c)}), max({_q(c)})" for c in units]
    items += [f"count(DISTINCT {_q(c)}) + (count(*) > count({_q(c)}))::BIGINT" for c in dimensions]
    items += [f"min({_q(c)})::VARCHAR, max({_q(c)})::VARCHAR" for c in dated]
    if not items:
        return {"spans": {}, "cardinality": {}, "extent": {}}
    row = list(connection.execute(f"SELECT {', '.join(items)} FROM {source}").fetchone() or ())
    spans = {c: [int(row[2 * i]), int(row[2 * i + 1])] for i, c in enumerate(units) if row[2 * i] is not None}
    at = 2 * len(units)
    cardinality = {c: int(row[at + i]) for i, c in enumerate(dimensions)}
    at += len(dimensions)
    extent = {c: [row[at + 2 * i], row[at + 2 * i + 1]] for i, c in enumerate(dated) if row[at + 2 * i] is not None}
    return {"spans": spans, "cardinality": cardinality, "extent": extent}


SMALL: dict[str, str | bool | int | float | list[str]] = {"threads": 1, "memory_limit": "256MB"}
"""DuckDB settings for the small reads around a build (a file's columns, a measure's min and max): without them
a connection may take 80 % of the machine's memory and every core."""


def table_name_from_filename(filename: str) -> str:
    base = Path(filename).name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES + WORKBOOK_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return re.sub(r"[^a-z0-9_]", "_", base)


def file_kind(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(CSV_SUFFIXES + WORKBOOK_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise Unprocessable("unsupported_file", file=filename)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reader(source: Path, kind: str, whole_file: bool = True) -> str:
    """A DuckDB table function reading the upload; CSV types are detected from every row, or (not
    `whole_file`) from DuckDB's sample of the first rows, enough to name the columns and suggest types."""
    if kind == "parquet":
        return f"read_parquet({_lit(str(source))})"
    nulls = ", ".join(_lit(n) for n in NULL_STRINGS)
    sample = ", sample_size = -1" if whole_file else ""
    return f"read_csv({_lit(str(source))}, header = true, nullstr = [{nulls}]{sample})"


def error_detail(error: Exception, filename: str, *paths: Path) -> str:
    """DuckDB's first error line, naming the user's file instead of the server's own paths."""
    lines = str(error).splitlines()
    detail = lines[0] if lines else type(error).__name__
    for path in paths:
        detail = detail.replace(str(path), filename)
    return SERVER_PATH.sub(filename, detail)[:300]


def source_columns(source: Path, kind: str, filename: str) -> list[tuple[str, str]]:
    """The (name, type) columns DuckDB reads from an uploaded file, types from a sample of its first rows.

    Sniffing a whole CSV (sample_size = -1) held about as much memory as the file (a 1 GB upload took the
    server to 1.1 GiB for 100 s on every recipe editor page and build): docs/benchmarks.md, build memory."""
    reader = _reader(source, kind, whole_file=False)
    try:
        with duckdb.connect(":memory:", config=SMALL) as connection:
            rows = connection.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    except duckdb.Error as error:
        raise Unprocessable(
            "invalid_upload", file=filename, kind=kind.upper(), detail=error_detail(error, filename, source)
        ) from error
    return [(str(r[0]), str(r[1])) for r in rows]


def write_table(source: Path, kind: str, filename: str, columns: list[str], destination: Path) -> StoredTable:
    """Copy `columns` of the uploaded file to `destination` as Parquet, atomically, and describe the result."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial")
    reader = _reader(source, kind)
    select = ", ".join(_q(c) for c in columns)
    try:
        with duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "256MB"}) as connection:
            write_product_parquet(connection, f"SELECT {select} FROM {reader}", partial)
            os.replace(partial, destination)
            return describe_parquet(connection, destination)
    except duckdb.Error as error:
        partial.unlink(missing_ok=True)
        raise Unprocessable(
            "invalid_upload", file=filename, kind=kind.upper(), detail=error_detail(error, filename, source, partial)
        ) from error


def write_product_parquet(connection: duckdb.DuckDBPyConnection, select: str, partial: Path) -> None:
    """Write the rows of `select` to `partial` as a product version's Parquet table: the one writer of
    every file a buyer's query reads (the upload's table and the recipe's output).

    DuckDB writes it (its encodings read fastest in DuckDB) without Bloom filters or page index, then
    products.footer rewrites the footer without min/max statistics, so the layout says nothing about
    which values a row group holds and the sandbox's scans cannot skip work by it (docs/sandbox.md,
    "Statistics-free files")."""
    connection.execute(
        f"COPY ({_wide_integers_as_decimal(connection, select)}) TO {_lit(str(partial))} ({PRODUCT_PARQUET})"
    )
    footer.strip_statistics(partial)


def _wide_integers_as_decimal(connection: duckdb.DuckDBPyConnection, select: str) -> str:
    """`select` with its HUGEINT and UHUGEINT columns cast to DECIMAL(38, 0).

    DuckDB reads a 20-digit identifier in a CSV file as HUGEINT and writes HUGEINT to Parquet as DOUBLE,
    which merges neighbouring identifiers: twenty card holders became one privacy unit (red14). DECIMAL(38, 0)
    keeps every value exactly; a value past 38 digits fails the build instead of being rounded."""
    described = connection.execute(f"DESCRIBE {select}").fetchall()
    wide = [str(row[0]) for row in described if str(row[1]) in ("HUGEINT", "UHUGEINT")]
    if not wide:
        return select
    casts = ", ".join(f'CAST("{q}" AS DECIMAL(38, 0)) AS "{q}"' for q in (name.replace('"', '""') for name in wide))
    return f"SELECT * REPLACE ({casts}) FROM ({select})"


FAST_UNSCALED = 2**52
"""A DECIMAL measure is kept only when every value its declared bounds allow has an unscaled integer under this.

DuckDB casts a DECIMAL with a scale above 0 to DOUBLE (a measure inside an aggregate: sandbox.algebra) about 40
times slower per row when the unscaled integer is above 2^53 than below it, for 64- and 128-bit DECIMALs alike: a
sum's time would tell whether hidden rows hold large values (docs/sandbox.md, "Wide decimals (wide15)"). Half
of 2^53 leaves room for the rounding of check_bounds's comparison in DOUBLE."""

_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)\Z")


def fast_measure_type(stored: str, bounds: MeasureBounds | None) -> str | None:
    """The type a measure stored as `stored` is rewritten to (fast_measures), or None when it stays as it is.

    Only DECIMALs change: one of at most 15 digits (its unscaled integer is under 10^15, below FAST_UNSCALED), or
    of scale 0 and at most 18 digits (a 64-bit integer's cast is one instruction), stays. Otherwise, when the
    declared bounds (which check_bounds has checked every value against) keep every unscaled integer under 10^15,
    it becomes DECIMAL(15, s) (exact); a scale-0 one under FAST_UNSCALED, DECIMAL(18, 0); else, and for a
    measure without bounds (only counted), DOUBLE, the value `TRY_CAST(m AS DOUBLE)` computed anyway. So no
    measure is stored as a DECIMAL of more than 15 digits with a scale above 0, the types whose cast to DOUBLE the
    sandbox refuses from the type alone (sandbox.binding.slow_to_double, branch dim15). Decided from the type and
    the policy, never from the values."""
    found = _DECIMAL.match(stored.strip().upper())
    if found is None:
        return None
    width, scale = int(found[1]), int(found[2])
    if width <= 15 or (scale == 0 and width <= 18):
        return None
    if bounds is not None and scale <= 15:
        largest = max(abs(Fraction(bounds.min)), abs(Fraction(bounds.max)))
        if scale == 0 and largest < FAST_UNSCALED:
            return "DECIMAL(18,0)"
        if largest * 10**scale < 10**15:
            return f"DECIMAL(15,{scale})"
    return "DOUBLE"


def fast_measures(table: StoredTable, measures: Sequence[str], bounds: Mapping[str, MeasureBounds]) -> StoredTable:
    """Rewrite the version's table so that no measure is a DECIMAL whose cast to DOUBLE is slow for some value
    (fast_measure_type), after check_bounds accepted its values; the table unchanged, and not rewritten, when none
    is. The same rows in the same order, through write_product_parquet (no statistics); a cast that cannot
    hold a value fails the build (none can: the bounds are checked)."""
    types = {c.name: c.type for c in table.columns}
    casts = {m: t for m in measures if m in types and (t := fast_measure_type(types[m], bounds.get(m))) is not None}
    if not casts:
        return table
    partial = table.path.with_suffix(".partial")
    replaced = ", ".join(f"CAST({_q(m)} AS {t}) AS {_q(m)}" for m, t in casts.items())
    try:
        with duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "256MB"}) as connection:
            write_product_parquet(
                connection, f"SELECT * REPLACE ({replaced}) FROM read_parquet({_lit(str(table.path))})", partial
            )
            os.replace(partial, table.path)
            return replace(describe_parquet(connection, table.path), name=table.name)
    except duckdb.Error as error:
        partial.unlink(missing_ok=True)
        raise Unprocessable(
            "invalid_upload", file=table.path.name, kind="PARQUET", detail=error_detail(error, table.path.name)
        ) from error


def statistics_free(connection: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Whether the Parquet file at `path` holds no value statistics, Bloom filter or page index, read
    from its footer (a file written before write_product_parquet stripped them has them)."""
    row = connection.execute(
        "SELECT count(*) FILTER (WHERE stats_min IS NOT NULL OR stats_max IS NOT NULL OR stats_min_value IS NOT NULL "
        "OR stats_max_value IS NOT NULL OR stats_null_count IS NOT NULL OR stats_distinct_count IS NOT NULL "
        "OR bloom_filter_offset IS NOT NULL OR column_index_offset IS NOT NULL OR offset_index_offset IS NOT NULL) "
        f"FROM parquet_metadata({_lit(str(path))})"
    ).fetchone()
    return row is not None and int(row[0]) == 0


def describe_parquet(connection: duckdb.DuckDBPyConnection, path: Path) -> StoredTable:
    """Schema, row count and per-column compressed bytes of a Parquet file, from its footer."""
    schema = connection.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(str(path))})").fetchall()
    row_count = connection.execute(
        f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({_lit(str(path))})"
    ).fetchone()
    sizes = dict(
        connection.execute(
            f"SELECT path_in_schema, sum(total_compressed_size) FROM parquet_metadata({_lit(str(path))}) "
            "GROUP BY path_in_schema"
        ).fetchall()
    )
    return StoredTable(
        name=path.stem,
        path=path,
        row_count=int(row_count[0]) if row_count else 0,
        columns=[StoredColumn(name=str(r[0]), type=str(r[1]), bytes=int(sizes.get(r[0], 0))) for r in schema],
    )


def content_hash(paths: list[Path]) -> str:
    """SHA-256 over the files' bytes, in order, read in chunks."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def check_bounds(table: StoredTable, bounds: Mapping[str, MeasureBounds]) -> None:
    """Refuse the build if a measure's values fall outside its declared bounds (or are not numbers)."""
    types = {c.name: c.type.upper() for c in table.columns}
    for column, declared in sorted(bounds.items()):
        if not types.get(column, "").startswith(_NUMERIC_TYPES):
            raise Unprocessable("measure_not_numeric", column=column, table=table.name, type=types.get(column, "?"))
        with duckdb.connect(config=SMALL) as connection:
            row = connection.execute(
                f"SELECT min({_q(column)}), max({_q(column)}), "
                f"count(*) FILTER (WHERE NOT isfinite(CAST({_q(column)} AS DOUBLE))) "
                f"FROM read_parquet({_lit(str(table.path))})"
            ).fetchone()
        low, high, not_finite = row if row else (None, None, 0)
        if (
            not_finite
            or (low is not None and float(low) < declared.min)
            or (high is not None and float(high) > declared.max)
        ):
            raise Unprocessable(
                "measure_out_of_bounds",
                column=column,
                table=table.name,
                low=low,
                high=high,
                min=declared.min,
                max=declared.max,
            )


DATE_RANGE = ("290000-01-01 (BC)", "294000-12-31")
"""The dates a product version's DATE and TIMESTAMP columns may hold (check_dates), besides NULL.

The sandbox keeps date_trunc() in TRY() (sandbox.syntax.guard): date_trunc returns a TIMESTAMP, and raises for a
value whose truncation falls outside TIMESTAMP's range (290309-12-22 (BC) 00:00:00 to 294247-01-10
04:00:54.775806, DuckDB 2.0), where TRY() recomputes the whole vector row by row: 42 against 17,617 ns a row
(docs/sandbox.md, red16). That is every DATE after 294247-01-10 or before 290308-01-01 (BC), and the TIMESTAMP
(and TIMESTAMP WITH TIME ZONE) values of 290309 (BC), whose year, quarter or month starts before TIMESTAMP's first
day. Every truncation unit moves a value towards year 0 (millennium, century, decade: toward zero in DuckDB 2.0) or
within its year, but for `week` (back to a Monday, up to 6 days) and `isoyear` (up to 3 days before January 1);
the range lies more than 240 years inside TIMESTAMP's on both sides, so no truncation of a value in it, in any time
zone, leaves TIMESTAMP's range, and no other calendar function the sandbox allows (extract, date_part, year,
month, day, quarter, dayofweek, a cast to DATE or VARCHAR) fails on a value in it
(tests/products/test_date17_date_range.py). +-infinity are refused too: nothing fails on them, but every calendar
function costs less on them, 0.13-0.62x of a finite date's time (date_trunc('month'): 6 against 17-23 ns a row,
bench/date17_trunc.py), so a column holding them would tell, through time, how many hidden rows do
(docs/sandbox.md "Dates a version may hold (date17)")."""

_CHECKED_DATES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")


def check_dates(table: StoredTable) -> None:
    """Refuse the build if a DATE or TIMESTAMP column holds a value outside DATE_RANGE, +-infinity included: a
    date_trunc() of it would fail inside the sandbox's TRY(), whose slow path a buyer could time, or cost less than
    a finite date's (issue 9, date17)."""
    low, high = DATE_RANGE
    checked = [c for c in table.columns if c.type.upper() in _CHECKED_DATES]
    if not checked:
        return
    counts = []
    for column in checked:
        # TIMESTAMP_NS (1677 to 2262) and the others are compared as TIMESTAMP, which holds every value of theirs
        kind = column.type.upper()
        value = (
            _q(column.name) if kind in ("DATE", "TIMESTAMP WITH TIME ZONE") else f"CAST({_q(column.name)} AS TIMESTAMP)"
        )
        counts.append(f"count(*) FILTER (WHERE {value} < DATE {_lit(low)} OR {value} >= DATE {_lit(high)} + 1)")
    with duckdb.connect(config=SMALL) as connection:
        row = connection.execute(f"SELECT {', '.join(counts)} FROM read_parquet({_lit(str(table.path))})").fetchone()
    for column, count in zip(checked, row or [0] * len(checked), strict=True):
        if count:
            raise Unprocessable(
                "date_out_of_range", column=column.name, table=table.name, count=count, low=low, high=high
            )
