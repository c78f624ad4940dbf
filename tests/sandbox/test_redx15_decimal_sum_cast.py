"""Red team redx15: the exact DECIMAL sum's cast to DOUBLE must take the same time for every group (tpch15).

`CAST(SUM(d) AS DOUBLE)` (sandbox.algebra.exact_decimal_sql) casts a DECIMAL(38, s) per group. DuckDB 2.0.1 casts a
DECIMAL of scale > 0 whose unscaled integer is at or above 2^53 about 4 times slower (bench/redx15_decimal_cast.py:
~0.9 us more a group): with `sum(p * 100000) ... GROUP BY <one row a group>` a buyer's query took longer per hidden
group whose value was large, so a hidden value's magnitude showed in time. The rewrite must now only take sums whose
worst case over every row a group can hold (the declared bounds times the tables' row counts, all public) stays
under 2^53 unscaled (dim15's binder allows the cast of an aggregate's result "once per group": this is what
makes that cast's time the same for every group). Hypothesis draws types, bounds, row counts and constants, fills a
table with the bounds' extremes, and runs each rewritten sum's argument in raw DuckDB: its sum must stay under 2^53
unscaled. Failed before the fix (the example below: 10 rows at 1e9 times 100000 at scale 2 is 1e17 unscaled).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from products.storage import table_statistics
from sandbox.algebra import _closing
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, exact_plan, plan_query
from tests.sandbox.conftest import write_parquet

FORMS = [
    "SELECT g, sum(p) AS s FROM t GROUP BY g",
    "SELECT g, sum(p * {c}) AS s FROM t GROUP BY g",
    "SELECT g, avg(p * {c}) AS s FROM t GROUP BY g",
    "SELECT g, sum(p + {c}) AS s, sum(-p - {c}) AS s2 FROM t GROUP BY g",
    "SELECT g, sum(p * p) AS s FROM t GROUP BY g",
    "SELECT g, sum(p * (1 - p) * {c}) AS s FROM t GROUP BY g",
]
CONSTANTS = st.sampled_from(["1", "3", "10", "0.5", "1000", "100000", "12345678", "1000000000", "0.001"])


def _policy(bound: Decimal) -> ProtectionPolicy:
    table: dict[str, Any] = {"privacy_unit": "uid", "dimensions": ["g"], "measures": ["p"]}
    table["bounds"] = {"p": {"min": -float(bound), "max": float(bound)}}
    return ProtectionPolicy.model_validate({"min_group_size": 2, "tables": {"t": table}})


def _sums(template: str) -> list[str]:
    """The arguments of every exact sum the rewrite wrote (`CAST(SUM(<d>) AS DOUBLE)`)."""
    found, start = [], 0
    while (at := template.find("CAST(SUM(", start)) != -1:
        close = _closing(template, at + len("CAST(SUM("))
        assert close is not None
        found.append(template[at + len("CAST(SUM(") : close])
        start = close
    return found


COUNTER = iter(range(1_000_000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    precision=st.integers(3, 18),
    scale=st.integers(0, 18),
    digits=st.integers(0, 12),
    rows=st.integers(1, 40),
    form=st.sampled_from(FORMS),
    constant=CONSTANTS,
)
@example(precision=15, scale=2, digits=9, rows=10, form=FORMS[1], constant="100000")
def test_every_exact_sum_casts_in_the_fast_range(
    precision: int, scale: int, digits: int, rows: int, form: str, constant: str, tmp_path: Path
) -> None:
    scale = min(scale, precision)
    largest = (Decimal(10) ** precision - 1).scaleb(-scale)
    bound = min(Decimal(10) ** digits, largest, Decimal(10) ** 12)  # sums need bounds (unbounded_measure)
    sql = form.format(c=constant)
    note(f"DECIMAL({precision},{scale}) bound {bound} rows {rows}: {sql}")
    kind = f"DECIMAL({precision},{scale})"
    types = {"uid": "INTEGER", "g": "INTEGER", "p": kind}
    roles = {"uid": "privacy_unit", "g": "dimension", "p": "measure"}
    for sign in (1, -1):
        values = [{"uid": u, "g": 0, "p": sign * bound} for u in range(rows)]
        path = write_parquet(tmp_path / f"t{next(COUNTER)}.parquet", values, types)
        bounds = {"p": (-float(bound), float(bound))}
        files = {"t": TableFile("t", path, rows, statistics=table_statistics(path, list(types), roles, bounds))}
        try:
            plan = exact_plan(plan_query(sql, _policy(bound), {"t": rows}), files)
        except QueryRefused:
            return  # the validator's own overflow proof refused the DOUBLE form already

        with duckdb.connect() as raw:
            for argument in _sums(plan.template):
                total, typed = raw.execute(
                    f"SELECT SUM({argument}), typeof(SUM({argument})) FROM read_parquet('{path}') AS \"t\""
                ).fetchone() or (None, "")
                if total is None:
                    continue
                sum_scale = int(str(typed).rstrip(")").split(",")[-1])
                unscaled = abs(Decimal(total).scaleb(sum_scale))
                assert unscaled < 2**53, (argument, typed, total)  # past 2^53 DuckDB's cast to DOUBLE slows down


def test_tpch_sized_sums_stay_exact(tmp_path: Path) -> None:
    """A price of DECIMAL(15, 2) within [0, 100000] summed over six million rows (TPC-H's lineitem at scale 1) is
    still rewritten: 6e6 * 1e5 * 100 = 6e13 < 2^53. The fix narrows the rewrite, it does not end it."""
    types = {"uid": "INTEGER", "g": "INTEGER", "p": "DECIMAL(15,2)"}
    roles = {"uid": "privacy_unit", "g": "dimension", "p": "measure"}
    path = write_parquet(tmp_path / "t.parquet", [{"uid": 1, "g": 0, "p": Decimal("1.50")}], types)
    policy = ProtectionPolicy.model_validate(
        {
            "min_group_size": 2,
            "tables": {
                "t": {
                    "privacy_unit": "uid",
                    "dimensions": ["g"],
                    "measures": ["p"],
                    "bounds": {"p": {"min": 0, "max": 100000}},
                }
            },
        }
    )
    statistics = table_statistics(path, list(types), roles, {"p": (0.0, 100000.0)})
    files = {"t": TableFile("t", path, 6_000_000, statistics=statistics)}
    sql = "SELECT g, sum(p) AS s, avg(p) AS a FROM t GROUP BY g"
    plan = exact_plan(plan_query(sql, policy, {"t": 6_000_000}), files)
    assert len(_sums(plan.template)) == 2
    wide = exact_plan(plan_query("SELECT g, sum(p * 1000) AS s FROM t GROUP BY g", policy, {"t": 6_000_000}), files)
    assert _sums(wide.template) == []  # 6e6 * 1e8 * 100 = 6e16: stays a DOUBLE sum
