"""The people table as a Parquet file, and a runner that goes through the full sandbox path."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sandbox.engine import EngineLimits
from sandbox.policy import ProtectionPolicy
from sandbox.service import QueryResult, TableFile, run_query
from tests.factories import PEOPLE_POLICY, people_rows


@pytest.fixture(scope="session")
def people_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sandbox") / "people.parquet"
    rows = people_rows()
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE people (person_id VARCHAR, name VARCHAR, region VARCHAR, category VARCHAR, "
        "month INTEGER, amount INTEGER, trips INTEGER)"
    )
    connection.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?)", [list(r.values()) for r in rows])
    connection.execute(f"COPY people TO '{path}' (FORMAT parquet)")
    connection.close()
    return path


@pytest.fixture(scope="session")
def policy() -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(PEOPLE_POLICY)


@pytest.fixture(scope="session")
def run(people_file: Path, policy: ProtectionPolicy):
    tables = {"people": TableFile(name="people", path=people_file, row_count=180, column_bytes={"amount": 100})}

    def _run(sql: str, policy_override: ProtectionPolicy | None = None) -> QueryResult:
        return run_query(sql, policy_override or policy, tables, EngineLimits(timeout_seconds=10), 10_000)

    return _run
