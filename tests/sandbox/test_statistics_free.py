"""Statistics-free product files: DuckDB reads the same rows whatever a hidden row holds.

A flights-like product of three row groups sorted by date, with ONE flight to 'LEX' (the hidden fact),
is written as every version now is (products.storage.write_product_parquet: no min/max statistics, no
Bloom filter, no page index). The sandbox's statements for a query that names the hidden value and for
one that names an absent value (or a comparison the statistics would have made false) must scan the
same: per Parquet scan operator, the same rows, row groups and bytes, by DuckDB's own profile
(EXPLAIN ANALYZE on the worker's locked connection).

The checks that the measure can fail: the same pairs over a file WITH statistics and the optimizers a
statistics-free version gets back do differ (so versions built before keep the four switches), and
so does a statistics-free file once filter pushdown is back (so it stays off).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from products import storage
from sandbox import engine
from sandbox.engine import EngineLimits, TableStatistics, execute_plan, open_locked
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, plan_query, statistics_free

ROWS = 300_000
"""Three row groups of products.storage's 122,880 rows."""

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 10,
        "tables": {
            "flights": {
                "privacy_unit": "tailnum",
                "dimensions": ["month", "day", "dest"],
                "measures": ["arr_delay"],
                "bounds": {"arr_delay": {"min": -100, "max": 1000}},
                "hidden": [],
            }
        },
    }
)

LIMITS = EngineLimits(timeout_seconds=30, workers=1)

FLIGHTS = f"""SELECT (i % 12) + 1 AS month, (i % 31) + 1 AS day,
    CASE WHEN i = {ROWS // 2} THEN 'LEX' ELSE 'D' || lpad(((i * 7919) % 100)::VARCHAR, 3, '0') END AS dest,
    'N' || ((i * 13) % 4000)::VARCHAR AS tailnum, ((i * 31) % 300) - 50 AS arr_delay
    FROM range({ROWS}) t(i) ORDER BY month, day"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("statistics-free")
    plain, old = directory / "plain" / "flights.parquet", directory / "old" / "flights.parquet"
    plain.parent.mkdir()
    old.parent.mkdir()
    with duckdb.connect() as connection:
        storage.write_product_parquet(connection, FLIGHTS, plain)
        # As versions were written before: DuckDB's defaults, statistics and Bloom filters included.
        connection.execute(f"COPY ({FLIGHTS}) TO '{old}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
        groups = connection.execute(f"SELECT count(DISTINCT row_group_id) FROM parquet_metadata('{plain}')").fetchone()
    assert groups == (3,)
    return {"plain": plain, "old": old}


@pytest.fixture(scope="module")
def connections(files: dict[str, Path]) -> Iterator[dict[str, duckdb.DuckDBPyConnection]]:
    opened = {
        # A statistics-free version, as the worker opens it (engine.disabled_optimizers).
        "plain": open_locked({"flights": files["plain"]}, LIMITS, statistics_free=True),
        # A version built before, as the worker opens it: the four switches.
        "old": open_locked({"flights": files["old"]}, LIMITS, statistics_free=False),
        # Counter-examples: the old file with the statistics-free switches.
        "old-relaxed": open_locked({"flights": files["old"]}, LIMITS, statistics_free=True),
    }
    yield opened
    for connection in opened.values():
        connection.close()


def _scans(node: dict[str, Any], found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    if node.get("name") in ("READ_PARQUET", "TABLE_SCAN") and "rows_scanned" in node:
        found.append((node["rows_scanned"], node.get("row_groups_scanned"), node.get("bytes_scanned")))
    for child in node.get("children", []):
        _scans(child, found)
    return found


def profile(connection: duckdb.DuckDBPyConnection, sql: str, *, seeded: bool = True) -> list[tuple[Any, ...]]:
    """Per statement the sandbox runs for `sql`: its first words and what each Parquet scan operator
    read (rows, row groups, bytes), by DuckDB's profile of that statement. `seeded=False`: the plan's
    unseeded statements (no `<filter> OR <seed>` in WHERE, so a filter can be pushed into the scan)."""
    plan = plan_query(sql, POLICY)
    if not seeded:
        plan = dataclasses.replace(plan, seeded=None)
    execution = execute_plan(connection, plan, 1000, TableStatistics(connection, {}, version="flights"))
    profiled: list[tuple[Any, ...]] = []
    connection.execute("BEGIN TRANSACTION")
    try:
        for statement in execution.statements:
            raw = connection.execute(f"EXPLAIN (ANALYZE, FORMAT json) {statement}").fetchall()[0][1]
            tree = json.loads(raw)
            scans = [s for operator in tree["operator"] for s in _scans(operator, [])]
            # (The profile's total of bytes read from files is left out: with two threads its read-ahead
            # varies from run to run of the same statement.)
            profiled.append((" ".join(statement.split()[:4]), scans))
    finally:
        connection.execute("ROLLBACK")
    return profiled


POINT = "SELECT count(*) AS n, sum(arr_delay) AS delay FROM flights WHERE dest = '{}'"
GROUPED = "SELECT dest, count(*) AS n, avg(arr_delay) AS delay FROM flights WHERE dest IN ('{}', 'D001') GROUP BY dest"
RANGE = "SELECT count(*) AS n, sum(arr_delay) AS delay FROM flights WHERE month = 12 AND day > {}"


def test_the_product_writer_leaves_no_statistics(files: dict[str, Path]) -> None:
    with duckdb.connect() as connection:
        assert storage.statistics_free(connection, files["plain"])
        assert not storage.statistics_free(connection, files["old"])


def test_a_hidden_value_present_or_absent_scans_the_same(connections) -> None:
    plain = connections["plain"]
    for template in (POINT, GROUPED):
        present, absent = profile(plain, template.format("LEX")), profile(plain, template.format("LEY"))
        assert present == absent
        assert any(scans for _, scans in present)  # the profile does see the scans
    assert profile(plain, RANGE.format(28)) == profile(plain, RANGE.format(31))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.text(alphabet="ABDELXYZ0123", min_size=1, max_size=4),
    day=st.integers(min_value=-3, max_value=40),
)
def test_whatever_value_a_query_names_the_scans_are_the_same(connections, value: str, day: int) -> None:
    plain = connections["plain"]
    assert profile(plain, POINT.format(value)) == profile(plain, POINT.format("LEX"))
    assert profile(plain, GROUPED.format(value)) == profile(plain, GROUPED.format("LEX"))
    assert profile(plain, RANGE.format(day)) == profile(plain, RANGE.format(28))


def test_versions_built_before_keep_the_four_switches(connections, files: dict[str, Path]) -> None:
    # Over a file with statistics, the optimizers a statistics-free version gets back would skip work by
    # them: 'LEY' lies outside the file's range of dest, so statistics propagation drops the scan.
    relaxed = connections["old-relaxed"]
    assert profile(relaxed, POINT.format("LEX")) != profile(relaxed, POINT.format("LEY"))
    assert profile(relaxed, RANGE.format(28)) != profile(relaxed, RANGE.format(31))
    # So a version whose stored statistics do not say statistics-free gets the full switches...
    old = TableFile(name="flights", path=files["old"], row_count=ROWS, statistics={"units": {}, "nulls": []})
    assert not statistics_free({"flights": old})
    assert engine.disabled_optimizers(LIMITS, statistics_free=False) == engine.DISABLED_OPTIMIZERS
    # ...with which its scans do not depend on the hidden value.
    full = connections["old"]
    assert profile(full, POINT.format("LEX")) == profile(full, POINT.format("LEY"))
    assert profile(full, RANGE.format(28)) == profile(full, RANGE.format(31))
    new = TableFile(name="flights", path=files["plain"], row_count=ROWS, statistics={"statistics_free": True})
    assert statistics_free({"flights": new})
    assert not statistics_free({"flights": new, "other": old})


def test_filter_pushdown_stays_off_even_without_statistics(files: dict[str, Path], monkeypatch) -> None:
    # With the filter evaluated inside the Parquet scan, DuckDB skips the pages of a row group whose
    # dictionary lacks the value and does not decode the other columns where no row passes.
    monkeypatch.setattr(engine, "STATISTICS_FREE_DISABLED_OPTIMIZERS", "join_filter_pushdown")
    with engine.locked_connection({"flights": files["plain"]}, LIMITS, statistics_free=True) as pushed:
        # Unseeded: since branch sbx-seed the staged path's WHERE is `(<filter>) OR <seed>`, which DuckDB does
        # not push into the scan at all; the plain statements show what the switch itself prevents.
        assert profile(pushed, POINT.format("LEX"), seeded=False) != profile(pushed, POINT.format("LEY"), seeded=False)


def _listed(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    """The recheck's list of undecided hashes when the sandbox runs `sql`."""
    plan = plan_query(sql, POLICY)
    execution = execute_plan(connection, plan, 1000, TableStatistics(connection, {}, version="flights"))
    assert execution.methods == ["rows", "exact"]
    listed: list[tuple[Any, ...]] = []
    connection.execute("BEGIN TRANSACTION")
    try:
        for statement in execution.statements:
            connection.execute(statement)
            if '"__undecided" AS' in statement:
                listed = connection.execute('SELECT "__h" FROM "__undecided" ORDER BY 1').fetchall()
    finally:
        connection.execute("ROLLBACK")
    return listed


def test_the_recheck_list_is_never_empty(connections) -> None:
    # DuckDB's mark join stops probing when its build side is empty: the recheck's list of undecided
    # groups always holds a sentinel, so whether any group was undecided does not show.
    plain = connections["plain"]
    # Every month passes by its row count alone: only the sentinel.
    assert _listed(plain, "SELECT month, count(*) AS n FROM flights GROUP BY month") == [(engine.SENTINEL,)]
    # Without group keys stage 1 counts exactly and nothing is rechecked: had the one group been
    # rechecked only when undecided, every row's mark would flip with that bit, and the buyer's filter
    # would run over all rows or over none.
    for day in (28, 31):
        plan = plan_query(RANGE.format(day), POLICY)
        execution = execute_plan(plain, plan, 1000, TableStatistics(plain, {}, version="flights"))
        assert execution.methods == ["exact"]
        assert not any('"__undecided"' in s for s in execution.statements)


@pytest.mark.parametrize(
    "select",
    [
        "SELECT 1::INTEGER AS a, 'x' AS b WHERE false",
        "SELECT i AS a, [i, i + 1] AS l, {'k': i, 's': 'v' || i} AS st, map(['a'], [i]) AS m, NULL::VARCHAR AS n, "
        "i::DOUBLE / 3 AS d, i::DECIMAL(18, 3) AS dec, DATE '2020-01-01' + i::INTEGER AS dt, i % 2 = 0 AS b "
        "FROM range(5000) t(i)",
    ],
)
def test_the_rewritten_footer_keeps_every_value(tmp_path: Path, select: str) -> None:
    # The footer is re-encoded field by field: nested, NULL-only, empty and decimal columns read back whole.
    path = tmp_path / "t.parquet"
    with duckdb.connect() as connection:
        storage.write_product_parquet(connection, select, path)
        assert storage.statistics_free(connection, path)
        stored = connection.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY 1").fetchall()
        assert stored == connection.execute(f"SELECT * FROM ({select}) ORDER BY 1").fetchall()
