"""Exact sums of DECIMAL measures (branch tpch15, issue 12): every strategy answers raw DuckDB's exact value.

A DECIMAL measure of at most 18 digits (TPC-H's prices, discounts and taxes) is summed as a DECIMAL, exactly, and
cast to DOUBLE once (sandbox.algebra.exact_decimal_sql, sandbox.service.exact_plan); an average is that sum over the
count. The cube holds the same exact sums (sandbox.summary, `__dsum<i>`). Hypothesis draws the data (random
DECIMAL(15, 2) values, some NULL) and the query; every strategy the sandbox can choose must return, bit for bit, what
raw DuckDB returns for `CAST(sum(x) AS DOUBLE)` (its exact DECIMAL sum, cast) and `CAST(sum(x) AS DOUBLE) / count(x)`.
Before the change the sums ran in DOUBLE, rounded in an order that differs between strategies (the two-level
statement adds per-pair partials): the property failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from products.storage import summary_path, table_statistics
from sandbox.engine import (
    TableStatistics,
    execute_bits,
    execute_cube,
    execute_folded,
    execute_plan,
    execute_single,
    execute_summary,
    execute_two_level,
)
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, cube_for, cube_groups, exact_plan, plan_query, summary_for
from sandbox.summary import SUMMARY_PREFIX
from tests.sandbox.conftest import replaying_connection, write_parquet
from tests.support.cube_connections import with_quality_counts

K = 3
UNITS = 6
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": K,
        "tables": {
            "t": {
                "privacy_unit": "uid",
                "dimensions": ["g", "h"],
                "measures": ["p", "d", "x"],
                "bounds": {"p": {"min": -1000, "max": 1000}, "d": {"min": 0, "max": 1}, "x": {"min": 0, "max": 1}},
            }
        },
    }
)
TYPES = {"uid": "INTEGER", "g": "INTEGER", "h": "VARCHAR", "p": "DECIMAL(15,2)", "d": "DECIMAL(15,2)"}
TYPES |= {"x": "DECIMAL(15,2)"}
ROLES = {"uid": "privacy_unit", "g": "dimension", "h": "dimension", "p": "measure", "d": "measure", "x": "measure"}
BOUNDS = {"p": (-1000.0, 1000.0), "d": (0.0, 1.0), "x": (0.0, 1.0)}

QUERIES = [
    # the cube's shape: plain keys, sums and averages of one measure
    "SELECT g, sum(p) AS s, avg(p) AS a, count(*) AS n FROM t GROUP BY g",
    "SELECT g, h, sum(p) AS s, avg(d) AS a, sum(d) AS s2 FROM t GROUP BY g, h",
    "SELECT h, sum(p) AS s FROM t WHERE g = 1 GROUP BY h",
    "SELECT sum(p) AS s, avg(p) AS a FROM t",
    # products and affine forms (TPC-H's q1 and q6), exact from the declared bounds
    "SELECT g, sum(p * (1 - d)) AS s, sum(p * d) AS s2, count(*) AS n FROM t GROUP BY g",
    "SELECT g, h, sum(p * (1 - d) * (1 + x)) AS s, avg(p * d) AS a FROM t GROUP BY g, h",
    "SELECT g, sum(-p + 2 * d) AS s, avg(0.5 * p - d) AS a FROM t WHERE h = 'b' GROUP BY g",
    "SELECT g, sum(p) AS s FROM t WHERE h = 'a' GROUP BY g ORDER BY s DESC",
]

_CALL = re.compile(r"\b(sum|avg)\(")


def raw_sql(sql: str) -> str:
    """`sql` for raw DuckDB: each sum(x) as `CAST(sum(x) AS DOUBLE)`, each avg(x) as that over count(x)."""
    out, i = [], 0
    while (found := _CALL.search(sql, i)) is not None:
        depth, j = 1, found.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        argument = sql[found.end() : j - 1]
        total = f"CAST(sum({argument}) AS DOUBLE)"
        out.append(sql[i : found.start()] + (total if found.group(1) == "sum" else f"({total} / count({argument}))"))
        i = j
    return "".join(out) + sql[i:]


cents = st.integers(min_value=-100_000, max_value=100_000).map(lambda c: Decimal(c).scaleb(-2))
fractions = st.integers(min_value=0, max_value=100).map(lambda c: Decimal(c).scaleb(-2))


@st.composite
def tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Every (g, h) group holds every unit (so every group and cell passes k), then random rows, some NULL."""
    rows = [
        {"uid": u, "g": g, "h": h, "p": draw(cents), "d": draw(fractions), "x": draw(fractions)}
        for u in range(UNITS)
        for g in (0, 1)
        for h in ("a", "b")
    ]
    extra = st.fixed_dictionaries(
        {
            "uid": st.integers(0, UNITS - 1),
            "g": st.integers(0, 1),
            "h": st.sampled_from(["a", "b"]),
            "p": st.one_of(st.none(), cents),
            "d": st.one_of(st.none(), fractions),
            "x": fractions,
        }
    )
    return rows + draw(st.lists(extra, max_size=40))


def _paths(connection: duckdb.DuckDBPyConnection, files: dict[str, TableFile]) -> dict[str, Callable[[Any], Any]]:
    stats = TableStatistics(connection, {}, "v")
    shown = with_quality_counts(files)  # the distinct counts buyers see, which summary.cube_groups reads
    return {
        "single": lambda plan: execute_single(connection, plan, 10_000),
        "two-level": lambda plan: execute_two_level(connection, plan, 10_000),
        "folded": lambda plan: execute_folded(connection, plan, 10_000, stats),
        "staged": lambda plan: execute_plan(connection, plan, 10_000, stats),
        "bits": lambda plan: execute_bits(connection, plan, 10_000, stats, spans=[(0, UNITS)]),
        "summary": lambda plan: execute_summary(connection, plan, 10_000, stats, summary_for(plan, files) or ""),
        "cube": lambda plan: execute_cube(connection, plan, 10_000, stats, cube_for(plan, files) or ""),
        # Branch every19: every group to the worker, its masks arithmetic on DECIMAL sums too.
        "cube, every group": lambda plan: execute_cube(
            connection, plan, 10_000, stats, cube_for(plan, files) or "", groups=cube_groups(plan, shown)
        ),
    }


COUNTER = iter(range(1_000_000))


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=tables(), sql=st.sampled_from(QUERIES))
def test_every_strategy_answers_the_exact_decimal_sum(rows: list[dict[str, Any]], sql: str, tmp_path: Path) -> None:
    note(sql)
    path = write_parquet(tmp_path / f"t{next(COUNTER)}.parquet", rows, TYPES)
    statistics = table_statistics(path, list(TYPES), ROLES, BOUNDS)
    files = {"t": TableFile("t", path, len(rows), statistics=statistics)}
    with duckdb.connect() as raw:
        raw.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
        expected = sorted(raw.execute(raw_sql(sql)).fetchall(), key=repr)
    connection = replaying_connection({"t": path})
    try:
        connection.execute(f"CREATE TABLE \"{SUMMARY_PREFIX}t\" AS SELECT * FROM read_parquet('{summary_path(path)}')")
        plan = exact_plan(plan_query(sql, POLICY, {"t": len(rows)}), files)
        answers = {name: sorted(run(plan).rows, key=repr) for name, run in _paths(connection, files).items()}
    finally:
        connection.close()
    differing = {name: found for name, found in answers.items() if found != expected}
    assert not differing, (sql, expected, differing)


def test_tpch_shapes_take_the_cube_and_keep_double_answers(tmp_path: Path) -> None:
    """The cube answers a sum and an average of a DECIMAL measure (branch tpch15; before, only integer measures), and
    the answers stay DOUBLE (the API returns numbers as before, never a DECIMAL's exact text)."""
    rows = [
        {"uid": u, "g": u % 2, "h": "a", "p": Decimal("0.10"), "d": Decimal("0.20"), "x": Decimal(0)} for u in range(12)
    ]
    path = write_parquet(tmp_path / "t.parquet", rows, TYPES)
    files = {"t": TableFile("t", path, len(rows), statistics=table_statistics(path, list(TYPES), ROLES, BOUNDS))}
    plan = exact_plan(plan_query(QUERIES[0], POLICY, {"t": len(rows)}), files)
    assert cube_for(plan, files) is not None
    connection = replaying_connection({"t": path})
    try:
        connection.execute(f"CREATE TABLE \"{SUMMARY_PREFIX}t\" AS SELECT * FROM read_parquet('{summary_path(path)}')")
        found = execute_cube(connection, plan, 100, None, cube_for(plan, files) or "").rows
    finally:
        connection.close()
    # six units of 0.10 each: exactly 0.6 (a DOUBLE sum in row order gives 0.6000000000000001)
    assert found == [(0, 0.6, 0.6 / 6, 6), (1, 0.6, 0.6 / 6, 6)]
    assert all(type(v) is float for row in found for v in row[1:3])


def test_double_measures_and_quoted_text_are_left_as_they_are(tmp_path: Path) -> None:
    """Only DECIMAL measures are rewritten: a DOUBLE measure's plan is the same plan (its answers the same JSON
    values as before); a string literal that spells an aggregate is never read as one."""
    rows = [
        {"uid": u, "g": u % 2, "h": "a", "p": Decimal("0.10"), "d": Decimal("0.20"), "x": Decimal(0)} for u in range(6)
    ]
    path = write_parquet(tmp_path / "t.parquet", rows, TYPES | {"p": "DOUBLE"})
    statistics = table_statistics(path, list(TYPES), ROLES, BOUNDS)
    files = {"t": TableFile("t", path, len(rows), statistics=statistics)}
    plan = plan_query("SELECT g, sum(p) AS s, avg(p) AS a FROM t GROUP BY g", POLICY, {"t": len(rows)})
    assert exact_plan(plan, files) is plan
    literal = 'SUM(TRY_CAST("t"."d" AS DOUBLE))'
    sql = f"SELECT g, sum(d) AS s FROM t WHERE h <> '{literal}' GROUP BY g"
    rewritten = exact_plan(plan_query(sql, POLICY, {"t": len(rows)}), files)
    assert f"'{literal}'" in rewritten.template
    assert 'CAST(SUM("t"."d") AS DOUBLE)' in rewritten.template
