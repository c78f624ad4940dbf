"""Red team red9 (issue 9, session 6): one hidden row must not move the work by more than a row's work.

docs/sandbox.md states the rule: "adding or removing one hidden row may change the work by about that
row's work, never by a pass, a row group or a table". These tests replay the statements the sandbox ran,
with the hidden fact true and false, under DuckDB's profiler with the sandbox's settings, and compare the
rows every operator handled. The answers are the same on both sides (every group suppressed).

Finding (xfail, strict): a join whose key is an expression of the root table (`CASE WHEN f.dest = 'LEX'
THEN f.origin ELSE 'none' END = w.origin`) routes every row but the hidden one to a key the other table
lacks, and the hidden one to a key thousands of rows share: one row's work times the fan-out. Grouped by a
column of the joined table it becomes thousands of suppressed groups against none. Measured through a
worker (bench/red9_oracles.py, docs/benchmarks.md "red9"): 1,176 against 123 ms on a flights-like table
of 336,776 rows joined to 600,000 rows, p = 0.0002 over 10 alternations, the answers empty on both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import execute_folded, execute_plan, execute_single
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import profile_statements, replaying_connection, write_parquet

FLIGHTS = 4_000
WEATHER = 3_000  # 3 origins: 1,000 weather rows per origin

POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 10,
        "tables": {
            "flights": {
                "privacy_unit": "tailnum",
                "dimensions": ["day", "dest", "origin"],
                "measures": ["arr_delay"],
                "bounds": {"arr_delay": {"min": -100, "max": 1000}},
            },
            "weather": {
                "privacy_unit": "station",
                "dimensions": ["origin", "hour_id"],
                "measures": ["temp"],
                "bounds": {"temp": {"min": -50, "max": 50}},
            },
        },
    }
)
SIZES = {"flights": FLIGHTS, "weather": WEATHER}
ORIGINS = ["EWR", "JFK", "LGA"]


def _flights(hidden: str) -> list[dict[str, Any]]:
    """One flight (the hidden fact) goes to `hidden`: 'LEX' on the fact side, 'ZZZ' on the control."""
    return [
        {
            "tailnum": f"N{i % 300}",
            "day": i % 31 + 1,
            "dest": hidden if i == FLIGHTS // 2 else f"D{i % 40:03d}",
            "origin": ORIGINS[i % 3],
            "arr_delay": i % 90 - 20,
        }
        for i in range(FLIGHTS)
    ]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, dict[str, Path]]:
    types = {"tailnum": "VARCHAR", "day": "INTEGER", "dest": "VARCHAR", "origin": "VARCHAR", "arr_delay": "INTEGER"}
    weather = [
        {"origin": ORIGINS[i % 3], "hour_id": i // 3, "station": f"S{i % 60}", "temp": i % 80 - 30}
        for i in range(WEATHER)
    ]
    found: dict[bool, dict[str, Path]] = {}
    for fact, hidden in ((True, "LEX"), (False, "ZZZ")):
        folder = tmp_path_factory.mktemp(f"red9-{hidden}")
        found[fact] = {
            "flights": write_parquet(folder / "flights.parquet", _flights(hidden), types),
            "weather": write_parquet(
                folder / "weather.parquet",
                weather,
                {"origin": "VARCHAR", "hour_id": "INTEGER", "station": "VARCHAR", "temp": "INTEGER"},
            ),
        }
    return found


class Replay:
    """A connection configured as the sandbox's (tests.sandbox.conftest.replaying_connection) with DuckDB's
    profiler: runs statements and reports, per statement, the rows every operator produced."""

    def __init__(self, files: dict[str, Path], output: Path) -> None:
        self.connection = replaying_connection(files)
        self.output = output

    def rows(self, statements: list[str]) -> list[int]:
        return [_operator_rows(profile) for profile in profile_statements(self.connection, self.output, statements)]


def _operator_rows(profile: dict[str, Any]) -> int:
    total = 0
    stack = list(profile.get("operator") or [])
    while stack:
        node = stack.pop()
        total += int(node.get("intermediate_rows") or 0)
        stack.extend(node.get("children") or [])
    return total


@pytest.fixture(scope="module")
def replays(
    folders: dict[bool, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[bool, Replay]]:
    out = tmp_path_factory.mktemp("red9-profile")
    found = {fact: Replay(files, out / f"{fact}.json") for fact, files in folders.items()}
    yield found
    for replay in found.values():
        replay.connection.close()


ROUTED = "(CASE WHEN f.dest = 'LEX' THEN f.origin ELSE 'none' END) = w.origin"
FANOUT_QUERIES = [
    f"SELECT w.hour_id, count(*) FROM flights f JOIN weather w ON {ROUTED} GROUP BY w.hour_id",
    f"SELECT count(*), sum(w.temp) FROM flights f JOIN weather w ON {ROUTED}",
    # the hidden value, not only presence: the LEX flight is on day 17 (i = 2,000)
    "SELECT w.hour_id, count(*) FROM flights f JOIN weather w "
    "ON (CASE WHEN f.dest = 'LEX' AND f.day > 10 THEN f.origin END) = w.origin GROUP BY w.hour_id",
    "SELECT w.hour_id, count(*) FROM flights f JOIN weather w ON w.origin = if(f.dest = 'LEX', f.origin, NULL) "
    "GROUP BY w.hour_id",
]
TOLERANCE = 50
"""Rows the one hidden row may add over all operators of a statement: its own passage through each."""


@pytest.mark.parametrize("sql", FANOUT_QUERIES)
def test_a_join_does_not_multiply_one_hidden_row(sql: str, replays: dict[bool, Replay]) -> None:
    try:
        plan = plan_query(sql, POLICY, SIZES)
    except QueryRefused as refused:
        # sbx-joinkeys: a condition on two tables compares two bare columns; nothing runs, nothing to time
        assert refused.code == "disallowed_construct", refused
        return
    for execute in (execute_single, execute_folded, execute_plan):
        seen: dict[bool, tuple[list[Any], list[int]]] = {}
        for fact, replay in replays.items():
            execution = execute(replay.connection, plan, 100_000)
            assert execution.refused is None, execution.refused
            seen[fact] = (execution.rows, replay.rows(execution.statements))
        assert seen[True][0] == seen[False][0] == [], (execute.__name__, seen)  # the same (empty) answer
        with_row, without = seen[True][1], seen[False][1]
        assert len(with_row) >= len(without)
        for a, b in zip(with_row, without, strict=False):
            assert abs(a - b) <= TOLERANCE, (execute.__name__, sql, with_row, without)


def test_the_fixture_hides_one_row(folders: dict[bool, dict[str, Path]], replays: dict[bool, Replay]) -> None:
    """Control: the two versions differ in one flight's destination only, and the plain join (a key
    column on both sides, no routing) does not reveal it beyond one row's work."""
    plan = plan_query(
        "SELECT w.hour_id, count(*) FROM flights f JOIN weather w ON f.origin = w.origin "
        "AND f.day = 2 AND w.hour_id = 5 GROUP BY w.hour_id",
        POLICY,
        SIZES,
    )
    counts = {
        fact: r.connection.execute("SELECT count(*) FROM flights WHERE dest = 'LEX'").fetchone()
        for fact, r in replays.items()
    }
    assert counts == {True: (1,), False: (0,)}
    rows = {
        fact: replay.rows(execute_single(replay.connection, plan, 1000).statements) for fact, replay in replays.items()
    }
    assert all(abs(a - b) <= TOLERANCE for a, b in zip(rows[True], rows[False], strict=False)), rows


# -- TRY() around date_trunc: a slow path a CASE can trigger for chosen rows --------------------------

FAR = "DATE '300000-01-01'"  # a valid DATE beyond the TIMESTAMP range: date_trunc raises on it
TRY_QUERIES = [
    f"SELECT count(*) FROM flights WHERE date_trunc('day', CASE WHEN dest = 'LEX' THEN {FAR} "
    "ELSE DATE '2013-01-01' END) IS NULL OR day > 0",
    f"SELECT dest, count(*) FROM flights WHERE date_trunc('month', CASE WHEN dest = 'LEX' AND day > 10 THEN {FAR} "
    "ELSE DATE '2013-01-01' END) > DATE '2000-01-01' OR day > 0 GROUP BY dest",
    f"SELECT count(*) FROM flights WHERE date_trunc('day', greatest(DATE '2013-01-01', "
    f"CASE WHEN dest = 'LEX' THEN {FAR} END)) IS NULL OR day > 0",
    "SELECT count(*) FROM flights WHERE date_trunc('year', coalesce(CASE WHEN dest <> 'LEX' "
    f"THEN DATE '2013-01-01' END, {FAR})) IS NULL OR day > 0",
]


@pytest.mark.parametrize("sql", TRY_QUERIES)
def test_no_row_level_expression_needs_try(sql: str, replays: dict[bool, Replay]) -> None:
    """Accepted row-level expressions cannot raise, so none runs inside TRY() (the slow path is the oracle).

    Found by red9 on main: date_trunc stayed in TRY() ("raises only for the data's own values"), but a CASE
    put a constant date beyond the timestamp range on chosen rows: DuckDB recomputed that vector row by row,
    25.6 against 12.6 ms through a worker (p = 0.0002, 40 alternations), the same answer. Now date_trunc()
    takes a date column only (sandbox.syntax.guard), and these are refused."""
    try:
        plan = plan_query(sql, POLICY)
    except QueryRefused as refused:
        assert refused.code == "disallowed_construct"
        return
    answers = {fact: execute_single(r.connection, plan, 1000).rows for fact, r in replays.items()}
    assert answers[True] == answers[False]  # the answer says nothing; only the time did
    assert "TRY(" not in plan.template.upper(), plan.template


def test_date_trunc_of_a_column_is_still_accepted(replays: dict[bool, Replay]) -> None:
    plan = plan_query(
        "SELECT date_trunc('month', CAST(day AS TIMESTAMP)) AS m, count(*) FROM flights GROUP BY 1", POLICY
    )
    assert "TRY(" in plan.template  # the data's own dates: a recipe excludes those out of range
