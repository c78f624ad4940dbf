"""Red team red10: the two-level statement (engine.execute_two_level) against the exact statement and a
plain reference, over what tests/sandbox/test_two_level_property.py does not draw: DATE and NULL group
keys, keys that are expressions, WHERE with OR, BIGINT and DECIMAL measures, qualified
count(DISTINCT t.u), and k up to 5; and one deterministic case of fractional DOUBLE sums.
"""

from __future__ import annotations

import datetime
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import plan_query
from tests.sandbox.conftest import write_parquet

TYPES = {"u": "VARCHAR", "g": "VARCHAR", "d": "DATE", "b": "BIGINT", "m": "DECIMAL(12,2)", "y": "DOUBLE"}
Row = dict[str, Any]


def _policy(k: int) -> ProtectionPolicy:
    return ProtectionPolicy.model_validate(
        {
            "min_group_size": k,
            "tables": {
                "t": {
                    "privacy_unit": "u",
                    "dimensions": ["g", "d"],
                    "measures": ["b", "m", "y"],
                    "hidden": [],
                    "bounds": {c: {"min": -(10**6), "max": 10**6} for c in ("b", "m", "y")},
                }
            },
        }
    )


def _run(workers: WorkerPool, sql: str, k: int, rows: list[Row]) -> tuple[Any, Any]:
    plan = plan_query(sql, _policy(k))
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        base = Job(tables=(("t", str(path.resolve())),), plan=plan, max_rows=1000)
        return workers.run(replace(base, single=True)), workers.run(replace(base, two_level=True))


def _typed(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[str, str], ...]]:
    return sorted(tuple((type(v).__name__, repr(v)) for v in row) for row in rows)


KEYS: dict[str, Callable[[Row], Any]] = {
    "g": lambda r: r["g"],
    "d": lambda r: r["d"],
    "upper(g)": lambda r: None if r["g"] is None else r["g"].upper(),
    "year(d)": lambda r: None if r["d"] is None else r["d"].year,
}


def _sum(values: list[Any]) -> Any:
    return float(sum(values)) if values else None


# SQL, the argument per row (None: count(*)), the fold, whether it has a cell of its own
AGGREGATES: dict[str, tuple[str, Callable[[Row], Any] | None, Callable[[list[Any]], Any], bool]] = {
    "n": ("count(*)", None, len, False),
    "cb": ("count(b)", lambda r: r["b"], len, True),
    "sb": ("sum(b)", lambda r: r["b"], _sum, True),
    "ab": ("avg(b)", lambda r: r["b"], lambda v: float(sum(v)) / len(v) if v else None, True),
    "sm": ("sum(m)", lambda r: r["m"], _sum, True),
    "units": ("count(DISTINCT t.u)", lambda r: r["u"], lambda v: len(set(v)), False),
}
WHERE: dict[str, Callable[[Row], bool]] = {
    "": lambda r: True,
    "g = 'a' OR d = DATE '2021-03-01'": lambda r: r["g"] == "a" or r["d"] == datetime.date(2021, 3, 1),
    "g IS NULL OR g <> 'b'": lambda r: r["g"] is None or r["g"] != "b",
}

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "u": st.one_of(st.none(), st.sampled_from([f"u{i}" for i in range(8)])),
            "g": st.one_of(st.none(), st.sampled_from(["a", "b", "A"])),
            "d": st.one_of(
                st.none(),
                st.sampled_from([datetime.date(2020, 1, 1), datetime.date(2021, 3, 1), datetime.date(2021, 7, 4)]),
            ),
            # Whole numbers up to 2^40 and DECIMAL cents that are multiples of 1/4: DOUBLE adds them exactly in
            # any order, so both paths must agree bit for bit.
            "b": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
            "m": st.one_of(st.none(), st.integers(-400, 400).map(lambda v: v / 4)),
            "y": st.just(0.0),
        }
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=rows_strategy,
    keys=st.lists(st.sampled_from(sorted(KEYS)), max_size=2, unique=True),
    aggregates=st.lists(st.sampled_from(sorted(AGGREGATES)), min_size=1, max_size=4, unique=True),
    where=st.sampled_from(sorted(WHERE)),
    k=st.integers(2, 5),
)
def test_two_level_matches_exact_and_reference(
    workers: WorkerPool, rows: list[Row], keys: list[str], aggregates: list[str], where: str, k: int
) -> None:
    items = [*keys, *(AGGREGATES[a][0] for a in aggregates)]
    sql = f"SELECT {', '.join(items)} FROM t" + (f" WHERE {where}" if where else "")
    if keys:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(keys)))
    single, two = _run(workers, sql, k, rows)
    assert two.methods == ["two-level"]
    assert _typed(two.rows) == _typed(single.rows)
    assert (two.groups, two.suppressed_groups) == (single.groups, single.suppressed_groups)
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in rows:
        if WHERE[where](row):
            groups[tuple(KEYS[key](row) for key in keys)].append(row)
    if not keys and not groups:
        groups[()] = []
    expected = []
    for key, members in groups.items():
        if len({r["u"] for r in members if r["u"] is not None}) < k:
            continue
        values: list[Any] = []
        for name in aggregates:
            _, argument, fold, cell = AGGREGATES[name]
            if argument is None:
                values.append(fold(members))
                continue
            known = [(r["u"], argument(r)) for r in members if argument(r) is not None]
            released = not cell or len({u for u, _ in known if u is not None}) >= k
            values.append(fold([v for _, v in known]) if released else None)
        expected.append((*key, *values))

    def plain(row: Any) -> tuple[Any, ...]:
        return tuple(
            (0, "") if v is None else (1, repr(float(v))) if isinstance(v, int | float) else (2, repr(v)) for v in row
        )

    assert sorted(map(plain, two.rows)) == sorted(map(plain, expected))


@pytest.mark.xfail(
    strict=True,
    reason="red10: fractional DOUBLE sums are added per (keys, unit) first, so two-level and the exact "
    "statement give different last bits (14.4 against 14.399999999999999); docs/sandbox.md says neither is exact",
)
def test_two_level_fractional_sum_is_the_exact_statements(workers: WorkerPool) -> None:
    rows = [
        {
            "u": None if i % 7 == 0 else f"u{i % 5}",
            "g": None if i % 11 == 0 else "abc"[i % 3],
            "d": None,
            "b": None,
            "m": None,
            "y": i / 10,
        }
        for i in range(30)
    ]
    single, two = _run(workers, "SELECT g, sum(y) FROM t GROUP BY g", 2, rows)
    assert _typed(two.rows) == _typed(single.rows)


@pytest.mark.parametrize("strategy", ["single", "two_level", "folded", "staged"])
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # DuckDB reads a whole number in GROUP BY as a position: stage 1 grouped by its 2nd column, count(*),
        # and the query failed with "GROUP BY clause cannot contain aggregates" (red10).
        ("SELECT 2 AS two, count(*) FROM t GROUP BY 1", [(2, 6)]),
        ("SELECT 3 AS three, g, count(*) FROM t GROUP BY 1, 2 ORDER BY 2", [(3, "a", 3), (3, "b", 3)]),
    ],
)
def test_a_whole_number_group_key_is_a_constant_not_a_position(
    workers: WorkerPool, strategy: str, sql: str, expected: list[tuple[Any, ...]]
) -> None:
    rows = [{"u": f"u{i}", "g": "ab"[i % 2], "d": None, "b": None, "m": None, "y": 0.0} for i in range(6)]
    plan = plan_query(sql, _policy(2))
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        job = Job(tables=(("t", str(path.resolve())),), plan=plan, max_rows=100)
        flags = {} if strategy == "staged" else {strategy: True}
        execution = workers.run(replace(job, **flags))
    assert execution.refused is None
    assert [tuple(row) for row in execution.rows] == expected
