"""The one place that opens DuckDB for buyer queries, locked down before any buyer SQL reaches it.

Configuration goes in at connect time and is then locked: no external access beyond the product
version's own Parquet files, no extension loading, bounded memory, threads, run time and temp
space. This module runs inside a sandbox worker process (sandbox.pool), never in the API process.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import duckdb

from sandbox import binding, bits, summary
from sandbox.binding import Refusal
from sandbox.fanout import DEFAULT_MAX_JOIN_FANOUT
from sandbox.fanout import EXACT_EQUALITY_TYPES as _EXACT_EQUALITY_TYPES
from sandbox.rewrite import (
    GROUPS_TABLE,
    KEPT_COLUMN,
    PLACEHOLDER,
    RESTRICT,
    ROW_COLUMN,
    UNDECIDED_TABLE,
    Plan,
    seeded_columns_sql,
    seeded_recheck,
    threshold_sql,
    two_level_sql,
)


@dataclass(frozen=True)
class EngineLimits:
    """Per-query limits, enforced by DuckDB's settings and by the worker's OS limits."""

    memory_limit: str = "512MB"
    threads: int = 2
    timeout_seconds: float = 20.0
    max_temp_directory_size: str = "1GB"
    address_space_mb: int = 4096
    """RLIMIT_AS of a worker process: the hard ceiling if DuckDB's own memory_limit is not enough."""
    workers: int = 2
    fixed_timing: bool = True
    """No work skipped by what hidden rows hold (DISABLED_OPTIMIZERS, the recheck always run); False is
    faster and leaks one chosen bit per query through time (docs/sandbox.md, "Timing")."""
    max_join_fanout: int = DEFAULT_MAX_JOIN_FANOUT
    """Rows of the joined tables one root row may meet (the product of their fan-outs); past it a join is
    refused before it runs, `join_fanout` (sandbox.fanout)."""


DISABLED_OPTIMIZERS = "filter_pushdown,statistics_propagation,join_filter_pushdown,row_group_pruner"
"""DuckDB optimizers that make the work depend on the data beyond the rows a query reads: with them,
`count(*) WHERE dest = 'LEX'` skipped every row group whose statistics exclude 'LEX', so its time told
whether (and where) a hidden value occurs (bench/timing_oracle.py measures it)."""


SENTINEL = 6848952353113540609
"""A hash value always in the recheck's list of undecided groups (execute_plan), so that list is never
empty; not HASH(TRUE, TRUE) nor HASH(FALSE, TRUE) (the list of a query without group keys; tested)."""


STATISTICS_FREE_DISABLED_OPTIMIZERS = "filter_pushdown,join_filter_pushdown"
"""The optimizers still off over a version whose files hold no statistics (products.footer): pushing a
filter into the Parquet scan lets DuckDB skip every page of a row group whose dictionary lacks the value
and skip decoding the other columns' pages where no row passes (bench/timing_oracle.py: p < 0.0001 on
statistics-free files), and a join's build-side key range pushed into the probe scan is data by
construction. `statistics_propagation` and `row_group_pruner` are on again: the files give them nothing
to use, and over the sandbox's own temp tables they change work per group, not per pass
(docs/sandbox.md, "Statistics-free files")."""


def disabled_optimizers(limits: EngineLimits, statistics_free: bool) -> str:
    """DuckDB's `disabled_optimizers` for a connection over a version: all on when timing is not fixed,
    DISABLED_OPTIMIZERS over files that may hold statistics (versions built before), fewer over files
    that hold none."""
    if not limits.fixed_timing:
        return ""
    return STATISTICS_FREE_DISABLED_OPTIMIZERS if statistics_free else DISABLED_OPTIMIZERS


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _locked_config(limits: EngineLimits, temp_dir: str, disabled: str) -> dict[str, Any]:
    """The connect-time configuration of every connection that runs buyer SQL (open_locked, open_summary)."""
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "allow_persistent_secrets": False,
        "threads": limits.threads,
        "preserve_insertion_order": False,
        "memory_limit": limits.memory_limit,
        "max_temp_directory_size": limits.max_temp_directory_size,
        "temp_directory": temp_dir,
        "max_execution_time": max(1, int(limits.timeout_seconds * 1000)),
        # No work skipped by what the data hold (docs/sandbox.md, "Timing"): no filter pushed into
        # the Parquet scan (so no row group or page skipped by its statistics, dictionary or Bloom
        # filter), no comparison folded from column statistics, no join-key ranges pushed into the
        # other side's scan, no row groups pruned. Every scan reads every row of what it names.
        # Over statistics-free files there are no statistics to prune or fold by: fewer are off.
        "disabled_optimizers": disabled,
    }


def _connect_locked(
    tables: Mapping[str, Path], limits: EngineLimits, disabled: str, create: Callable[[duckdb.DuckDBPyConnection], None]
) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB configured by _locked_config, reading only `tables`' files, `create` run before
    its configuration is locked (external access already off but for those files)."""
    temp_dir = tempfile.mkdtemp(prefix=f"sandbox-spill-{os.getpid()}-")
    connection = duckdb.connect(":memory:", config=_locked_config(limits, temp_dir, disabled))
    weakref.finalize(connection, shutil.rmtree, temp_dir, ignore_errors=True)
    try:
        paths = [str(path.resolve()) for path in tables.values()]
        connection.execute(f"SET allowed_paths = [{', '.join(_quote_literal(p) for p in paths)}]")
        connection.execute("SET enable_progress_bar = false")
        connection.execute(f"SET parquet_use_page_index = {str(not limits.fixed_timing).lower()}")
        connection.execute("SET enable_external_access = false")
        create(connection)
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection


def _create_summary(connection: duckdb.DuckDBPyConnection, name: str, path: Path) -> None:
    """A version's unit summary (sandbox.summary): a few thousand rows, read once into memory when the (warm)
    connection opens, so a query scans it whole without decoding a file (2-4 ms on the demo as a view). Its
    name, with __, is one a buyer cannot write. Two rows of no set hold each column's least and greatest value
    of its type, so the table's statistics say nothing of the data's values: no comparison of the lookup folds
    by them (statistics_propagation is on over statistics-free versions)."""
    source = f"read_parquet({_quote_literal(str(path.resolve()))})"
    connection.execute(
        f"CREATE TABLE {_quote_identifier(name)} AS SELECT * FROM {source} UNION ALL "
        + summary.bounding_rows_sql(connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall())
    )


def open_locked(
    tables: Mapping[str, Path], limits: EngineLimits, statistics_free: bool = False
) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB whose only data are views over `tables`, with its configuration locked.

    `statistics_free`: every file's footer holds no value statistics (products.footer; recorded with the
    version when it was built), so fewer optimizers need to be off (disabled_optimizers).

    Its spill directory goes with it: removed once the connection is closed and dropped, or when the
    process exits; a worker killed outright leaves it to the pool, which knows it by the worker's pid
    (sandbox.pool.remove_spill)."""

    def create(connection: duckdb.DuckDBPyConnection) -> None:
        for name, path in tables.items():
            if name.startswith(summary.SUMMARY_PREFIX):
                _create_summary(connection, name, path)
                continue
            # `__row`, the row's number in its file, is the seeded statements' sample (rewrite.seeded_stage):
            # hidden from buyers (names with __ are refused), read by no statement but for that.
            connection.execute(
                f"CREATE VIEW {_quote_identifier(name)} AS SELECT *, file_row_number AS "
                f"{_quote_identifier(ROW_COLUMN)} FROM read_parquet({_quote_literal(str(path.resolve()))})"
            )

    return _connect_locked(tables, limits, disabled_optimizers(limits, statistics_free), create)


SUMMARY_UNUSED_OPTIMIZERS = (
    "join_order,build_side_probe_side,join_elimination,deliminator,unnest_rewriter,in_clause,regex_range,"
    "sampling_pushdown,late_materialization,outer_join_simplification,self_join_aggregate,window_self_join,"
    "partial_aggregate_pushdown"
)
"""Optimizers the cube's statement has no use for (one in-memory table, no join, no subquery of the sandbox's,
no IN list, no LIKE): off on the summary connection (open_summary), so the first run of a statement text plans
less. None changes an answer (an optimizer never does); the floor is still disabled_optimizers'."""
SUMMARY_VALUE_OPTIMIZERS = "statistics_propagation"
"""Off on every summary connection, whatever the floor (branch lit20): a statement prepared over a set's rows as a
constant (Summaries) would otherwise be planned from that constant's value statistics (the least and greatest of
each column over the set's rows, rare values included), which could fold a buyer's comparison and make its work
depend on them. Over the table it was already told nothing (the bounding rows, _create_summary)."""
PREPARED = 256
"""DuckDB prepared statements a summary connection keeps (Summaries), per exact statement text, most recently
used."""
CONSTANT_BYTES = 1024 * 1024
"""The longest text of one set's rows, every column of the summary, that Summaries prepares as constants (branch
lit20; decided once per set, _fits): a prepared statement holds about 16 times the text of the columns it reads (0.58
MB for the 36 KB of the demo's `dest, month = 7`, measured); the demo's largest set is 317 KB with every column. A
longer set is read from the table, as before."""
CONSTANT_BUDGET = 4 * 1024 * 1024
"""At most this much constant text (CONSTANT_BYTES each) in the prepared statements of one summary connection (about
64 MB of memory, four connections a worker): past it, the least recently used statements are deallocated first."""

_CUBE_SOURCE = re.compile(
    r' FROM "(__summary__(?:[^"]|"")+)" AS ("(?:[^"]|"")+") WHERE "__set" = ([0-9]+)\) AS "__c"'
    r'((?: GROUP BY "__g[0-9]+"(?:, "__g[0-9]+")*)?)',
    re.ASCII,
)
"""The end of every text summary.cube writes: its one read of the summary, the rows of one set, then the grouping
by its keys. Nothing of the buyer's follows it (the buyer's filter and keys are in the inner SELECT before it)."""
_CUBE_PREFIXES = ('WITH "__all" AS (', f'WITH "{GROUPS_TABLE}" AS (')
"""How the statements execute_cube runs begin, its cube text right after (_exact_statement, _seeded_groups)."""
_QUOTED = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'')
"""A quoted name or a string literal, as the sandbox writes them: the names a cube text reads are its quoted names
outside its literals (branch red20: a name inside a buyer's literal, `'"__sum0"'`, is not read)."""


class Summaries:
    """A product version's summary tables on their own locked in-memory connection (open_summary, branch rt15):
    the cube's statement (engine.execute_cube) runs here rather than on the version's big connection, prepared
    once per exact statement text (a DuckDB prepared statement, at most PREPARED kept, least recently used
    deallocated) and executed by name after.

    DuckDB (2.0) binds, optimizes and plans a prepared statement again on every EXECUTE when it reads a table
    (branch cube18, measured; DuckDB keeps the plan only of a statement that scans no table): that was most of the
    cube's time on the demo's small queries. So (branch lit20) a statement whose cube text reads one set of the
    summary (_CUBE_SOURCE) is prepared over that set's rows as constants, `(SELECT unnest(CAST('<a column's values as
    DuckDB writes them>' AS <type>[])) AS <column>, ...) AS <alias>`, the columns the text names only: the same rows,
    the same values (checked equal to the table's, once per set and columns), and DuckDB runs it from its plan. The
    statement text recorded and shown (the audit's `sql_run`) is still the table's; the constant never leaves the
    worker. A set whose text is longer than CONSTANT_BYTES, an empty set, or any doubt (a text that does not end as
    _CUBE_SOURCE says, rows that do not convert back equal, an error preparing it) reads the table as before."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection
        self._prepared: OrderedDict[str, tuple[str, int]] = OrderedDict()
        """Statement text: its prepared name and the constant text it holds (0: it reads the table)."""
        self._named = 0
        self._constants: OrderedDict[tuple[str, str, tuple[str, ...]], str | None] = OrderedDict()
        """(summary table, set, columns): the constant over that set's rows (None: read the table), most recently
        used last; at most CONSTANT_BUDGET of text and PREPARED entries (branch red20: the buyer's aggregates choose
        the columns a statement reads, so unbounded it grew by up to CONSTANT_BYTES per query)."""
        self.cached = 0
        """Constant text held by _constants now (at most CONSTANT_BUDGET but for the newest)."""
        self._columns: dict[str, tuple[str, ...]] = {}
        self._fit: dict[tuple[str, str], bool] = {}
        """(summary table, set): whether its rows' text, every column, is at most CONSTANT_BYTES (_fits)."""
        self.held = 0
        """Constant text held by the prepared statements now (at most CONSTANT_BUDGET but for the newest)."""

    @property
    def prepared(self) -> int:
        """How many prepared statements the connection holds now."""
        return len(self._prepared)

    @property
    def sets_held(self) -> int:
        """The text of the sets' constants kept for statements still to prepare (at most CONSTANT_BUDGET but for the
        newest)."""
        return self.cached

    @property
    def constants(self) -> int:
        """How many of them read their set's rows as a constant (branch lit20)."""
        return sum(1 for _, size in self._prepared.values() if size)

    def execute(self, statement: str, cube: str = "") -> duckdb.DuckDBPyConnection:
        """Run `statement` from its prepared plan (prepared now if it is not held). `cube`: the cube text it holds
        (execute_cube's), whose set is then read as a constant where it can be. Raises Unprepared when DuckDB cannot
        prepare it here (say it reads a table the connection does not hold): the caller runs it where it would have
        run before."""
        found = self._prepared.get(statement)
        if found is None:
            found = self._prepare(statement, cube)
        else:
            self._prepared.move_to_end(statement)
        name, size = found
        if not size:
            return self.connection.execute(f"EXECUTE {name}")
        try:
            return self.connection.execute(f"EXECUTE {name}")
        except (duckdb.InterruptException, duckdb.OutOfMemoryException):
            raise
        except duckdb.Error:
            # Not expected (the same rows and values as the table's); its message could quote the constant: the
            # table's statement runs instead and fails, or answers, as it would have.
            return self.connection.execute(statement)

    def _prepare(self, statement: str, cube: str) -> tuple[str, int]:
        name = f"__rt15_{self._named}"
        constant = self._constant_statement(statement, cube) if cube else None
        prepared = False
        if constant is not None:
            try:
                self.connection.execute(f"PREPARE {name} AS {constant[0]}")
                prepared = True
            except duckdb.InterruptException:
                raise
            except duckdb.Error:
                constant = None  # its message may quote the constant: never raised; the table's text instead
        if not prepared:
            try:
                self.connection.execute(f"PREPARE {name} AS {statement}")
            except duckdb.InterruptException:
                raise
            except duckdb.Error as error:
                raise Unprepared(str(error)) from error
        self._named += 1
        found = self._prepared[statement] = (name, constant[1] if constant else 0)
        self.held += found[1]
        while len(self._prepared) > PREPARED or (self.held > CONSTANT_BUDGET and len(self._prepared) > 1):
            _, (old, size) = self._prepared.popitem(last=False)
            self.held -= size
            self.connection.execute(f"DEALLOCATE {old}")
        return found

    def _constant_statement(self, statement: str, cube: str) -> tuple[str, int] | None:
        """`statement` with its cube's read of one set replaced by that set's rows as a constant, and the constant's
        length; None where the table is read (see the class)."""
        start = statement.find(cube)
        head, marker, tail = cube.rpartition(' FROM "__summary__')
        if start < 0 or statement[:start] not in _CUBE_PREFIXES or not marker:
            return None
        source = _CUBE_SOURCE.fullmatch(marker + tail)
        if source is None:
            return None
        table, alias, set_number, grouped = source.groups()
        table = table.replace('""', '"')
        if table not in self._columns:
            described = self.connection.execute(f"DESCRIBE {_quote_identifier(table)}").fetchall()
            self._columns[table] = tuple(row[0] for row in described if row[0] != summary.SET_COLUMN)
        # The columns the text reads (a name quoted as the sandbox writes every name, never one inside a string
        # literal: red20); one too many costs nothing, one too few fails to prepare and the table is read.
        named = {token for token in _QUOTED.findall(head) if token.startswith('"')}
        columns = tuple(column for column in self._columns[table] if _quote_identifier(column) in named)
        if not self._fits(table, set_number):
            return None
        key = (table, set_number, columns)
        if key in self._constants:
            self._constants.move_to_end(key)
            constant = self._constants[key]
        else:
            constant = self._constants[key] = self._set_constant(table, set_number, columns) if columns else None
            self.cached += len(constant or "")
            while len(self._constants) > 1 and (self.cached > CONSTANT_BUDGET or len(self._constants) > PREPARED):
                _, old = self._constants.popitem(last=False)
                self.cached -= len(old or "")
        if constant is None:
            return None
        cube_text = f'{head} FROM {constant} AS {alias}) AS "__c"{grouped}'
        return statement[:start] + cube_text + statement[start + len(cube) :], len(constant)

    def _fits(self, table: str, set_number: str) -> bool:
        """Whether the text of a set's rows, every column of the summary, is at most CONSTANT_BYTES: decided once per
        set, whatever columns a query reads (branch red20: decided per columns read, the buyer's aggregates chose
        which columns' text was measured, and so bracketed one column's text, hidden combinations' values included;
        now one bit per version and set, as whether the set is summarised at all). An error: False."""
        key = (table, set_number)
        if key not in self._fit:
            lengths = " + ".join(
                f"COALESCE(length(CAST(list({_quote_identifier(column)}) AS VARCHAR)), 0)"
                for column in self._columns[table]
            )
            where = f"FROM {_quote_identifier(table)} WHERE {_quote_identifier(summary.SET_COLUMN)} = {set_number}"
            try:
                found = self.connection.execute(f"SELECT {lengths or '0'} {where}").fetchone()
            except duckdb.InterruptException:
                raise
            except duckdb.Error:
                found = None
            self._fit[key] = found is not None and found[0] is not None and 0 < int(found[0]) <= CONSTANT_BYTES
        return self._fit[key]

    def _set_constant(self, table: str, set_number: str, columns: tuple[str, ...]) -> str | None:
        """The rows of one set as constants, one typed list per column zipped by unnest, `(SELECT unnest(CAST('<text>'
        AS <type>[])) AS <column>, ...)`, each DuckDB's own text of `list(<column>)` (a list per column casts in a
        third of the time one list of structs does); or None (no rows, too long, not equal, or any error). Kept only
        if the rows they unnest to, zipped, are the table's rows of the set, in order, value for value."""
        where = f"FROM {_quote_identifier(table)} WHERE {_quote_identifier(summary.SET_COLUMN)} = {set_number}"
        lists = [f"list({_quote_identifier(column)})" for column in columns]
        try:
            found = self.connection.execute(
                f"SELECT {', '.join(f'CAST({rows} AS VARCHAR), typeof({rows})' for rows in lists)} {where}"
            ).fetchone()
            if found is None or any(text is None for text in found[0::2]):
                return None
            items = [
                f"unnest(CAST({_quote_literal(text)} AS {kind})) AS {_quote_identifier(column)}"
                for column, text, kind in zip(columns, found[0::2], found[1::2], strict=True)
            ]
            source = f"(SELECT {', '.join(items)})"
            fields = ", ".join(f"{_quote_literal(column)}: {_quote_identifier(column)}" for column in columns)
            rows = f"list({{{fields}}})"
            same = self.connection.execute(
                f"SELECT (SELECT {rows} {where}) IS NOT DISTINCT FROM (SELECT {rows} FROM {source})"
            ).fetchone()
        except duckdb.InterruptException:
            raise
        except duckdb.Error:
            return None
        return source if same is not None and same[0] is True else None

    def interrupt(self) -> None:
        self.connection.interrupt()

    def close(self) -> None:
        self._prepared.clear()
        self.connection.close()


class Unprepared(Exception):
    """DuckDB refused to prepare a statement on a summary connection (Summaries.execute)."""


def open_summary(tables: Mapping[str, Path], limits: EngineLimits, statistics_free: bool = False) -> Summaries:
    """A second locked connection for a product version holding only its summary tables (the names of `tables`
    with summary.SUMMARY_PREFIX), built as open_locked builds them: the same lockdown (_locked_config, external
    access off but for the summary files, configuration locked), one DuckDB thread, the same optimizers off as
    the version's own connection plus those the cube's statement never uses (SUMMARY_UNUSED_OPTIMIZERS). DuckDB's
    optimizer stays on: branch cube18 turned it off (a quarter of the worker's time on the demo's small cubes), and
    TPC-H's by_ship_date_and_mode (2,555 groups) then took 2,025 ms against 21 ms, its joins planned without the
    optimizer (lead, session 18; docs/sandbox.md "The optimizer back on")."""
    summaries = {name: path for name, path in tables.items() if name.startswith(summary.SUMMARY_PREFIX)}
    floor = disabled_optimizers(limits, statistics_free)
    unused = f"{SUMMARY_UNUSED_OPTIMIZERS},{SUMMARY_VALUE_OPTIMIZERS}"
    disabled = ",".join(dict.fromkeys(f"{floor},{unused}".split(","))) if floor else unused

    def create(connection: duckdb.DuckDBPyConnection) -> None:
        for name, path in summaries.items():
            _create_summary(connection, name, path)

    return Summaries(_connect_locked(summaries, replace(limits, threads=1), disabled, create))


@contextmanager
def locked_connection(
    tables: Mapping[str, Path], limits: EngineLimits, statistics_free: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`open_locked` as a context manager that closes the connection."""
    connection = open_locked(tables, limits, statistics_free)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def deadline(connection: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[threading.Event]:
    """Interrupt the connection's running query after `seconds`; the event tells whether it fired."""
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        connection.interrupt()

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


@dataclass
class Execution:
    """What running a plan produced, before the service turns it into a result."""

    rows: list[tuple[Any, ...]]
    groups: int
    suppressed_groups: int
    methods: list[str]
    """Threshold methods stage 1 ran with, in order; the last one decided every group."""
    too_many_rows: bool
    cpu_ms: int
    statements: list[str]
    """Every statement that ran, in order, as it ran: what the regulator's audit log shows as the SQL run."""
    refused: Refusal | None = None
    """Set when typing stage 1 or computing its constants refused the query before it ran."""


class Statistics(Protocol):
    """Facts about a product version's tables, computed once by trusted SQL and cached by the worker."""

    def unit(self, table: str, column: str) -> tuple[int, int]:
        """(most rows any one unit has, rows whose unit is NULL)."""
        ...

    def fanout(self, table: str, column: str, *, nulls_match: bool = False) -> int:
        """Most rows sharing one value of `column` (how many rows a join on it can match; `nulls_match`: NULL
        counted as a value, as IS NOT DISTINCT FROM matches it), rounded up to a power of two."""
        ...

    def rows(self, table: str) -> int:
        """The table's row count (public: the catalogue shows it), rounded up to a power of two."""
        ...

    def column_type(self, table: str, column: str) -> str:
        """DuckDB's type of `column`, e.g. BIGINT."""
        ...

    def shadow(self, tables: list[str]) -> duckdb.DuckDBPyConnection:
        """An empty, data-less copy of `tables` for typing statements (sandbox.binding)."""
        ...

    def has_nulls(self, table: str, column: str) -> bool:
        """Whether `column` holds a NULL anywhere in the table (a fact of the version, not of a query)."""
        ...

    def refusal(self, statement: str, decide: Callable[[], Refusal | None]) -> Refusal | None:
        """`decide()`'s verdict on `statement` for this version, remembered (computed once per statement)."""
        ...


SHADOWS = 4
"""Empty typed copies (sandbox.binding) a worker keeps, one per product version, most recently used."""
REFUSALS = 4096
"""Verdicts of the checks before a query runs (engine._refusal) a worker remembers, most recently used."""


class TableStatistics:
    """Statistics read from the locked connection's own views, cached per product version file."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, cache: dict[tuple[str, ...], Any], version: str) -> None:
        self.connection = connection
        self.cache = cache
        self.version = version

    def _max_per_value(self, table: str, column: str) -> tuple[int, int]:
        key = (self.version, table, column)
        if key not in self.cache:
            row = self.connection.execute(
                "SELECT coalesce(max(n) FILTER (WHERE v IS NOT NULL), 0), "
                "coalesce(sum(n) FILTER (WHERE v IS NULL), 0) "
                f"FROM (SELECT {_quote_identifier(column)} AS v, count(*) AS n "
                f"FROM {_quote_identifier(table)} GROUP BY 1)"
            ).fetchone()
            self.cache[key] = (int(row[0]), int(row[1])) if row else (0, 1)
        value: tuple[int, int] = self.cache[key]
        return value

    def unit(self, table: str, column: str) -> tuple[int, int]:
        most, nulls = self._max_per_value(table, column)
        return _bracket(most), nulls

    def fanout(self, table: str, column: str, *, nulls_match: bool = False) -> int:
        most, nulls = self._max_per_value(table, column)
        return _bracket(max(most, nulls) if nulls_match else most)

    def rows(self, table: str) -> int:
        key = (self.version, table, "\0rows")
        if key not in self.cache:
            row = self.connection.execute(f"SELECT count(*) FROM {_quote_identifier(table)}").fetchone()
            self.cache[key] = int(row[0]) if row else 0
        return _bracket(int(self.cache[key]))

    def column_type(self, table: str, column: str) -> str:
        key = (self.version, table, "\0types")
        if key not in self.cache:
            described = self.connection.execute(f"DESCRIBE {_quote_identifier(table)}").fetchall()
            self.cache[key] = {str(row[0]): str(row[1]).upper() for row in described}
        types: dict[str, str] = self.cache[key]
        return types.get(column, "")

    def has_nulls(self, table: str, column: str) -> bool:
        key = (self.version, table, column, "\0nulls")
        if key not in self.cache:
            row = self.connection.execute(
                f"SELECT count(*) > count({_quote_identifier(column)}) FROM {_quote_identifier(table)}"
            ).fetchone()
            self.cache[key] = bool(row[0]) if row else True
        value: bool = self.cache[key]
        return value

    def shadow(self, tables: list[str]) -> duckdb.DuckDBPyConnection:
        # Like the warm connections, at most SHADOWS are kept (each DuckDB instance costs address space
        # under the worker's RLIMIT_AS): the least recently used one is closed.
        shadows: OrderedDict[str, duckdb.DuckDBPyConnection] = self.cache.setdefault(("\0shadows",), OrderedDict())
        copy = shadows.get(self.version)
        if copy is None:
            copy = shadows[self.version] = binding.shadow(self.connection, sorted(set(tables) | set(self._views())))
            while len(shadows) > SHADOWS:
                _, old = shadows.popitem(last=False)
                old.close()
        shadows.move_to_end(self.version)
        return copy

    def refusal(self, statement: str, decide: Callable[[], Refusal | None]) -> Refusal | None:
        # The verdict depends on the statement's text and the version's column types only (never on
        # rows), and a version's files never change: the same statement gets the same verdict.
        remembered: OrderedDict[tuple[str, str], Refusal | None] = self.cache.setdefault(("\0refusals",), OrderedDict())
        key = (self.version, statement)
        if key in remembered:
            remembered.move_to_end(key)
            return remembered[key]
        verdict = remembered[key] = decide()
        while len(remembered) > REFUSALS:
            remembered.popitem(last=False)
        return verdict

    def _views(self) -> list[str]:
        rows = self.connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        return [str(row[0]) for row in rows]


def _bracket(most: int) -> int:
    """`most` rounded up to a power of two: still a valid upper bound, and whether a query needed a
    second pass (visible in its timing) tells a buyer only the bracket of the busiest unit's rows."""
    return 0 if most <= 0 else 1 << (most - 1).bit_length()


def _methods(plan: Plan, stats: Statistics | None) -> list[tuple[str, list[int]]]:
    """Threshold methods to try in order, cheapest first; the last one always decides every group.

    The "rows" method needs, per table instance, a bound on how many of the query's rows one unit
    can have. Alone, a table's unit has at most M rows (its most rows per unit). Under one inner
    equi-join A.a = B.b, each A row meets at most F_B rows (the most B rows sharing a value of b),
    so an A unit has at most M_A * F_B rows, and likewise for B. Filters only remove rows. Other
    joins (outer joins, several conditions, three tables) go straight to hash buckets.
    """
    if not plan.fast_threshold:
        return [("exact", [])]
    methods: list[tuple[str, list[int]]] = []
    if stats is not None and (len(plan.units) == 1 or plan.join_keys is not None):
        bounds: list[int] = []
        tables = {u.alias: u.table for u in plan.units}
        for unit in plan.units:
            # Rows whose unit is NULL are no unit (the bound counts only the others): NULLs need no fallback.
            max_rows, null_rows = stats.unit(unit.table, unit.column)
            if max_rows <= 0:
                break
            if plan.join_keys is not None:
                (a_alias, a_column), (b_alias, b_column) = plan.join_keys
                a_type = stats.column_type(tables[a_alias], a_column)
                if a_type not in _EXACT_EQUALITY_TYPES or a_type != stats.column_type(tables[b_alias], b_column):
                    break
                other_alias, other_column = (b_alias, b_column) if unit.alias == a_alias else (a_alias, a_column)
                fanout = stats.fanout(tables[other_alias], other_column)
                if fanout <= 0:
                    break
                max_rows *= fanout
            # Negative: the unit column has NULLs, so the bound counts count(unit), not count(*).
            bounds.append(-max_rows if null_rows else max_rows)
        if len(bounds) == len(plan.units):
            methods.append(("rows", bounds))
    return [*methods, ("buckets", []), ("exact", [])]


def whole_cells(plan: Plan, stats: Statistics | None) -> list[bool]:
    """Per cell: True when its argument is never NULL in this version (plain arithmetic of columns that
    hold no NULL, no outer join), so its rows are the group's and it needs no bound of its own."""
    if stats is None:
        return [False] * len(plan.cells)
    return [
        cell.reads is not None and not any(stats.has_nulls(table, column) for table, column in cell.reads)
        for cell in plan.cells
    ]


def execute_plan(
    connection: duckdb.DuckDBPyConnection,
    plan: Plan,
    max_rows: int,
    stats: Statistics | None = None,
    *,
    fixed: bool = True,
) -> Execution:
    """Run stage 1, decide every group exactly, run stage 2; leaves no state behind (rolled back).

    The statements that run are the same whatever the data hold (docs/sandbox.md, "Timing"): stage 1
    with the cheapest threshold method that applies, then ALWAYS the recheck: the groups that bound did
    not pass (possibly none) are listed by the hash of their keys and TRUE (with a sentinel, so the list
    is never empty), stage 1 runs again with count(DISTINCT unit) over exactly the rows whose keys and
    filter value hash into that list (an uncorrelated IN, a mark join that reads and probes every row),
    keeping only the keys and the threshold columns, and those groups' bounds are replaced by the exact
    counts. Without group keys (one group) stage 1 counts exactly at once and nothing is rechecked. Only
    the exact count fails a group or withholds a cell. What varies with the data is the exact count's
    work on the rows that pass the buyer's filter AND lie in rechecked groups (rewrite.build_plan):
    proportional to those rows, never a pass more or less.
    """
    started = time.process_time()
    # Seeded (a filter, timing fixed): stage 1 and the recheck over rewrite.seeded_stage, as on the other paths.
    seeded = plan.seeded if fixed else None
    template = seeded or plan.template
    refused = _refused(connection, plan, stats, started, template)
    if refused is not None:
        return refused
    table = _quote_identifier(GROUPS_TABLE)
    undecided = _quote_identifier(UNDECIDED_TABLE)
    recheck = _quote_identifier("__recheck")
    first = _methods(plan, stats)[0]
    if fixed and not plan.key_columns:
        # No group keys: one group, whose exact count the recheck would always compute anyway (were it
        # rechecked only when undecided, every row's mark would flip with that one bit and the buyer's
        # filter would run over all rows or over none: 2 ms on 500,000 rows). So stage 1 counts exactly,
        # in its one pass, and nothing is rechecked.
        first = ("exact", [])
    whole = whole_cells(plan, stats)
    used: list[str] = []
    ran: list[str] = []

    def run(statement: str) -> duckdb.DuckDBPyConnection:
        ran.append(statement)
        return connection.execute(statement)

    def stage(method: str, max_rows_per_unit: list[int], restriction: str) -> str:
        columns = threshold_sql(plan.units, method, max_rows_per_unit, plan.cells, whole)
        return template.replace(PLACEHOLDER, columns).replace(RESTRICT, restriction)

    grouped = stage(first[0], first[1], "TRUE")
    seeded_listed, restriction, kept_rows, kept_groups = "", plan.restriction, "", []
    if seeded:
        # The seeds' own groups (`__kept` FALSE) stay, with NULL bounds: never shown, never counted; of the
        # recheck's groups only the kept, listed ones are read, and they replace kept groups only.
        grouped = f'SELECT {seeded_columns_sql(plan, cells=False)} FROM ({grouped}) AS "__first"'
        seeded_listed, listed_groups, restriction = seeded_recheck(plan, table, f"CAST({SENTINEL} AS UBIGINT)")
        kept_rows, kept_groups = f" WHERE {listed_groups}", [f"{table}.{_quote_identifier(KEPT_COLUMN)}"]
    connection.execute("BEGIN TRANSACTION")
    try:
        run(f"CREATE OR REPLACE TEMP TABLE {table} AS {grouped}")
        used.append(first[0])
        if first[0] != "exact":
            if seeded and plan.key_columns:
                listed = seeded_listed
            elif plan.key_columns:
                # With TRUE for the filter's value, as rewrite.build_plan's restriction hashes each row.
                hashed = f"HASH({', '.join(_quote_identifier(c) for c in plan.key_columns)}, TRUE)"
                listed = f'SELECT DISTINCT {hashed} AS "__h" FROM {table} WHERE {plan.undecided}'
                if fixed:
                    # Never an empty list: DuckDB's mark join skips probing when its build side is empty
                    # (every row still read, none probed: 15 against 26 ms of CPU on 6M rows), so "no group
                    # was undecided" would show. A fixed extra hash keeps the probe; a group whose keys
                    # happen to hash to it is rechecked exactly, which changes nothing.
                    listed = f"{listed} UNION ALL SELECT CAST({SENTINEL} AS UBIGINT)"
            else:
                listed = (
                    f'SELECT HASH("__t"."__v", TRUE) AS "__h" FROM {table}, (VALUES (TRUE), (FALSE)) AS "__t"("__v") '
                    f"WHERE {plan.undecided}"
                )
            run(f"CREATE OR REPLACE TEMP TABLE {undecided} AS {listed}")
            # Not fixed (settings.sandbox_fixed_timing off): the recheck is skipped when no group needs
            # it, faster, and that one bit then shows in the time.
            needed = fixed or bool(run(f"SELECT count(*) FROM {undecided}").fetchall()[0][0])
            if needed:
                # The recheck keeps only the group keys and the threshold columns of the exact stage 1 (a
                # projection over its text): DuckDB then drops the aggregates nobody reads and stops
                # reading the measures' columns, so the pass over every row reads the keys, the units
                # and the filter columns only. The undecided groups' bounds are replaced by the exact
                # counts; their aggregates are stage 1's already (the same rows, the same expressions).
                thresholds = [f'"__lo{i}"' for i in range(len(plan.units))]
                thresholds += [f'"__v{m}"' for m in range(len(plan.cells))]
                keys = [_quote_identifier(c) for c in plan.key_columns]
                run(
                    f"CREATE OR REPLACE TEMP TABLE {recheck} AS SELECT {', '.join(keys + thresholds)} "
                    f'FROM ({stage("exact", [], restriction)}) AS "__r"{kept_rows}'
                )
                # Matched on the keys as GROUP BY matches them; a group left unmatched keeps its bound,
                # which did not reach k: it is suppressed (or its cell withheld), never shown in error.
                matched = " AND ".join(kept_groups + [f"{table}.{c} IS NOT DISTINCT FROM {recheck}.{c}" for c in keys])
                # Without group keys (timing not fixed) stage 1 always yields one row, even over no rows:
                # updated only when rechecked.
                rechecked = matched or f"EXISTS (SELECT 1 FROM {undecided})"
                run(
                    f"UPDATE {table} SET {', '.join(f'{c} = {recheck}.{c}' for c in thresholds)} FROM {recheck} "
                    f"WHERE {rechecked}"
                )
                used.append("exact")
        decided = run(_seeded_groups(plan)[1] if seeded else plan.decide_sql).fetchone() or (0, 0)
        groups, not_passing = int(decided[0] or 0), int(decided[1] or 0)
        # Only the exact count ever leaves a group not passing: it is suppressed. Likewise a cell: an
        # aggregate whose argument is non-NULL on rows of fewer than k units is NULL. The mask always
        # runs (whether any cell is withheld must not change what runs).
        suppressed = not_passing
        if plan.mask_sql is not None:
            run(plan.mask_sql)
        cursor = run(plan.output_sql)
        rows = cursor.fetchmany(max_rows + 1)
    finally:
        connection.execute("ROLLBACK")
    return Execution(
        rows=rows[:max_rows],
        groups=groups,
        suppressed_groups=suppressed,
        methods=used,
        too_many_rows=len(rows) > max_rows,
        cpu_ms=int((time.process_time() - started) * 1000),
        statements=ran,
    )


def execute_single(
    connection: duckdb.DuckDBPyConnection, plan: Plan, max_rows: int, stats: Statistics | None = None
) -> Execution:
    """Stage 1 (exact counts), the decision and stage 2 in ONE statement: no temp table, no transaction.

    Chosen for small products whose groups are expected to be small (sandbox.service.strategy, from the query
    text and the version's public statistics), where one scan with count(DISTINCT unit) is cheaper than the
    staged bounds and their bookkeeping. The exact count decides every group at once, so nothing is rechecked.
    The statement is the confirmed stage 1 and stage 2 texts joined by sandbox-written glue: `__groups` is a CTE
    over stage 1 that adds the number of groups that fail (`__s`) and of all groups (`__n`) as window counts,
    which stage 2 carries as its last two columns (stripped here; audit log only). When the answer has no row,
    those counts come from a second statement; the buyer sees that the answer is empty anyway, so the extra
    statement's time says nothing new.
    """
    started = time.process_time()
    refused = _refused(connection, plan, stats, started)
    if refused is not None:
        return refused
    whole = whole_cells(plan, stats)
    template = plan.seeded or plan.template
    stage = template.replace(PLACEHOLDER, threshold_sql(plan.units, "exact", (), plan.cells, whole))
    stage = stage.replace(RESTRICT, "TRUE")
    return _exact_statement(connection, plan, stage, max_rows, "single", started, seeded=plan.seeded is not None)


def execute_two_level(
    connection: duckdb.DuckDBPyConnection, plan: Plan, max_rows: int, stats: Statistics | None = None
) -> Execution:
    """execute_single with its stage 1 computed in two levels (rewrite.two_level_sql): ONE grouping on
    (group keys, unit) feeds the group's distinct units and every cell's, in place of one
    count(DISTINCT unit) per group and one more per cell (each its own hash table over the same pairs).
    The same columns, the same exact counts and aggregates (Plan.partials), then the same masking,
    decision and stage 2 in the same one statement, and the same second statement for an empty answer.
    A plan it does not apply to (Plan.partials is None) runs execute_single."""
    started = time.process_time()
    refused = _refused(connection, plan, stats, started)
    if refused is not None:
        return refused
    seeded = plan.seeded is not None
    stage = two_level_sql(plan, whole_cells(plan, stats), seeded=seeded)
    if stage is None:
        return execute_single(connection, plan, max_rows, stats)
    return _exact_statement(connection, plan, stage, max_rows, "two-level", started, seeded=seeded)


def execute_bits(
    connection: duckdb.DuckDBPyConnection,
    plan: Plan,
    max_rows: int,
    stats: Statistics | None = None,
    spans: Sequence[tuple[int, int]] = (),
) -> Execution:
    """execute_single with every distinct count of units taken from a bitmap over the unit's span
    (sandbox.bits: `BIT_COUNT(BITSTRING_AGG(unit, lo, hi))`, exactly count(DISTINCT unit)): the same one
    statement (seeded where filtered), the same columns, masking, decision and stage 2, the same second
    statement for an empty answer. `spans`: per unit of the plan, its (least, greatest) value in the
    version (build-time statistics), chosen by sandbox.service.strategy only when the bitmaps fit
    (sandbox.bits.bits_spans). Without a span per unit it runs execute_single."""
    if len(spans) != len(plan.units):
        return execute_single(connection, plan, max_rows, stats)
    started = time.process_time()
    refused = _refused(connection, plan, stats, started)
    if refused is not None:
        return refused
    template = plan.seeded or plan.template
    stage = template.replace(PLACEHOLDER, bits.threshold_sql(plan, spans, whole_cells(plan, stats)))
    stage = stage.replace(RESTRICT, "TRUE")
    return _exact_statement(connection, plan, stage, max_rows, "bits", started, seeded=plan.seeded is not None)


def _exact_statement(
    connection: duckdb.DuckDBPyConnection | _OnSummary,
    plan: Plan,
    stage: str,
    max_rows: int,
    method: str,
    started: float,
    *,
    seeded: bool = False,
    every_group: bool = False,
) -> Execution:
    """An exact stage 1 text (every group decided by its own counts), the decision and stage 2 as one
    statement (execute_single, execute_two_level): `__groups` adds the window counts of failing and of
    all groups that stage 2 carries as its last two columns (_counted). `seeded`: stage 1 is seeded
    (rewrite.seeded_stage), whose groups of seeds alone are masked and not counted (_seeded_groups).
    `every_group` (seeded only; execute_cube over few groups): stage 2 without its WHERE and without the window
    counts where its text allows (_every_group_text), the groups filtered and counted here (_every_group)."""
    if seeded and every_group:
        statement = _every_group_text(plan, stage)
        if statement is not None:
            return _every_group(connection, statement, bool(plan.key_columns), max_rows, [method], started)
    if seeded:
        groups, decide = _seeded_groups(plan)
        return _counted(
            connection,
            f'WITH "__all" AS ({stage}), {groups} {plan.counted_output_sql}',
            f'WITH "__groups" AS ({stage}) {decide}',
            max_rows,
            [method],
            started,
        )
    groups_cte = (
        f'WITH "__all" AS ({stage}), "__groups" AS (SELECT {plan.masked_columns_sql}, '
        f'SUM(CAST(NOT ({plan.passes_sql}) AS BIGINT)) OVER () AS "__s", COUNT(*) OVER () AS "__n" FROM "__all") '
    )
    statement = groups_cte + plan.counted_output_sql
    return _counted(
        connection, statement, f'WITH "__groups" AS ({stage}) {plan.decide_sql}', max_rows, [method], started
    )


EVERY_GROUP_LIMIT = 1_000
"""execute_cube returns every group of its set to the worker (_every_group) when an estimate of their number from
the distinct counts buyers see (sandbox.summary.cube_groups) is at most this; above it the statement filters and
counts them itself (_counted). At 1,000 groups the form cost a third less where most pass and a tenth more where
five did (docs/benchmarks.md, "every19")."""

_PLAIN_ITEMS = re.compile(r'SELECT "__[a-z]+[0-9]+" AS "__c[0-9]+"(?:, "__[a-z]+[0-9]+" AS "__c[0-9]+")*', re.ASCII)
"""Stage 2's select list when it computes nothing: every item a column of `__groups` under its output name."""
_PLAIN_KEY = r'"__[a-z]+[0-9]+"(?: ASC| DESC)?(?: NULLS FIRST| NULLS LAST)?'
_PLAIN_ORDER = re.compile(rf"(?: ORDER BY {_PLAIN_KEY}(?:, {_PLAIN_KEY})*)?", re.ASCII)
"""Stage 2's ORDER BY when it computes nothing: columns only (the sandbox's own tie-breakers are such)."""


def _every_group_text(plan: Plan, stage: str) -> str | None:
    """The seeded exact statement with stage 2 returning every group, passing or not, with two columns more:
    whether it passes (`__p`, NULL for a group whose `__kept` is FALSE: its bounds are masked) and `__kept`. No
    window counts and no WHERE: DuckDB binds and plans a quarter less (branch every19, measured).

    Written into stage 2's text (Plan.output_sql), as _counted_text does, and only where stage 2 computes nothing:
    its text is `SELECT "__x" AS "__c0", ... FROM "__groups" WHERE <Plan.passes_sql>`, then nothing or an ORDER BY
    of columns, character for character. Stage 2 then evaluates no expression of the buyer's on a group that does
    not pass (no error and no cost can come from one: the windowed statement's WHERE guarantees it, and so does
    this), and reads no group that does not pass through a HAVING, DISTINCT, window, QUALIFY, LIMIT or OFFSET. Any
    other stage 2: None, and the statement counts by windows as before."""
    output = plan.output_sql
    condition = f' FROM "{GROUPS_TABLE}" WHERE {plan.passes_sql}'
    head, found, tail = output.partition(condition)
    if not found or not _PLAIN_ITEMS.fullmatch(head) or not _PLAIN_ORDER.fullmatch(tail):
        return None
    groups = f'"{GROUPS_TABLE}" AS (SELECT {_every_group_masks(plan)} FROM "__all")'
    columns = f', ({plan.passes_sql}) AS "__p", {_quote_identifier(KEPT_COLUMN)}'
    return f'WITH "__all" AS ({stage}), {groups} {head}{columns} FROM "{GROUPS_TABLE}"{tail}'


def _every_group_masks(plan: Plan) -> str:
    """seeded_columns_sql's masks as arithmetic, no CASE (the cube's aggregates are numbers: counts, DOUBLE sums and
    averages, DECIMAL sums, each times 1 keeping its type and value): a group bound times 1, or NULL where the group
    is not kept; a cell's aggregate times 1, or NULL under k. A CASE runs its THEN only when some group takes it, so
    its time told whether any group was kept, that is whether any row passed the filter (branch red18's residue;
    docs/sandbox.md, "Every group to the worker (every19)")."""
    kept = _quote_identifier(KEPT_COLUMN)
    k = plan.min_group_size
    masks = [(f"__lo{i}", f'"__lo{i}" * CAST({kept} OR NULL AS INTEGER)') for i in range(len(plan.units))]
    masks += [
        (column, f'"{column}" * CAST("__v{m}" >= {k} OR NULL AS INTEGER)')
        for m, cell in enumerate(plan.cells)
        for column in cell.columns
    ]
    return "* REPLACE (" + ", ".join(f'{value} AS "{column}"' for column, value in masks) + ")"


def _every_group(
    connection: duckdb.DuckDBPyConnection | _OnSummary,
    statement: str,
    keyed: bool,
    max_rows: int,
    methods: list[str],
    started: float,
) -> Execution:
    """Run _every_group_text's statement: the answer is its rows that pass, in its order, without the two columns;
    the groups are the kept ones and the suppressed those kept that do not pass, as _seeded_groups counts them
    (without group keys: one group, suppressed unless it passes). Every group of the set is fetched and tested,
    passing or not: the same rows, the same number of them, whatever the filter (docs/sandbox.md, "Every group to
    the worker (every19)")."""
    fetched = connection.execute(statement).fetchall()
    rows = [row[:-2] for row in fetched if row[-2]]
    groups = sum(1 for row in fetched if row[-1]) if keyed else 1
    return Execution(
        rows=rows[:max_rows],
        groups=groups,
        suppressed_groups=groups - len(rows),
        methods=methods,
        too_many_rows=len(rows) > max_rows,
        cpu_ms=int((time.process_time() - started) * 1000),
        statements=[statement],
    )


def _seeded_groups(plan: Plan) -> tuple[str, str]:
    """The `__groups` CTE over a seeded stage 1 (`__all`), and the decision for an empty answer.

    Every group stays in `__groups` (the window and stage 2 see the seeds' groups on both sides of a pair
    of queries), but a group whose `__kept` is FALSE (seeds that fail the filter) gets NULL bounds, so it
    never passes, and the counts read `__kept`: only the groups of rows that pass the filter count, as
    without seeds. Without group keys there is one group, kept or not (no row passed: it was the group of
    no row, whose count 0 fails): 1 group, and it fails unless a kept group passes."""
    kept = _quote_identifier(KEPT_COLUMN)
    passes = plan.passes_sql
    groups = (
        f'"__groups" AS (SELECT {seeded_columns_sql(plan)}, '
        f'SUM(CAST({kept} AND NOT ({passes}) AS BIGINT)) OVER () AS "__s", '
        f'SUM(CAST({kept} AS BIGINT)) OVER () AS "__n" FROM "__all")'
    )
    if plan.key_columns:
        decide = (
            f"SELECT COALESCE(SUM(CAST({kept} AS BIGINT)), 0), "
            f'COALESCE(SUM(CAST({kept} AND NOT ({passes}) AS BIGINT)), 0) FROM "{GROUPS_TABLE}"'
        )
    else:
        decide = f'SELECT 1, 1 - COUNT(*) FILTER (WHERE {kept} AND ({passes})) FROM "{GROUPS_TABLE}"'
    return groups, decide


def _counted(
    connection: duckdb.DuckDBPyConnection | _OnSummary,
    statement: str,
    empty: str,
    max_rows: int,
    methods: list[str],
    started: float,
) -> Execution:
    """Run a one-statement answer whose rows carry the counts of failing and of all groups as their last
    two columns (stripped here; audit log only); with no row, the counts come from `empty` (the buyer
    sees that the answer is empty anyway, so that statement's time says nothing new)."""
    ran = [statement]
    fetched = connection.execute(statement).fetchmany(max_rows + 1)
    if fetched:
        suppressed, groups = int(fetched[0][-2] or 0), int(fetched[0][-1] or 0)
        rows = [row[:-2] for row in fetched]
    else:
        ran.append(empty)
        decided = connection.execute(empty).fetchone()
        groups, suppressed = (int(v or 0) for v in (decided or (0, 0, 0))[:2])
        rows = []
    return Execution(
        rows=rows[:max_rows],
        groups=groups,
        suppressed_groups=suppressed,
        methods=methods,
        too_many_rows=len(rows) > max_rows,
        cpu_ms=int((time.process_time() - started) * 1000),
        statements=ran,
    )


def execute_folded(
    connection: duckdb.DuckDBPyConnection, plan: Plan, max_rows: int, stats: Statistics | None = None
) -> Execution:
    """The staged method's statements folded into ONE statement: no temp table, no transaction.

    Chosen for small products whose groups are expected to be large (sandbox.service.strategy), where
    the cheap bound passes most groups and the exact count over every row (execute_single) would cost
    more than a second scan. The CTEs are execute_plan's statements, in the same order and always all
    of them: stage 1 with the cheapest bound (`__first`, materialised), the hashes of the groups it did
    not pass (`__undecided`, possibly none), the exact recheck over exactly the rows whose keys and
    filter value hash into that list (rows that pass the filter in undecided groups; the same
    uncorrelated IN, a mark join that reads every row, empty list or not),
    the groups kept from the bound plus the rechecked ones (in place of DELETE and INSERT), then the
    masking, the counts and stage 2 as in execute_single. Only the exact count fails a group.
    """
    started = time.process_time()
    refused = _refused(connection, plan, stats, started)
    if refused is not None:
        return refused
    method, bounds = _methods(plan, stats)[0]
    # Without group keys the one group's recheck would run its filter over every row or none as the bound
    # passed it or not (one bit in the time, docs/sandbox.md): such a query counts exactly, at once.
    if method == "exact" or not plan.key_columns or (plan.seeded is not None and plan.partials is not None):
        # Seeded (a filter) and every aggregate combining over (keys, unit): the seeded two-level statement,
        # whose one grouping decides every group exactly (no recheck to seed).
        return execute_two_level(connection, plan, max_rows, stats)
    whole = whole_cells(plan, stats)
    if plan.seeded is not None:
        return _seeded_folded(connection, plan, max_rows, method, bounds, whole, started)

    def stage(name: str, max_rows_per_unit: list[int], restriction: str) -> str:
        columns = threshold_sql(plan.units, name, max_rows_per_unit, plan.cells, whole)
        return plan.template.replace(PLACEHOLDER, columns).replace(RESTRICT, restriction)

    first = _quote_identifier("__first")
    undecided = _quote_identifier(UNDECIDED_TABLE)
    # With TRUE for the filter's value, as rewrite.build_plan's restriction hashes each row.
    hashed = f"HASH({', '.join(_quote_identifier(c) for c in plan.key_columns)}, TRUE)"
    # Never an empty list (as in execute_plan): SENTINEL keeps the recheck's mark join hashing and probing
    # every row whether or not some group is undecided; a group whose keys hash to it is merely rechecked.
    listed = (
        f'SELECT DISTINCT {hashed} AS "__h" FROM {first} WHERE {plan.undecided} '
        f"UNION ALL SELECT CAST({SENTINEL} AS UBIGINT)"
    )
    kept = f'{hashed} NOT IN (SELECT "__h" FROM {undecided})'
    recheck = stage("exact", [], plan.restriction)
    ctes = (
        f"WITH {first} AS MATERIALIZED ({stage(method, bounds, 'TRUE')}), "
        f"{undecided} AS MATERIALIZED ({listed}), "
        f'"__all" AS (SELECT * FROM {first} WHERE {kept} UNION ALL {recheck}), '
    )
    statement = (
        ctes + f'"__groups" AS (SELECT {plan.masked_columns_sql}, '
        f'SUM(CAST(NOT ({plan.passes_sql}) AS BIGINT)) OVER () AS "__s", COUNT(*) OVER () AS "__n" FROM "__all") '
        + plan.counted_output_sql
    )
    empty = ctes + f'"__groups" AS (SELECT * FROM "__all") {plan.decide_sql}'
    return _counted(connection, statement, empty, max_rows, [method, "exact"], started)


def _seeded_folded(
    connection: duckdb.DuckDBPyConnection,
    plan: Plan,
    max_rows: int,
    method: str,
    bounds: list[int],
    whole: list[bool],
    started: float,
) -> Execution:
    """execute_folded over the seeded stage 1 (rewrite.seeded_stage), for plans whose aggregates do not
    combine in two levels (joins, the variance family): the seeds flow through every CTE whatever the filter.

    - `__first`: the bound method, seeded.
    - `__undecided`: one entry per group of `__first`, the hash of an undecided kept group or SENTINEL (the
      DISTINCT sees every group, the seeds' too, never none because no row passes the filter).
    - The recheck: seeded too, its restriction `(<the hash IN the list>) OR <seed>`, so its aggregate gets
      the seeds plus the kept rows of the undecided groups; of its groups only the kept, listed ones count.
    - `__all`: `__first` but its kept, listed groups, and those groups from the recheck; the seeds' groups of
      `__first` stay (masked, not counted: _seeded_groups).
    """
    template = plan.seeded or plan.template

    def stage(name: str, max_rows_per_unit: list[int], restriction: str) -> str:
        columns = threshold_sql(plan.units, name, max_rows_per_unit, plan.cells, whole)
        return template.replace(PLACEHOLDER, columns).replace(RESTRICT, restriction)

    first = _quote_identifier("__first")
    undecided = _quote_identifier(UNDECIDED_TABLE)
    listed, rechecked, restriction = seeded_recheck(plan, first, f"CAST({SENTINEL} AS UBIGINT)")
    recheck = stage("exact", [], restriction)
    ctes = (
        f"WITH {first} AS MATERIALIZED ({stage(method, bounds, 'TRUE')}), "
        f"{undecided} AS MATERIALIZED ({listed}), "
        f'"__all" AS (SELECT * FROM {first} WHERE NOT ({rechecked}) '
        f'UNION ALL SELECT * FROM ({recheck}) AS "__r" WHERE {rechecked}), '
    )
    groups, decide = _seeded_groups(plan)
    statement = ctes + groups + " " + plan.counted_output_sql
    empty = ctes + f'"__groups" AS (SELECT * FROM "__all") {decide}'
    return _counted(connection, statement, empty, max_rows, [method, "exact"], started)


def _refused(
    connection: duckdb.DuckDBPyConnection,
    plan: Plan,
    stats: Statistics | None,
    started: float,
    template: str | None = None,
) -> Execution | None:
    """The Execution of a query `_refusal` refuses (no rows, its CPU since `started`), or None to run it."""
    refusal = _refusal(connection, plan, stats, template)
    if refusal is None:
        return None
    cpu_ms = int((time.process_time() - started) * 1000)
    return Execution([], 0, 0, [], too_many_rows=False, cpu_ms=cpu_ms, statements=[], refused=refusal)


def _refusal(
    connection: duckdb.DuckDBPyConnection, plan: Plan, stats: Statistics | None, template: str | None = None
) -> Refusal | None:
    """Before anything touches rows: compute the query's constants, then type stages 1 and 2 (sandbox.binding):
    `template`, the stage 1 that runs (by default the seeded one when the plan has one: it holds the plain
    one's buyer text and the sandbox's `__kept` and seed, so a statement that would fail to bind is refused
    here rather than failing at run time).

    Both depend on the query text and the tables' types only, never on the rows, so a refusal here
    says nothing about the data; and so the worker decides each statement once per product version
    (Statistics.refusal) and remembers the verdict.
    """
    template = template or plan.seeded or plan.template
    statement = template.replace(PLACEHOLDER, threshold_sql(plan.units, "exact", (), plan.cells))
    # Stage 2 over it, in the same bind: a cast there that can fail for some value of a group's column
    # (`CAST(sum(m) AS INTEGER)`) is refused like one in stage 1 (branch sbx-seed).
    statement = f'WITH "{GROUPS_TABLE}" AS ({statement.replace(RESTRICT, "TRUE")}) {plan.output_sql}'
    if stats is None:
        return _decide_refusal(connection, plan, statement, None)
    return stats.refusal(
        f"{plan.constants_sql or ''}\0{statement}", lambda: _decide_refusal(connection, plan, statement, stats)
    )


def _decide_refusal(
    connection: duckdb.DuckDBPyConnection, plan: Plan, statement: str, stats: Statistics | None
) -> Refusal | None:
    if plan.constants_sql:
        try:
            connection.execute(plan.constants_sql).fetchall()
        except duckdb.InterruptException:
            # The deadline (or a cancel) interrupted `connection` here: not a verdict on the query, which
            # TableStatistics.refusal would remember and give the same query again (red team redcube17).
            raise
        except duckdb.Error as error:
            return ("constant_error", {"detail": str(error).splitlines()[0][:200]})
        except (ArithmeticError, ValueError):
            # DuckDB computed it, Python cannot hold it (an INTERVAL beyond timedelta's range): raised out
            # of the worker, this killed the process (red team red12). A constant: refused like one that fails.
            return ("constant_error", {"detail": "a value out of range, such as an INTERVAL beyond 999,999,999 days"})
    if stats is not None:
        return binding.check(stats.shadow(plan.tables), statement)
    copy = binding.shadow(connection, plan.tables)
    try:
        return binding.check(copy, statement)
    finally:
        copy.close()


def execute_summary(
    connection: duckdb.DuckDBPyConnection,
    plan: Plan,
    max_rows: int,
    stats: Statistics | None = None,
    lookup: str = "",
) -> Execution:
    """The exact statement with its threshold read from the version's build-time unit counts (sandbox.summary):
    the buyer's stage 1 (seeded where filtered) with no distinct count, LEFT JOINed on its keys to `lookup`,
    the summary's counts of the combinations its keys and filter pin (sandbox.summary.lookup, chosen by
    sandbox.service.strategy from the query text and the version's statistics only). The same columns as the
    exact stage 1, the same exact counts (count(DISTINCT unit) of the group's rows, and of its rows where each
    cell's argument is not NULL), then the same masking, decision and stage 2 in one statement, and the same
    second statement for an empty answer. Without a lookup it runs execute_two_level."""
    if not lookup:
        return execute_two_level(connection, plan, max_rows, stats)
    started = time.process_time()
    refused = _refused(connection, plan, stats, started)
    if refused is not None:
        return refused
    seeded = plan.seeded is not None
    stage = summary.stage_sql(plan, plan.seeded or plan.template, lookup)
    return _exact_statement(connection, plan, stage, max_rows, "summary", started, seeded=seeded)


def execute_cube(
    connection: duckdb.DuckDBPyConnection,
    plan: Plan,
    max_rows: int,
    stats: Statistics | None = None,
    cube: str = "",
    summaries: Summaries | None = None,
    groups: int | None = None,
) -> Execution:
    """The exact statement with its whole stage 1 read from the version's build-time summary (branch cube13,
    sandbox.summary.cube, chosen by sandbox.service.strategy from the query text and the version's statistics
    only): per group the one combination of the summarised dimensions its keys and filter pin, its counts and
    aggregates computed at build by DuckDB's own functions over exactly that combination's rows. No row of the
    table is read (the statement scans the summary's rows of the set, a number fixed per version and set, with
    the buyer's filter on each), and every key tuple of the set is a group, `__kept` where a combination passes,
    as the seeded stage 1 marks its groups. The same columns as the seeded exact stage 1, then the same
    masking, decision and stage 2 in one statement and the same second statement for an empty answer
    (_exact_statement). Without a cube statement it runs execute_summary's fallback, execute_two_level.
    `summaries` (branch rt15): the version's summary connection (open_summary), where the statement and the empty
    answer's statement run from prepared plans; the checks before it (_refused) still use `connection`.
    `groups` (branch every19): an estimate of the set's groups from the distinct counts buyers see
    (summary.cube_groups); at most EVERY_GROUP_LIMIT, every group comes back and is filtered and counted here
    (_every_group)."""
    if not cube:
        return execute_two_level(connection, plan, max_rows, stats)
    started = time.process_time()
    refused = _refused(connection, plan, stats, started)
    if refused is not None:
        return refused
    # Seeded form: every key tuple of the set is a group, `__kept` those a combination passes (summary.cube).
    # With `summaries` (branch rt15) its statements run on the version's summary connection, from a prepared plan.
    runner = connection if summaries is None else _OnSummary(summaries, connection, cube)
    every_group = groups is not None and 0 < groups <= EVERY_GROUP_LIMIT
    return _exact_statement(runner, plan, cube, max_rows, "cube", started, seeded=True, every_group=every_group)


class _OnSummary:
    """Runs execute_cube's statements on the summary connection (Summaries.execute); a statement DuckDB cannot
    prepare there (it names something the connection does not hold) runs on the version's connection, as before.
    Whether it can is a matter of the statement's text and the tables' schema, never of rows."""

    def __init__(self, summaries: Summaries, connection: duckdb.DuckDBPyConnection, cube: str = "") -> None:
        self.summaries = summaries
        self.connection = connection
        self.cube = cube

    def execute(self, statement: str) -> duckdb.DuckDBPyConnection:
        try:
            return self.summaries.execute(statement, self.cube)
        except Unprepared:
            return self.connection.execute(statement)
