"""A cast of an aggregate that reads no column (count(*)) is a buyer's ordinary query (sbx-red15's finding).

The first validator made every cast of data a TRY_CAST (a failing cast would quote a value in its error), but it
took "data" to mean "mentions a column", so `CAST(count(*) AS BIGINT)` stayed a CAST; in stage 2 it reads the
groups table's column, and the second validator refused the whole query with the confusing `parser_mismatch`.
Now a cast of anything that reads data, an aggregate included, is a TRY_CAST: the query runs. Since session 16 a
cast of data to a type that cannot hold every value of its source is refused (`unsafe_cast`), TRY_CAST or not: a
TRY_CAST that fails costs DuckDB many times a success (red team redx15), so it would time hidden values.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import QueryRefused


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT region, CAST(count(*) AS BIGINT) AS n FROM people GROUP BY region ORDER BY region", "n"),
        ("SELECT region, CAST(count(*) AS VARCHAR) AS n FROM people GROUP BY region ORDER BY region", "n"),
    ],
)
def test_a_cast_of_count_star_answers_as_the_count_does(run: Any, sql: str, column: str) -> None:
    plain = run("SELECT region, count(*) AS n FROM people GROUP BY region ORDER BY region")
    cast = run(sql)
    assert [row[0] for row in cast.rows] == [row[0] for row in plain.rows]
    assert [str(row[1]) for row in cast.rows] == [str(row[1]) for row in plain.rows]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, CAST(count(*) * 1000 AS TINYINT) AS n FROM people GROUP BY region",
        "SELECT region, TRY_CAST(count(*) + 1 AS INTEGER) AS n FROM people GROUP BY region",
        "SELECT region, CAST(count(*) AS INTEGER) AS n FROM people GROUP BY region",
        "SELECT region, CAST(count(*) AS DECIMAL(18, 0)) AS n FROM people GROUP BY region",
    ],
)
def test_a_cast_of_count_star_to_a_narrower_type_is_refused_with_what_to_write(run: Any, sql: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        run(sql)
    assert refused.value.code == "unsafe_cast"
    assert "round()" in str(refused.value)


def test_what_is_still_refused_says_what_to_change(run: Any) -> None:
    with pytest.raises(QueryRefused) as refused:
        run("SELECT region, CAST(count(*) AS INTERVAL) FROM people GROUP BY region")
    assert refused.value.code != "parser_mismatch"
