"""Every returned group covers at least k distinct privacy units, and its values are exact."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import K, people_rows

DIMENSIONS = ["region", "category", "month"]


def _expected(dims: list[str], months: list[int]) -> tuple[dict[tuple, tuple[int, int]], int]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in people_rows():
        if row["month"] in months:
            groups[tuple(row[d] for d in dims)].append(row)
    passing = {}
    suppressed = 0
    for key, rows in groups.items():
        if len({r["person_id"] for r in rows}) >= K:
            passing[key] = (len(rows), sum(r["amount"] for r in rows))
        else:
            suppressed += 1
    return passing, suppressed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dims=st.lists(st.sampled_from(DIMENSIONS), min_size=0, max_size=3, unique=True),
    months=st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True),
)
def test_random_group_queries_return_exactly_the_groups_that_reach_k(run, dims: list[str], months: list[int]) -> None:
    select = ", ".join([*dims, "count(*) AS n", "sum(amount) AS total"])
    where = f" WHERE month IN ({', '.join(map(str, months))})"
    group = f" GROUP BY {', '.join(dims)}" if dims else ""
    result = run(f"SELECT {select} FROM people{where}{group}")
    expected, suppressed = _expected(dims, months)
    got = {tuple(row[: len(dims)]): (row[-2], row[-1]) for row in result.rows}
    assert got == expected
    assert result.measurements.suppressed_groups == suppressed


def test_limit_applies_after_suppression(run) -> None:
    result = run("SELECT category, count(*) AS n FROM people GROUP BY category ORDER BY n LIMIT 1")
    assert result.rows == [["common", 150]]
    assert result.measurements.suppressed_groups == 2


def test_having_cannot_pick_out_a_small_group(run) -> None:
    result = run("SELECT category, count(*) FROM people GROUP BY category HAVING count(DISTINCT person_id) < 10")
    assert result.rows == []
    assert result.measurements.suppressed_groups == 2
