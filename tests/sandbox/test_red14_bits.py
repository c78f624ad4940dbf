"""Red team red14 (session 10): counting units by bitmaps (sandbox/bits.py, engine.execute_bits) on unit types
the bits property test does not draw (it draws BIGINT): unsigned types at the top of their range (a span
past BIGINT's greatest value), the smallest signed types at their least value,
sparse units (few values over a span of thousands), NULL units, and a join of two such tables.

Each version's spans are read by the build's own function (products.storage.table_statistics); the strategy
must choose the bitmaps, and their answer must equal the exact statement's and the staged path's, row for
row, value and type, with the same group and suppressed counts (held: no wrong answer found).

HUGEINT (in sandbox.bits' and products.storage's lists of unit types) never reaches a version: Parquet has no
128-bit integer, and DuckDB writes a HUGEINT column as DOUBLE (distinct units past 2**53 then collapse:
test_red14_wide_units_http, open).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from products.storage import table_statistics
from sandbox.policy import ProtectionPolicy
from sandbox.pool import Job, WorkerPool
from sandbox.service import TableFile, bits_for, plan_query, row_counts, strategy
from tests.sandbox.conftest import write_parquet
from tests.sandbox.test_two_level_property import _policy, _typed

S_ROLES = {"v": "privacy_unit", "g": "dimension", "d": "dimension"}
ROLES = {"u": "privacy_unit", "g": "dimension", "h": "dimension", "x": "measure", "y": "measure"}
UNITS: dict[str, tuple[str, int, int]] = {
    # name: (unit type, the least unit, the step between units)
    "ubigint-top": ("UBIGINT", 2**64 - 1 - 40, 1),
    "uinteger-top": ("UINTEGER", 2**32 - 1 - 40, 1),
    "usmallint-top": ("USMALLINT", 2**16 - 1 - 40, 1),
    "tinyint-least": ("TINYINT", -128, 1),
    "smallint-least": ("SMALLINT", -(2**15), 1),
    "sparse": ("BIGINT", -(10**6), 997),
}
QUERIES = [
    "SELECT g, count(*) AS n, sum(x) AS sx, avg(y) AS ay FROM t GROUP BY g",
    "SELECT g, h, count(*) AS n FROM t WHERE h = 'p' GROUP BY g, h",
    "SELECT count(*) AS n, sum(x) AS sx FROM t WHERE g IN ('a', 'c')",
    "SELECT h, count(*) AS n, var_samp(y) AS v FROM t GROUP BY h HAVING count(*) > 2 ORDER BY h LIMIT 5",
    "SELECT g, count(*) AS n FROM t WHERE g = 'zz' GROUP BY g",
]


def _rows(least: int, step: int) -> list[dict[str, Any]]:
    """41 units (at the span's two edges among them): group 'a' has 6 units, 'b' 2 (under k = 3), 'c' 4 whose
    x is NULL but for one (its sum's cell under k), some units with two rows, and NULL units scattered."""
    rows: list[dict[str, Any]] = []
    for i in range(41):
        group = "a" if i % 4 == 0 else ("b" if i in (1, 2) else "c" if i in (3, 5, 7, 9) else "d")
        rows.append({"u": least + i * step, "g": group, "h": "pq"[i % 2], "x": i - 20 if i != 5 else None, "y": i / 4})
        if i in (1, 2, 6, 17):  # units with two rows: 'b' has 4 rows of 2 units
            rows.append({"u": least + i * step, "g": group, "h": "p", "x": 1, "y": 0.0})
        if i % 7 == 0:
            rows.append({"u": None, "g": group, "h": "p", "x": 3, "y": None})
    for row in rows:
        if row["g"] == "c" and row["u"] != least + 3 * step:
            row["x"] = None
    return rows


def _check(workers: WorkerPool, tables: dict[str, TableFile], plan: Any) -> None:
    spans = bits_for(plan, tables)
    # Bits where the version has no unit summary (built before branch pre16); with one, the summary or cube may.
    unsummarised = {
        n: replace(t, statistics={k: v for k, v in t.statistics.items() if k != "summary"}) for n, t in tables.items()
    }
    assert spans is not None and strategy(plan, unsummarised) == "bits"
    assert strategy(plan, tables) in ("bits", "summary", "cube")
    files = tuple(sorted((name, str(table.path.resolve())) for name, table in tables.items()))
    base = Job(tables=files, plan=plan, max_rows=100)
    by_bits = workers.run(replace(base, bits=spans))
    assert by_bits.methods == ["bits"]
    for other in (workers.run(replace(base, single=True)), workers.run(base)):
        assert other.refused is None and by_bits.refused is None
        assert sorted(_typed(by_bits.rows)) == sorted(_typed(other.rows))
        assert (by_bits.groups, by_bits.suppressed_groups) == (other.groups, other.suppressed_groups)


@pytest.mark.parametrize("unit", list(UNITS))
def test_bits_count_units_of_every_integer_type_exactly(workers: WorkerPool, tmp_path: Path, unit: str) -> None:
    kind, least, step = UNITS[unit]
    rows = _rows(least, step)
    types = {"u": kind, "g": "VARCHAR", "h": "VARCHAR", "x": "INTEGER", "y": "DOUBLE"}
    path = write_parquet(tmp_path / "t.parquet", rows, types)
    statistics = table_statistics(path, list(types), ROLES)
    assert statistics["spans"]["u"] == [least, least + 40 * step]
    tables = {"t": TableFile("t", path, len(rows), statistics=statistics)}
    for sql in QUERIES:
        _check(workers, tables, plan_query(sql, _policy(3), row_counts(tables)))


def test_bits_on_a_join_of_two_unit_types_at_their_edges(workers: WorkerPool, tmp_path: Path) -> None:
    t_types = {"u": "UBIGINT", "g": "VARCHAR", "h": "VARCHAR", "x": "INTEGER", "y": "DOUBLE"}
    s_types = {"v": "TINYINT", "g": "VARCHAR", "d": "VARCHAR"}
    t = write_parquet(tmp_path / "t.parquet", _rows(2**64 - 41, 1), t_types)
    others = [{"v": -128 + i if i % 5 else None, "g": "abcd"[i % 4], "d": "mn"[i % 2]} for i in range(24)]
    s = write_parquet(tmp_path / "s.parquet", others, s_types)
    tables = {
        "t": TableFile("t", t, len(_rows(2**64 - 41, 1)), statistics=table_statistics(t, list(t_types), ROLES)),
        "s": TableFile("s", s, len(others), statistics=table_statistics(s, list(s_types), S_ROLES)),
    }
    policy = _policy(3).model_dump()
    policy["tables"]["s"] = {"privacy_unit": "v", "dimensions": ["g", "d"], "measures": [], "hidden": []}
    for sql in [
        "SELECT s.d, count(*) AS n, sum(t.x) AS sx FROM t JOIN s ON t.g = s.g GROUP BY s.d",
        "SELECT t.g, count(*) AS n FROM t LEFT JOIN s ON t.g = s.g WHERE t.h = 'p' GROUP BY t.g",
    ]:
        _check(workers, tables, plan_query(sql, ProtectionPolicy.model_validate(policy), row_counts(tables)))
