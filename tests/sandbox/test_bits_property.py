"""Property: counting units by bitmaps (engine.execute_bits, sandbox.bits) answers exactly as the exact strategies.

Random small datasets whose privacy unit is a BIGINT (often NULL, negative, at either end of BIGINT's range,
so at the span's edges by construction: the span is the build's least and greatest unit), measures often
NULL, and random queries of one table (0-2 group keys, a mix of aggregates, optional WHERE, HAVING, ORDER
BY / LIMIT) run through a worker by bitmaps, by the one exact statement (execute_single) and staged
(execute_plan): rows, counts of groups and of suppressed groups must be identical, value and type. Without
HAVING and LIMIT the bitmaps' answer is also compared with a plain Python reference. The spans are read by
the build's own function (products.storage.table_statistics), and the strategy must pick the bitmaps for
such a small product (sandbox.service.strategy). A join of two tables, each unit its own span, likewise.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from products.storage import table_statistics
from sandbox.bits import BITS_COPIES, BITS_MEMORY, bits_spans
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import TableFile, bits_for, plan_query, row_counts, strategy
from tests.sandbox.conftest import write_parquet
from tests.sandbox.test_two_level_property import _plain, _policy, _reference, _sql, _typed, queries

TYPES = {"u": "BIGINT", "g": "VARCHAR", "h": "VARCHAR", "x": "INTEGER", "y": "DOUBLE"}
ROLES = {"u": "privacy_unit", "g": "dimension", "h": "dimension", "x": "measure", "y": "measure"}
BASES = [-(2**63), -70, -3, 0, 2**63 - 1 - 40]
"""Where a dataset's units start: BIGINT's least value, negatives, zero, and 40 below BIGINT's greatest."""


@st.composite
def datasets(draw: st.DrawFn) -> list[dict[str, Any]]:
    base = draw(st.sampled_from(BASES))
    offsets = st.sampled_from([0, 1, 2, 5, 20, 39, 40])  # 0 and 40: the dataset's own edges
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "u": st.one_of(st.none(), offsets.map(lambda o: base + o)),
                    "g": st.sampled_from(["a", "b", "c"]),
                    "h": st.sampled_from(["p", "q"]),
                    "x": st.one_of(st.none(), st.integers(-100, 100)),
                    "y": st.one_of(st.none(), st.integers(-400, 400).map(lambda v: v / 4)),
                }
            ),
            min_size=1,
            max_size=50,
        )
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=datasets(), q=queries(), widen=st.sampled_from([(0, 0), (0, 3), (5, 0)]))
def test_bits_answer_exactly_as_the_exact_strategies(
    workers: WorkerPool, rows: list[dict[str, Any]], q: dict[str, Any], widen: tuple[int, int]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        stats = table_statistics(path, list(TYPES), ROLES)
        units = [r["u"] for r in rows if r["u"] is not None]
        if not units:
            assert "u" not in stats["spans"]  # no span, no bitmaps: another path counts
            return
        assert stats["spans"]["u"] == [min(units), max(units)]
        tables = {"t": TableFile(name="t", path=path, row_count=len(rows), statistics=stats)}
        plan = plan_query(_sql(q), _policy(q["k"]), row_counts(tables))
        spans = bits_for(plan, tables)
        assert spans == ((min(units), max(units)),)
        # Bits where the version has no unit summary (built before branch pre16); with one, the summary or cube may.
        unsummarised = {"t": replace(tables["t"], statistics={k: v for k, v in stats.items() if k != "summary"})}
        assert strategy(plan, unsummarised) == "bits" and strategy(plan, tables) in ("bits", "summary", "cube")
        lo, hi = spans[0]
        # A span wider than the data (a bound, not the least and greatest) counts the same, within BIGINT.
        lo, hi = max(-(2**63), lo - widen[0]), min(2**63 - 1, hi + widen[1])
        base = Job(tables=(("t", str(path.resolve())),), plan=plan, max_rows=100)
        by_bits = workers.run(replace(base, bits=((lo, hi),)))
        single = workers.run(replace(base, single=True))
        staged = workers.run(base)
    assert by_bits.methods == ["bits"]
    ordered = q["limit"] is not None
    for other in (single, staged):
        if ordered:
            assert _typed(by_bits.rows) == _typed(other.rows)
        else:
            assert sorted(_typed(by_bits.rows)) == sorted(_typed(other.rows))
        assert (by_bits.groups, by_bits.suppressed_groups) == (other.groups, other.suppressed_groups)
    if q["having"] or ordered or "spread" in q["aggregates"]:
        return
    expected, suppressed = _reference(rows, q)
    assert sorted(map(_plain, by_bits.rows)) == sorted(map(_plain, expected))
    assert by_bits.suppressed_groups == suppressed


JOIN_TYPES = {"v": "INTEGER", "g": "VARCHAR", "d": "VARCHAR"}
JOIN_ROLES = {"v": "privacy_unit", "g": "dimension", "d": "dimension"}
JOIN_POLICY = {
    "s": {"privacy_unit": "v", "dimensions": ["g", "d"], "measures": [], "hidden": []},
}
JOINS = [
    "SELECT s.d, count(*) AS n, sum(t.x) AS sx FROM t JOIN s ON t.g = s.g GROUP BY s.d",
    "SELECT t.h, s.d, count(*) AS n FROM t JOIN s ON t.g = s.g WHERE t.h = 'p' GROUP BY t.h, s.d",
    "SELECT count(*) AS n, avg(t.y) AS ay FROM t LEFT JOIN s ON t.g = s.g",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=datasets(),
    others=st.lists(
        st.fixed_dictionaries(
            {
                "v": st.one_of(st.none(), st.integers(-6, 6)),
                "g": st.sampled_from(["a", "b", "c", "z"]),
                "d": st.sampled_from(["m", "n"]),
            }
        ),
        min_size=1,
        max_size=12,
    ),
    sql=st.sampled_from(JOINS),
    k=st.sampled_from([2, 3]),
)
def test_bits_on_joins_answer_exactly_as_the_exact_strategies(
    workers: WorkerPool, rows: list[dict[str, Any]], others: list[dict[str, Any]], sql: str, k: int
) -> None:
    policy = _policy(k).model_dump()
    policy["tables"].update(JOIN_POLICY)
    with tempfile.TemporaryDirectory() as directory:
        t = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        s = write_parquet(Path(directory) / "s.parquet", others, JOIN_TYPES)
        tables = {
            "t": TableFile("t", t, len(rows), statistics=table_statistics(t, list(TYPES), ROLES)),
            "s": TableFile("s", s, len(others), statistics=table_statistics(s, list(JOIN_TYPES), JOIN_ROLES)),
        }
        plan = plan_query(sql, ProtectionPolicy.model_validate(policy), row_counts(tables))
        stats = {name: table.statistics for name, table in tables.items()}
        spans = [stats[u.table]["spans"].get(u.column) for u in plan.units]
        if None in spans:
            return  # a unit column of NULLs only: no span, no bitmaps
        found = bits_spans(plan, stats, len(rows) + len(others))
        assert found == tuple(tuple(span) for span in spans)
        files = tuple(sorted((name, str(table.path.resolve())) for name, table in tables.items()))
        base = Job(tables=files, plan=plan, max_rows=100)
        by_bits = workers.run(replace(base, bits=found))
        single = workers.run(replace(base, single=True))
        staged = workers.run(base)
    assert by_bits.methods == ["bits"]
    for other in (single, staged):
        assert sorted(_typed(by_bits.rows)) == sorted(_typed(other.rows))
        assert (by_bits.groups, by_bits.suppressed_groups) == (other.groups, other.suppressed_groups)


def test_bitmaps_past_the_memory_bound_are_not_chosen() -> None:
    """An upper bound on the groups times the span's bytes past BITS_MEMORY: no bitmaps, whatever the data."""
    plan = plan_query("SELECT g, h, count(*) FROM t GROUP BY g, h", _policy(2))
    span = BITS_MEMORY * 8 // (4 * BITS_COPIES) + 64  # 4 groups: the bound 3 x 1, bracketed
    statistics = {"t": {"spans": {"u": [0, span]}, "cardinality": {"g": 3, "h": 1}}}
    assert bits_spans(plan, statistics, 10**12) is None
    statistics["t"]["spans"]["u"] = [0, span // 4]
    assert bits_spans(plan, statistics, 10**12) == ((0, span // 4),)
    # A key whose whole distinct count was not recorded has no bound: no bitmaps.
    assert bits_spans(plan, {"t": {"spans": {"u": [0, 10]}, "cardinality": {"g": 3}}}, 10**12) is None


def test_run_query_counts_by_bitmaps_for_a_small_integer_unit_product(workers: WorkerPool, tmp_path: Path) -> None:
    """Through the service: a version built with a span runs the bitmaps (its audit SQL says so), and answers
    as the exact statement does; one group has 3 units at the span's edges, the other 2 (suppressed at k=3)."""
    from sandbox.engine import EngineLimits
    from sandbox.service import run_query

    rows = [
        {"u": u, "g": g, "h": "p", "x": 1, "y": 0.5}
        for u, g in [(-5, "a"), (60, "a"), (0, "a"), (0, "a"), (7, "b"), (8, "b"), (None, "b")]
    ]
    path = write_parquet(tmp_path / "t.parquet", rows, TYPES)
    # A version without a unit summary (built before branch pre16, which would decide this query from it).
    statistics = {k: v for k, v in table_statistics(path, list(TYPES), ROLES).items() if k != "summary"}
    tables = {"t": TableFile("t", path, len(rows), statistics=statistics)}
    sql = "SELECT g, count(*) AS n, sum(x) AS sx FROM t GROUP BY g"
    result = run_query(sql, _policy(3), tables, EngineLimits(timeout_seconds=10, workers=1), 100, workers)
    assert "BITSTRING_AGG" in result.sql_run
    assert result.rows == [["a", 4, 4.0]]
    assert result.measurements.suppressed_groups == 1
