"""Property: every released aggregate cell covers k units among the rows where its argument is not NULL.

Random small datasets whose measures are often NULL are written to Parquet and queried through the
sandbox, by every execution strategy (the one exact statement, its counts in two levels, the folded
and the staged cheap bounds with rechecks), and every answer is compared with a Python oracle: a
group is released when it has k units; in it, each aggregate is released exactly when k distinct
units have a non-NULL argument, and then equals the oracle's value; otherwise it is NULL.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import plan_query
from tests.sandbox.conftest import write_parquet

K = 3
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": K,
        "tables": {
            "t": {
                "privacy_unit": "u",
                "dimensions": ["g"],
                "measures": ["x", "y"],
                "hidden": [],
                "bounds": {"x": {"min": -100, "max": 100}, "y": {"min": -100, "max": 100}},
            }
        },
    }
)
TYPES = {"u": "VARCHAR", "g": "VARCHAR", "x": "INTEGER", "y": "INTEGER"}
SQL = (
    "SELECT g, count(*) AS n, sum(x) AS sx, count(x) AS cx, avg(y) AS ay, sum(x + y) AS sxy, "
    "count(DISTINCT u) AS units FROM t GROUP BY g ORDER BY g"
)

measure = st.one_of(st.none(), st.integers(-100, 100))
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "u": st.sampled_from([f"u{i}" for i in range(8)]),
            "g": st.sampled_from(["a", "b"]),
            "x": st.one_of(st.none(), st.none(), measure),
            "y": measure,
        }
    ),
    min_size=1,
    max_size=40,
)


def _oracle(rows: list[dict[str, Any]]) -> list[list[Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["g"]].append(row)
    out = []
    for g in sorted(groups):
        members = groups[g]
        units = {r["u"] for r in members}
        if len(units) < K:
            continue

        def cell(values: list[tuple[str, Any]], fold: Any) -> Any:
            known = [(u, v) for u, v in values if v is not None]
            return fold([v for _, v in known]) if len({u for u, _ in known}) >= K else None

        xs = [(r["u"], r["x"]) for r in members]
        ys = [(r["u"], r["y"]) for r in members]
        both = [(r["u"], None if r["x"] is None or r["y"] is None else r["x"] + r["y"]) for r in members]
        out.append(
            [
                g,
                len(members),
                cell(xs, sum),
                cell(xs, len),
                cell(ys, lambda v: sum(v) / len(v)),
                cell(both, sum),
                len(units),
            ]
        )
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_every_released_cell_covers_k_units_with_known_arguments(
    workers: WorkerPool, rows: list[dict[str, Any]]
) -> None:
    plan = plan_query(SQL, POLICY)
    expected = _oracle(rows)
    with tempfile.TemporaryDirectory() as directory:
        path = write_parquet(Path(directory) / "t.parquet", rows, TYPES)
        for single, folded, two_level in (
            (True, False, False),
            (False, True, False),
            (False, False, False),
            (False, False, True),
        ):
            job = Job(
                tables=(("t", str(path.resolve())),),
                plan=plan,
                max_rows=100,
                single=single,
                folded=folded,
                two_level=two_level,
            )
            got = [list(row) for row in workers.run(job).rows]
            assert len(got) == len(expected), (single, got, expected)
            for answer, oracle in zip(got, expected, strict=True):
                for value, want in zip(answer, oracle, strict=True):
                    if want is None or value is None:
                        assert value is None and want is None, (single, answer, oracle)
                    else:
                        assert value == pytest.approx(want), (single, answer, oracle)
