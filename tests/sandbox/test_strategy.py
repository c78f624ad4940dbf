"""The threshold strategy is chosen by cost from public data only, and every strategy answers alike.

sandbox.service.strategy reads the query text, the version's row counts, its row bound M and the
distinct counts of its quality summary; never the rows a filter selects (docs/sandbox.md, "Choosing
the strategy by cost"). The pre-run checks' verdict is decided once per statement and version.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.engine import TableStatistics
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import TableFile, plan_query, run_query, strategy
from tests.sandbox.conftest import LIMITS

STATISTICS = {
    # As products.storage.table_statistics and the quality summary (products.service.version_tables)
    # give them: 60 people, at most 3 rows each; 4 regions, 3 months; one category held by k units.
    "units": {"person_id": [3, 0]},
    "nulls": [],
    "distinct": {"region": 4, "month": 3, "category": 1},
}


@pytest.fixture(scope="module")
def k3(policy: ProtectionPolicy) -> ProtectionPolicy:
    return policy.model_copy(update={"min_group_size": 3})


@pytest.fixture(scope="module")
def people(tables: dict[str, TableFile]) -> dict[str, TableFile]:
    return {"people": replace(tables["people"], statistics=STATISTICS)}


def _answer(sql: str, policy: ProtectionPolicy, people: dict[str, TableFile], pool: WorkerPool) -> Any:
    from sandbox import cache

    cache.results.clear()
    return run_query(sql, policy, people, LIMITS, 10_000, pool)


def test_few_large_groups_run_folded_and_many_small_ones_the_exact_statement(people, k3, pool) -> None:
    # 4 regions of 45 rows, at most 4 rows per person (M bracketed): 11 units at least by the row bound,
    # well past 2k = 6: the staged method folded into one statement, with its recheck.
    large = _answer("SELECT region, count(*) FROM people GROUP BY region ORDER BY 1", k3, people, pool)
    assert large.sql_run.startswith('WITH "__first" AS MATERIALIZED')
    assert ";" not in large.sql_run  # one statement
    # 12 groups of 15 rows: a bound of 3.75 is under 2k: count(DISTINCT) over every row, at once.
    small = _answer("SELECT region, month, count(*) FROM people GROUP BY 1, 2 ORDER BY 1, 2", k3, people, pool)
    assert small.sql_run.startswith('WITH "__all" AS')
    # The same answers as the other strategies (both exact).
    assert large.rows == [["east", 45], ["north", 45], ["south", 45], ["west", 45]]
    assert len(small.rows) == 12 and all(row[2] == 15 for row in small.rows)
    # Without the version's statistics (built before them), as before: the exact statement (its counts in
    # two levels when every aggregate combines exactly; stddev does not).
    bare = {"people": replace(people["people"], statistics={})}
    assert strategy(plan_query("SELECT region, count(*) FROM people GROUP BY region", k3), bare) == "two-level"
    spread = "SELECT region, stddev(amount) FROM people GROUP BY region"
    assert strategy(plan_query(spread, k3), bare) == "single"


@settings(max_examples=60, deadline=None)
@given(
    category=st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", max_size=8),
    month=st.integers(-5, 20),
    region=st.sampled_from(["north", "south", "nowhere", "x"]),
)
def test_the_choice_depends_on_the_query_text_not_on_what_its_filter_selects(
    people: dict[str, TableFile], k3: ProtectionPolicy, category: str, month: int, region: str
) -> None:
    quoted = "'" + category.replace("'", "''") + "'"
    shapes = {
        "SELECT count(*) FROM people WHERE category = {c}": "folded",
        "SELECT region, count(*) FROM people WHERE month = {m} GROUP BY 1": "two-level",
        "SELECT count(*) FROM people WHERE region IN ({r}, {c}) AND month = {m}": "two-level",  # a sixth kept
        "SELECT month, count(*) FROM people WHERE region = {r} GROUP BY 1": "two-level",
        "SELECT month, variance(amount) FROM people WHERE region = {r} GROUP BY 1": "single",
    }
    for template, expected in shapes.items():
        sql = template.format(c=quoted, m=month, r=f"'{region}'")
        assert strategy(plan_query(sql, k3), people) == expected, sql


def test_folded_runs_the_same_statement_whether_a_filter_matches_a_row(people, k3, pool, tables) -> None:
    def run(sql: str) -> Any:
        job = Job(
            tables=(("people", str(tables["people"].path.resolve())),),
            plan=plan_query(sql, k3),
            max_rows=100,
            folded=True,
        )
        return pool.run(job)

    # Filtered, with aggregates that combine in two levels: the seeded two-level statement (branch
    # sbx-flagkey); with one that does not (var_samp), the seeded folded statement.
    for aggregates, methods in (("count(*)", ["two-level"]), ("count(*), var_samp(amount)", ["rows", "exact"])):
        present = run(f"SELECT category, {aggregates} FROM people WHERE category IN ('tiny', 'common') GROUP BY 1")
        absent = run(f"SELECT category, {aggregates} FROM people WHERE category IN ('no-such', 'common') GROUP BY 1")
        assert present.methods == absent.methods == methods
        assert len(present.statements) == len(absent.statements) == 1
        assert sorted(r[0] for r in present.rows) == ["common", "tiny"] and [r[0] for r in absent.rows] == ["common"]
    # Without GROUP BY: one group, counted exactly at once (a recheck of the one group would run its filter
    # over every row or none), the same methods (a second statement only for an empty answer, as in
    # execute_single: the buyer sees that it is empty anyway).
    tiny = run("SELECT count(*) FROM people WHERE category = 'tiny' AND month = 1")  # 5 people, k = 3
    none = run("SELECT count(*) FROM people WHERE category = 'nothing'")
    assert tiny.methods == none.methods == ["two-level"]
    assert len(tiny.statements) == 1 and len(none.statements) == 2
    assert tiny.rows == [(5,)] and none.rows == []
    assert none.suppressed_groups == 1


def test_the_refusal_verdict_is_decided_once_per_statement_and_version(tmp_path: Path) -> None:
    import duckdb

    connection = duckdb.connect(":memory:")
    stats = TableStatistics(connection, {}, version="v1")
    calls: list[str] = []

    def decide() -> tuple[str, dict[str, str]] | None:
        calls.append("x")
        return ("text_cast", {"column": "dest"})

    assert stats.refusal("SELECT 1", decide) == ("text_cast", {"column": "dest"})
    assert stats.refusal("SELECT 1", decide) == ("text_cast", {"column": "dest"})
    assert len(calls) == 1
    other = TableStatistics(connection, stats.cache, version="v2")  # another version: its own verdict
    other.refusal("SELECT 1", lambda: None)
    assert other.refusal("SELECT 1", decide) is None and len(calls) == 1


def test_a_refused_query_is_refused_alike_every_time(people, policy, pool) -> None:
    from sandbox.errors import QueryRefused

    codes = []
    for _ in range(3):
        with pytest.raises(QueryRefused) as refused:
            _answer("SELECT region, count(*) FROM people WHERE region = 5 GROUP BY 1", policy, people, pool)
        codes.append((refused.value.code, refused.value.message))
    assert codes[0] == codes[1] == codes[2]


def test_a_versions_tables_carry_the_published_distinct_counts_and_ranges(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from market.settings import Settings
    from products.service import version_tables

    column = {"name": "region", "type": "VARCHAR", "role": "dimension", "bytes": 10}
    version = SimpleNamespace(
        product_id="prd_x",
        number=1,
        policy={"mode": "threshold"},
        tables=[
            {
                "name": "people",
                "file": "people.parquet",
                "row_count": 180,
                "columns": [column],
                "statistics": {"units": {"person_id": [3, 0]}, "nulls": []},
            }
        ],
        quality={
            "tables": {
                "people": {
                    "columns": [
                        {**column, "held_by_k": {"distinct": 4, "min": "east", "max": "west"}},
                        {"name": "amount", "role": "measure", "held_by_k": {"distinct": 90, "min": "1", "max": "100"}},
                    ]
                }
            }
        },
    )
    statistics = version_tables(Settings(data_dir=tmp_path), version)["people"].statistics  # type: ignore[arg-type]
    assert statistics["distinct"] == {"region": 4}  # dimensions only, as buyers see them
    assert statistics["range"] == {"region": ["east", "west"]}
    assert statistics["units"] == {"person_id": [3, 0]}
    # A DP product publishes none of its summary: none is read.
    version.policy = {"mode": "dp"}
    assert "distinct" not in version_tables(Settings(data_dir=tmp_path), version)["people"].statistics  # type: ignore[arg-type]
    # A version built before quality summaries: no distinct counts, so no estimate (the exact statement).
    version.policy, version.quality = {"mode": "threshold"}, None
    assert "distinct" not in version_tables(Settings(data_dir=tmp_path), version)["people"].statistics  # type: ignore[arg-type]


def test_a_large_product_counts_small_groups_in_two_levels_and_large_ones_staged(people, k3, monkeypatch) -> None:
    from sandbox import service as sandbox_service

    # As if the product were past SINGLE_STATEMENT_ROWS (TPC-H's lineitem): staged where the row bound is
    # expected to pass the groups; in two levels where it would pass few of them (expected rows under 2.5k),
    # the recheck then counting nearly every row exactly (bench.two_level --tpch: by_ship_date_and_mode).
    monkeypatch.setattr(sandbox_service, "SINGLE_STATEMENT_ROWS", 100)
    assert strategy(plan_query("SELECT region, count(*) FROM people GROUP BY region", k3), people) == "staged"
    small = "SELECT region, month, count(*), avg(amount) FROM people GROUP BY 1, 2"
    assert strategy(plan_query(small, k3), people) == "two-level"
    # Unless an aggregate does not combine, or there are no group keys (staged counts one group exactly at once).
    assert (
        strategy(plan_query("SELECT region, month, stddev(amount) FROM people GROUP BY 1, 2", k3), people) == "staged"
    )
    assert strategy(plan_query("SELECT count(*) FROM people WHERE month = 1", k3), people) == "staged"


# As if the people table were a product of 100,000 rows (one DuckDB thread) whose 60 people are published
# as the unit count (products.storage.table_statistics' `unit_counts`): 4 regions x 64 people = 256
# (keys, unit) pairs at most, well under 1/16 of the rows (branch perf-small).
PAIRS = {**STATISTICS, "unit_counts": {"person_id": 60}}


def test_few_keys_and_few_units_count_in_two_levels_in_place_of_the_folded_statement(people, k3, pool) -> None:
    few = {"people": replace(people["people"], statistics=PAIRS, row_count=100_000)}
    large = "SELECT region, count(*), avg(amount) FROM people GROUP BY region ORDER BY 1"
    plan = plan_query(large, k3)
    assert strategy(plan, few) == "two-level"
    # Without the unit count (versions built before it), as before: folded. Likewise where the aggregates
    # do not combine in two levels, where the pairs may be many, and past one DuckDB thread's rows.
    assert strategy(plan, {"people": replace(few["people"], statistics=STATISTICS)}) == "folded"
    spread = plan_query("SELECT region, stddev(amount) FROM people GROUP BY region", k3)
    assert strategy(spread, few) == "folded"
    many = {"people": replace(few["people"], statistics={**STATISTICS, "unit_counts": {"person_id": 5_000}})}
    assert strategy(plan, many) == "folded"
    assert strategy(plan, {"people": replace(few["people"], row_count=1_500_000)}) == "folded"
    # The same answer as the folded statement, in one statement.
    two_level = _answer(large, k3, few, pool)
    folded = _answer(large, k3, {"people": replace(few["people"], statistics=STATISTICS)}, pool)
    assert two_level.sql_run.startswith('WITH "__all" AS') and ";" not in two_level.sql_run
    assert folded.sql_run.startswith('WITH "__first" AS MATERIALIZED')
    assert two_level.rows == folded.rows and len(two_level.rows) == 4


@settings(max_examples=40, deadline=None)
@given(
    category=st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", max_size=8),
    region=st.sampled_from(["north", "south", "nowhere", "x"]),
    units=st.sampled_from([60, 64, 1_000, 10_000]),
)
def test_the_pairs_choice_depends_on_the_query_text_and_public_counts_only(
    people: dict[str, TableFile], k3: ProtectionPolicy, category: str, region: str, units: int
) -> None:
    few = {"people": replace(people["people"], statistics={**STATISTICS, "unit_counts": {"person_id": units}})}
    few = {"people": replace(few["people"], row_count=100_000)}
    quoted = "'" + category.replace("'", "''") + "'"
    many = units > 1_000  # 4 regions x 16,384 > 100,000 / 16
    for template in (
        "SELECT region, count(*) FROM people WHERE category <> {c} GROUP BY 1",
        "SELECT region, count(*), sum(amount) FROM people WHERE region <> {r} GROUP BY 1",
    ):
        sql = template.format(c=quoted, r=f"'{region}'")
        # A third kept by a conjunct other than an equality: 4 x 1,024 pairs > 33,333 / 16 as well.
        expected = "folded" if many or units == 1_000 else "two-level"
        assert strategy(plan_query(sql, k3), few) == expected, sql


def test_a_versions_statistics_count_its_units(tmp_path: Path) -> None:
    import duckdb

    from products.storage import table_statistics

    path = tmp_path / "t.parquet"
    with duckdb.connect() as connection:  # not duckdb.sql's shared connection, which other tests use
        connection.execute(
            "COPY (SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE 'u' || (i % 5) END AS unit, i AS x FROM range(40) t(i)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    statistics = table_statistics(path, ["unit", "x"], {"unit": "privacy_unit", "x": "measure"})
    assert statistics["unit_counts"] == {"unit": 5}  # NULL is no unit
    assert statistics["units"]["unit"][1] == 6  # rows 0, 7, ..., 35
