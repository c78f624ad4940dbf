"""Property: per-aggregate thresholds hold where an outer join, not the data, makes a measure NULL.

A LEFT or FULL JOIN gives a row of one table no partner in the other: that row's measures of the
missing side are NULL though no stored value is. Such an aggregate covers only the rows where its
argument is not NULL, and those must still hold k distinct units of every table instance, or the cell
is NULL. The query groups by a column other than the join key, so a group mixes rows with and
without a partner. Random pairs of small tables are written to Parquet and queried through the sandbox by both
execution strategies (one exact statement; the staged bound with its recheck), and every answer is
compared with a Python oracle that joins, groups and applies the rule itself.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import plan_query
from tests.sandbox.conftest import write_parquet

K = 2
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": K,
        "tables": {
            "t": {
                "privacy_unit": "u",
                "dimensions": ["g", "k"],
                "measures": ["x"],
                "hidden": [],
                "bounds": {"x": {"min": -100, "max": 100}},
            },
            "s": {
                "privacy_unit": "v",
                "dimensions": ["h"],
                "measures": ["z"],
                "hidden": [],
                "bounds": {"z": {"min": -100, "max": 100}},
            },
        },
    }
)
T_TYPES = {"u": "VARCHAR", "g": "VARCHAR", "k": "VARCHAR", "x": "INTEGER"}
S_TYPES = {"v": "VARCHAR", "h": "VARCHAR", "z": "INTEGER"}
SQL = (
    "SELECT t.k, count(*) AS n, sum(t.x) AS sx, sum(s.z) AS sz, count(s.z) AS cz, avg(t.x + s.z) AS axz "
    "FROM t {join} JOIN s ON t.g = s.h GROUP BY t.k"
)

value = st.one_of(st.none(), st.integers(-100, 100), st.integers(-100, 100))
t_rows = st.lists(
    st.fixed_dictionaries(
        {
            "u": st.sampled_from([f"u{i}" for i in range(6)]),
            "g": st.sampled_from("abc"),
            "k": st.sampled_from("pq"),
            "x": value,
        }
    ),
    min_size=1,
    max_size=20,
)
s_rows = st.lists(
    st.fixed_dictionaries({"v": st.sampled_from([f"v{i}" for i in range(6)]), "h": st.sampled_from("abd"), "z": value}),
    min_size=1,
    max_size=20,
)


def _joined(ts: list[dict[str, Any]], ss: list[dict[str, Any]], full: bool) -> list[tuple[Any, Any]]:
    """(t row or None, s row or None) pairs of `t LEFT|FULL JOIN s ON t.g = s.h`."""
    pairs: list[tuple[Any, Any]] = []
    matched: set[int] = set()
    for t in ts:
        partners = [i for i, s in enumerate(ss) if s["h"] == t["g"]]
        matched.update(partners)
        pairs += [(t, ss[i]) for i in partners] or [(t, None)]
    if full:
        pairs += [(None, s) for i, s in enumerate(ss) if i not in matched]
    return pairs


def _oracle(ts: list[dict[str, Any]], ss: list[dict[str, Any]], full: bool) -> list[list[Any]]:
    groups: dict[Any, list[tuple[Any, Any]]] = defaultdict(list)
    for t, s in _joined(ts, ss, full):
        groups[t["k"] if t else None].append((t, s))

    def units(pairs: list[tuple[Any, Any]]) -> bool:
        """k distinct non-NULL units of both table instances among `pairs`."""
        return len({t["u"] for t, _ in pairs if t}) >= K and len({s["v"] for _, s in pairs if s}) >= K

    def cell(pairs: list[tuple[Any, Any]], arg: Callable[[Any, Any], Any], fold: Callable[[list[Any]], Any]) -> Any:
        known = [(t, s) for t, s in pairs if arg(t, s) is not None]
        return fold([arg(t, s) for t, s in known]) if units(known) else None

    def x(t: Any, _: Any) -> Any:
        return t["x"] if t else None

    def z(_: Any, s: Any) -> Any:
        return s["z"] if s else None

    def xz(t: Any, s: Any) -> Any:
        return None if x(t, s) is None or z(t, s) is None else x(t, s) + z(t, s)

    out = []
    for g, pairs in groups.items():
        if not units(pairs):
            continue
        out.append(
            [
                g,
                len(pairs),
                cell(pairs, x, sum),
                cell(pairs, z, sum),
                cell(pairs, z, len),
                cell(pairs, xz, lambda v: sum(v) / len(v)),
            ]
        )
    return sorted(out, key=repr)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ts=t_rows, ss=s_rows, full=st.booleans(), stored_nulls=st.booleans())
def test_cells_nulled_by_an_outer_join_need_k_units_of_every_table(
    workers: WorkerPool, ts: list[dict[str, Any]], ss: list[dict[str, Any]], full: bool, stored_nulls: bool
) -> None:
    if not stored_nulls:
        # No NULL stored in any measure: every NULL argument comes from the join alone (the case where
        # a cell could wrongly take the group's own bound, engine.whole_cells).
        ts = [{**t, "x": t["x"] or 0} for t in ts]
        ss = [{**s, "z": s["z"] or 0} for s in ss]
    plan = plan_query(SQL.format(join="FULL" if full else "LEFT"), POLICY)
    expected = _oracle(ts, ss, full)
    with tempfile.TemporaryDirectory() as directory:
        t_path = write_parquet(Path(directory) / "t.parquet", ts, T_TYPES)
        s_path = write_parquet(Path(directory) / "s.parquet", ss, S_TYPES)
        tables = (("s", str(s_path.resolve())), ("t", str(t_path.resolve())))
        for single, folded in ((True, False), (False, True), (False, False)):
            job = Job(tables=tables, plan=plan, max_rows=100, single=single, folded=folded)
            got = sorted(([*row] for row in workers.run(job).rows), key=repr)
            assert len(got) == len(expected), (single, full, got, expected)
            for answer, oracle in zip(got, expected, strict=True):
                for found, want in zip(answer, oracle, strict=True):
                    if want is None or found is None:
                        assert found is None and want is None, (single, full, answer, oracle)
                    else:
                        assert found == pytest.approx(want), (single, full, answer, oracle)
