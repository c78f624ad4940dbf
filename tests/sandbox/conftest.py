"""Two product tables as Parquet files, and runners that go through the full sandbox path.

- `people` (unit person_id): 60 people x 3 months, see tests.factories.people_rows.
- `shops` (unit owner_id): 20 shops owned by only 5 owners, 5 shops per region. Joined to people on
  region, every group has at most 5 owners, so a join grouped by shop data is always suppressed:
  "a join where one table's units are few".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sandbox.engine import DISABLED_OPTIMIZERS, EngineLimits
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import QueryResult, TableFile, run_query
from tests.factories import PEOPLE_POLICY, people_rows

REGIONS = ["north", "south", "east", "west"]


def shops_rows() -> list[dict[str, Any]]:
    rows = []
    for shop in range(20):
        rows.append(
            {
                "shop_id": f"S{shop:03d}",
                "owner_id": f"O{shop % 5}",
                "region": REGIONS[shop % 4],
                "kind": ["food", "tools"][shop % 2],
                "rent": 1000 + shop * 10,
            }
        )
    return rows


TWO_TABLE_POLICY: dict[str, Any] = {
    "min_group_size": 10,
    "tables": {
        **PEOPLE_POLICY["tables"],
        "shops": {
            "privacy_unit": "owner_id",
            "dimensions": ["region", "kind"],
            "measures": ["rent"],
            "hidden": ["shop_id"],
            "bounds": {"rent": {"min": 0, "max": 100_000}},
        },
    },
}


PEOPLE_TYPES = {
    "person_id": "VARCHAR",
    "name": "VARCHAR",
    "region": "VARCHAR",
    "category": "VARCHAR",
    "month": "INTEGER",
    "amount": "INTEGER",
    "trips": "INTEGER",
}
SHOPS_TYPES = {"shop_id": "VARCHAR", "owner_id": "VARCHAR", "region": "VARCHAR", "kind": "VARCHAR", "rent": "INTEGER"}


def self_join_policy(dimensions: list[str], measure_max: float) -> ProtectionPolicy:
    """Tables `a` and `b` (one file, see self_join_tables): unit `u`, measure `m` within [0, measure_max]."""
    return ProtectionPolicy.model_validate(
        {
            "min_group_size": 10,
            "tables": {
                t: {
                    "privacy_unit": "u",
                    "dimensions": dimensions,
                    "measures": ["m"],
                    "bounds": {"m": {"min": 0, "max": measure_max}},
                }
                for t in ("a", "b")
            },
        }
    )


def self_join_tables(directory: Path, rows: int, select: str) -> dict[str, TableFile]:
    """One Parquet file of `rows` rows (`select` over `range(rows) t(i)`) serving as both `a` and `b`:
    the worker tests' pathological cross joins."""
    path = directory / "t.parquet"
    with duckdb.connect() as connection:
        connection.execute(f"COPY (SELECT {select} FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet)")
    return {t: TableFile(name=t, path=path, row_count=rows) for t in ("a", "b")}


def write_parquet(path: Path, rows: list[dict[str, Any]], types: dict[str, str]) -> Path:
    connection = duckdb.connect()
    columns = ", ".join(f'"{name}" {kind}' for name, kind in types.items())
    connection.execute(f"CREATE TABLE t ({columns})")
    if rows:  # one statement, a list per column (executemany sends a round per row: ~1 s per 1,000 rows)
        unnested = ", ".join(f"unnest(?::{kind}[])" for kind in types.values())
        connection.execute(f"INSERT INTO t SELECT {unnested}", [[r[c] for r in rows] for c in types])
    connection.execute(f"COPY t TO '{path}' (FORMAT parquet)")
    connection.close()
    return path


@pytest.fixture(scope="session")
def people_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sandbox") / "people.parquet"
    return write_parquet(path, people_rows(), PEOPLE_TYPES)


@pytest.fixture(scope="session")
def shops_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sandbox") / "shops.parquet"
    return write_parquet(path, shops_rows(), SHOPS_TYPES)


@pytest.fixture(scope="session")
def policy() -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(PEOPLE_POLICY)


@pytest.fixture(scope="session")
def two_table_policy() -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(TWO_TABLE_POLICY)


LIMITS = EngineLimits(timeout_seconds=10, workers=2)


@pytest.fixture(scope="session")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(LIMITS)
    yield workers
    workers.close()


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerPool]:
    """A worker pool of the test module's own (LIMITS), closed after the module's last test (the property
    tests' many examples run on it, not on the session's `pool`)."""
    pool = WorkerPool(LIMITS)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def tables(people_file: Path, shops_file: Path) -> dict[str, TableFile]:
    return {
        "people": TableFile(
            name="people",
            path=people_file,
            row_count=180,
            column_bytes={"amount": 100, "trips": 50, "region": 30, "month": 20, "category": 25, "person_id": 400},
        ),
        "shops": TableFile(
            name="shops", path=shops_file, row_count=20, column_bytes={"rent": 40, "region": 10, "kind": 10}
        ),
    }


@pytest.fixture(scope="session")
def run(tables: dict[str, TableFile], policy: ProtectionPolicy, pool: WorkerPool):
    def _run(sql: str, policy_override: ProtectionPolicy | None = None) -> QueryResult:
        return run_query(sql, policy_override or policy, {"people": tables["people"]}, LIMITS, 10_000, pool)

    return _run


@pytest.fixture(scope="session")
def run_joined(tables: dict[str, TableFile], two_table_policy: ProtectionPolicy, pool: WorkerPool):
    def _run(sql: str) -> QueryResult:
        return run_query(sql, two_table_policy, tables, LIMITS, 10_000, pool)

    return _run


def replaying_connection(files: dict[str, Path]) -> duckdb.DuckDBPyConnection:
    """A connection configured as engine.open_locked configures the sandbox's (all four optimizer
    switches off, no page index), not locked, with a view per file (and its `__row` column): for
    replaying a query's statements under DuckDB's profiler."""
    connection = duckdb.connect(
        ":memory:",
        config={"threads": 2, "preserve_insertion_order": False, "disabled_optimizers": DISABLED_OPTIMIZERS},
    )
    connection.execute("SET parquet_use_page_index = false")
    for name, path in files.items():
        # As open_locked: the hidden `__row` (the row's number in its file) the seeded statements read.
        connection.execute(
            f'CREATE VIEW "{name}" AS SELECT *, file_row_number AS "__row" FROM read_parquet(\'{path}\')'
        )
    return connection


def profile_statements(
    connection: duckdb.DuckDBPyConnection, output: Path, statements: list[str]
) -> list[dict[str, Any]]:
    """Run `statements` in one rolled-back transaction, each under DuckDB's JSON profiler: their profiles."""
    found: list[dict[str, Any]] = []
    connection.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            connection.execute("SET enable_profiling = 'json'")
            connection.execute(f"SET profiling_output = '{output}'")
            connection.execute(statement).fetchall()
            connection.execute("SET enable_profiling = 'no_output'")
            found.append(json.loads(output.read_text()))
    finally:
        connection.execute("ROLLBACK")
    return found
