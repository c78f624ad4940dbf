"""A cast of an aggregate that reads no column (count(*)) is a buyer's ordinary query (sbx-red15's finding).

The first validator made every cast of data a TRY_CAST (a failing cast would quote a value in its error), but it
took "data" to mean "mentions a column", so `CAST(count(*) AS BIGINT)` stayed a CAST; in stage 2 it reads the
groups table's column, and the second validator refused the whole query with the confusing `parser_mismatch`.
Now a cast of anything that reads data, an aggregate included, is a TRY_CAST: the query runs, a value the
type cannot hold is NULL, never an error.
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
        ("SELECT region, CAST(count(*) + 1 AS INTEGER) AS n FROM people GROUP BY region ORDER BY region", "n"),
    ],
)
def test_a_cast_of_count_star_answers_as_the_count_does(run: Any, sql: str, column: str) -> None:
    plain = run("SELECT region, count(*) AS n FROM people GROUP BY region ORDER BY region")
    cast = run(sql)
    assert [row[0] for row in cast.rows] == [row[0] for row in plain.rows]
    offset = 1 if "+ 1" in sql else 0
    assert [str(row[1]) for row in cast.rows] == [str(row[1] + offset) for row in plain.rows]


def test_a_cast_of_count_star_to_a_type_too_narrow_is_null_never_an_error(run: Any) -> None:
    plain = run("SELECT region, count(*) AS n FROM people GROUP BY region ORDER BY region")
    assert plain.rows and all(row[1] >= 1 for row in plain.rows)
    narrow = run("SELECT region, CAST(count(*) * 1000 AS TINYINT) AS n FROM people GROUP BY region ORDER BY region")
    assert [row[0] for row in narrow.rows] == [row[0] for row in plain.rows]
    assert all(row[1] is None for row in narrow.rows)  # every count times 1000 is past 127


def test_what_is_still_refused_says_what_to_change(run: Any) -> None:
    with pytest.raises(QueryRefused) as refused:
        run("SELECT region, CAST(count(*) AS INTERVAL) FROM people GROUP BY region")
    assert refused.value.code != "parser_mismatch"
