"""Red team sbx-red15 (issue 9, session 11): the ORDER of an answer's rows must not depend on hidden rows.

Found: a grouped answer without ORDER BY came back in the order DuckDB's hash aggregate first met each group,
i.e. the order of the groups' earliest rows in the version's file; `LIMIT` without ORDER BY, and ties under
ORDER BY, picked groups the same way. A file is stored in its source's order (the demo's flights by date and
time), so the order is a hidden fact about single rows: here the file is sorted by a hidden column
(`minute`), and two versions hold the SAME rows except that the two earliest flights (unit 0 to ATL, unit 2
to ORD, each in a group of 10 units) swap minutes. Every aggregate is the same in both, yet
`SELECT dest, count(*) FROM t GROUP BY dest` answered ATL, ORD, BOS on one and ORD, ATL, BOS on the other:
the destination of the single earliest flight, what `arg_min(dest, minute)` (refused by name) would give;
`... LIMIT 1` answered it alone. With filters on dimensions, the same reads the first row of any subset.

Fixed by construction (validator.py): every grouped query's ORDER BY ends with every output column by
position (`ORDER BY <the buyer's terms>, 1, 2, ..., n`), so the rows' order, and what LIMIT and OFFSET keep,
is a function of the answer's values alone; rows equal in every column are indistinguishable. Both tests
failed before the fix (the service path: ATL/ORD first as the file said; every strategy alike).

Then found against that fix: -0.0 and 0.0 are equal to ORDER BY but not in JSON, so `(CASE WHEN dest = 'ATL'
THEN -1e0 ELSE 1e0 END) * 0e0` without the key in the output still answered [-0.0, 0.0] or [0.0, -0.0] as
the file said. Fixed in service._jsonable: a zero leaves as 0.0, whatever its sign (failed before).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sandbox.engine import (
    TableStatistics,
    execute_bits,
    execute_folded,
    execute_plan,
    execute_single,
    execute_two_level,
)
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, plan_query, run_query
from tests.sandbox.conftest import LIMITS, replaying_connection, write_parquet

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 5,
        "tables": {
            "t": {
                "privacy_unit": "uid",
                "dimensions": ["dest", "g"],
                "measures": ["m"],
                "hidden": ["minute"],
                "bounds": {"m": {"min": 0, "max": 100}},
            }
        },
    }
)
TYPES = {"uid": "INTEGER", "dest": "VARCHAR", "g": "INTEGER", "minute": "INTEGER", "m": "INTEGER"}
ROWS = 302


def _rows(first: str) -> list[dict[str, Any]]:
    """300 flights of 30 aircraft (10 per destination), then two more whose minutes say which came first."""
    rows = [
        {"uid": i % 30, "dest": ["ATL", "BOS", "ORD"][i % 3], "g": i % 2, "minute": 10 + i, "m": i % 50}
        for i in range(300)
    ]
    rows += [
        {"uid": 0, "dest": "ATL", "g": 0, "minute": 0 if first == "ATL" else 1, "m": 5},
        {"uid": 2, "dest": "ORD", "g": 0, "minute": 0 if first == "ORD" else 1, "m": 5},
    ]
    return sorted(rows, key=lambda row: row["minute"])  # stored in time order, as a source would


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sbx-red15-order")
    return {first: write_parquet(folder / f"{first}.parquet", _rows(first), TYPES) for first in ("ATL", "ORD")}


QUERIES = [
    "SELECT dest, count(*) AS n, sum(m) AS s FROM t GROUP BY dest",
    "SELECT dest, count(*) AS n FROM t GROUP BY dest LIMIT 1",
    "SELECT dest, count(*) AS n FROM t WHERE g = 0 GROUP BY dest",
    "SELECT dest, count(*) AS n FROM t GROUP BY dest OFFSET 1",
    # ties under the buyer's ORDER BY (ATL and ORD both have 101 rows)
    "SELECT dest, count(*) AS n FROM t GROUP BY dest ORDER BY n DESC LIMIT 1",
    "SELECT dest, count(*) AS n FROM t GROUP BY dest ORDER BY n DESC",
    "SELECT dest, g, count(*) AS n FROM t GROUP BY dest, g ORDER BY g",
    # rows equal in every column as ORDER BY compares them but not in their JSON: -0.0 and 0.0
    "SELECT (CASE WHEN dest = 'ATL' THEN -1e0 ELSE 1e0 END) * 0e0 AS z FROM t "
    "WHERE dest IN ('ATL', 'ORD') GROUP BY dest",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_the_order_of_an_answer_does_not_tell_which_row_was_stored_first(
    sql: str, files: dict[str, Path], pool: WorkerPool
) -> None:
    answers = {
        first: run_query(sql, POLICY, {"t": TableFile(name="t", path=path, row_count=ROWS)}, LIMITS, 10_000, pool).rows
        for first, path in files.items()
    }
    assert answers["ATL"], sql
    # As the buyer reads them: JSON text (where -0.0 is not 0.0, though Python's == says they are equal).
    assert json.dumps(answers["ATL"]) == json.dumps(answers["ORD"]), (sql, answers)


@pytest.fixture(scope="module")
def connections(files: dict[str, Path]) -> Iterator[dict[str, duckdb.DuckDBPyConnection]]:
    opened = {first: replaying_connection({"t": path}) for first, path in files.items()}
    yield opened
    for connection in opened.values():
        connection.close()


def _execute(path: str, connection: duckdb.DuckDBPyConnection, plan: Any, stats: TableStatistics) -> Any:
    if path == "bits":
        return execute_bits(connection, plan, 10_000, stats, spans=[(0, 29)])
    run = {"single": execute_single, "two-level": execute_two_level, "folded": execute_folded, "staged": execute_plan}
    return run[path](connection, plan, 10_000, stats)


@pytest.mark.parametrize("path", ["single", "two-level", "folded", "staged", "bits"])
def test_every_strategy_orders_the_answer_by_its_values(
    path: str, connections: dict[str, duckdb.DuckDBPyConnection]
) -> None:
    for sql in QUERIES:
        plan = plan_query(sql, POLICY, {"t": ROWS})
        answers = {
            first: [tuple(row) for row in _execute(path, connection, plan, TableStatistics(connection, {}, first)).rows]
            for first, connection in connections.items()
        }
        assert answers["ATL"], sql
        assert answers["ATL"] == answers["ORD"], (path, sql, answers)
