"""Red team red13 (session 13): a one-period range (branch cal13, sandbox.summary._period) whose date literal
holds non-ASCII digits. Python's `str.isdigit` holds for superscripts and other digit characters that `int()`
refuses, so the shape reader raised ValueError inside `strategy` (a 500 over HTTP) for a query every exact path
refuses as `constant_error`. Digits Python reads but DuckDB does not (Arabic-Indic) took the summary and were
refused by it as by the exact path. Now only ASCII digits make a period: the strategy falls to an exact path.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from products.storage import table_statistics
from sandbox.policy import ProtectionPolicy
from sandbox.service import TableFile, plan_query, row_counts, strategy
from tests.sandbox.conftest import write_parquet

TYPES = {"u": "VARCHAR", "g": "VARCHAR", "d": "DATE", "m": "INTEGER"}
ROLES = {"u": "privacy_unit", "g": "dimension", "d": "dimension", "m": "measure"}
POLICY = ProtectionPolicy.model_validate(
    {
        "min_group_size": 2,
        "tables": {
            "t": {
                "privacy_unit": "u",
                "dimensions": ["g", "d"],
                "measures": ["m"],
                "hidden": [],
                "bounds": {"m": {"min": 0, "max": 100}},
            }
        },
    }
)
SUMMARY_PATHS = ("summary", "cube")
"""The strategies that read the build-time summary (branch cube13 adds "cube")."""
ROWS = [{"u": f"u{i}", "g": "ab"[i % 2], "d": dt.date(1994, 1 + i % 12, 1 + i % 27), "m": i} for i in range(48)]


@pytest.fixture(scope="module")
def tables() -> dict[str, TableFile]:
    directory = tempfile.mkdtemp(prefix="red13-")
    path = write_parquet(Path(directory) / "t.parquet", ROWS, TYPES)
    stats = table_statistics(path, list(TYPES), ROLES)
    return {"t": TableFile(name="t", path=path, row_count=len(ROWS), statistics=stats)}


def _chosen(tables: dict[str, TableFile], low: str, high: str) -> str:
    sql = f"SELECT g, count(*) AS n FROM t WHERE d >= DATE '{low}' AND d < DATE '{high}' GROUP BY g"
    return strategy(plan_query(sql, POLICY, row_counts(tables)), tables)


def test_an_ascii_year_is_a_period(tables: dict[str, TableFile]) -> None:
    assert _chosen(tables, "1994-01-01", "1995-01-01") in SUMMARY_PATHS


# Characters Python calls digits that are not ASCII: superscripts (int() refuses them), Arabic-Indic and
# full-width digits (int() reads them; DuckDB does not).
DIGITS = st.sampled_from(["²", "³", "¹", "٣", "１", "𝟗", "۵"])


@settings(max_examples=40, deadline=None)
@given(where=st.integers(0, 9), digit=DIGITS, side=st.booleans())
def test_a_period_with_a_non_ascii_digit_is_no_period(
    tables: dict[str, TableFile], where: int, digit: str, side: bool
) -> None:
    text = "1994-01-01" if side else "1995-01-01"
    at = [0, 1, 2, 3, 5, 6, 8, 9][where % 8]
    spoiled = text[:at] + digit + text[at + 1 :]
    low, high = (spoiled, "1995-01-01") if side else ("1994-01-01", spoiled)
    assert _chosen(tables, low, high) not in SUMMARY_PATHS
