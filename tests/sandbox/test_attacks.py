"""The attacks of issue 9, each class in several variants, through the full path (validators, rewrite, worker).

In the people fixture, categories 'rare' and 'tiny' hold 5 people each (suppressed at k=10). Every
attack below tries to learn something about them, or about one person, and must be refused, or be
answered exactly as if the hidden fact were different.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import QueryFailed, QueryRefused

NESTED_REPLACE = "region"
for _ in range(4):
    NESTED_REPLACE = f"replace({NESTED_REPLACE}, 'o', 'oooooooooo')"

ATTACKS: list[tuple[str, str, str]] = [
    # 1. Indicator functions inside aggregates: NULL (or an error made NULL) for every row but chosen ones.
    ("narrow cast", "SELECT sum(TRY_CAST(amount - 57 AS UTINYINT) * 0 + trips) FROM people", "cast_in_aggregate"),
    ("narrow cast, tinyint", "SELECT sum(CAST(amount * 3 AS TINYINT) * 0 + trips) FROM people", "cast_in_aggregate"),
    ("narrow cast, decimal", "SELECT avg(CAST(amount AS DECIMAL(2, 0)) + trips) FROM people", "cast_in_aggregate"),
    ("overflow multiplier", "SELECT sum(amount * 92233720368547758 * 0 + trips) FROM people", "aggregate_may_overflow"),
    ("overflow offset", "SELECT sum((amount + 9223372036854775000) * 0 + trips) FROM people", "aggregate_may_overflow"),
    ("overflow constant", "SELECT sum(trips * 1e300) FROM people", "aggregate_may_overflow"),
    ("huge product", "SELECT sum(amount * trips * 100000000000) FROM people", "aggregate_may_overflow"),
    ("division by (m - c)", "SELECT sum(trips / (amount - 57)) FROM people", "division_by_column"),
    ("division by a measure", "SELECT sum(1 / amount * 0 + trips) FROM people", "division_by_column"),
    ("division by zero", "SELECT sum(trips / (3 - 3)) FROM people", "division_by_column"),
    ("integer division", "SELECT sum(trips // (amount - 57)) FROM people", "targeted_aggregate"),
    ("modulo", "SELECT sum(trips % (amount - 56)) FROM people", "targeted_aggregate"),
    ("unbounded measure", "SELECT sum(trips) FROM people", "unbounded_measure"),
    # 2. Error oracles: an error (or not) that depends on rows the threshold hides.
    ("text compared with a number", "SELECT count(*) FROM people WHERE region = 5", "text_cast"),
    (
        "text compared with a number in a branch",
        "SELECT count(*) FROM people WHERE CASE WHEN category = 'rare' THEN region = 5 ELSE true END",
        "text_cast",
    ),
    ("text cast to a number", "SELECT count(*) FROM people WHERE TRY_CAST(category AS INTEGER) IS NULL", "text_cast"),
    ("text as a date", "SELECT count(*) FROM people WHERE year(CAST(region AS DATE)) = 2013", "text_cast"),
    (
        "a failing constant cast in a branch",
        "SELECT count(*) FROM people WHERE CASE WHEN category = 'rare' THEN CAST('x' AS INTEGER) = 1 ELSE true END",
        "constant_error",
    ),
    (
        "a failing literal comparison in a branch",
        "SELECT count(*) FROM people WHERE CASE WHEN category = 'rare' THEN month = 'x' ELSE true END",
        "constant_error",
    ),
    (
        "constant overflow in a branch",
        "SELECT count(*) FROM people WHERE CASE WHEN category = 'tiny' THEN 100000 * 100000 > 1 ELSE true END",
        "constant_error",
    ),
    (
        "constant division by zero in a group key",
        "SELECT CASE WHEN category = 'rare' THEN 1 // 0 END AS k, count(*) FROM people GROUP BY 1",
        "constant_error",
    ),
    # 4. Time and memory: a blow-up reached only when a hidden condition holds.
    (
        "nested replace in a branch",
        f"SELECT count(*) FROM people WHERE CASE WHEN category = 'rare' THEN length({NESTED_REPLACE}) > 5 END",
        "expression_too_costly",
    ),
    (
        "replace by a column",
        "SELECT count(*) FROM people WHERE replace(region, 'o', category || region) = 'x'",
        "expression_too_costly",
    ),
    (
        "long concatenation",
        "SELECT length(" + " || ".join(["region"] * 70) + ") AS n, count(*) FROM people GROUP BY 1",
        "expression_too_costly",
    ),
    # 5. Red team: TRY() made a failing hidden row slow (a timing oracle); positions from data could fail.
    (
        "substring position from a branch",
        "SELECT count(*) FROM people WHERE substring(region, CASE WHEN category = 'rare' THEN -9223372036854775807 "
        "ELSE 1 END, 2) = 'no'",
        "disallowed_construct",
    ),
    (
        "left length beyond 2^31",
        "SELECT count(*) FROM people WHERE left(region, 9223372036854775807) = 'x'",
        "disallowed_construct",
    ),
    ("round digits from data", "SELECT count(*) FROM people WHERE round(month, month) > 0", "disallowed_construct"),
    (
        "date arithmetic on data",
        "SELECT count(*) FROM people WHERE CAST('2013-01-01' AS DATE) + INTERVAL (month) DAY > '2013-01-01'",
        "disallowed_construct",
    ),
    ("an infinite constant", "SELECT count(*) FROM people WHERE month > 1e309", "not_typeable"),
    (
        "count distinct of a dimension over a hidden value",
        "SELECT count(DISTINCT category) AS n FROM people WHERE category IN ('rare', 'common')",
        "disallowed_construct",
    ),
]


@pytest.fixture(scope="module")
def unbounded_trips(policy):  # type: ignore[no-untyped-def]
    tables = policy.model_dump()
    tables["tables"]["people"]["bounds"].pop("trips")
    return type(policy).model_validate(tables)


@pytest.mark.parametrize(("reason", "sql", "code"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_each_attack_is_refused_with_a_message(run, unbounded_trips, reason: str, sql: str, code: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        run(sql, unbounded_trips if code == "unbounded_measure" else None)
    assert refused.value.code == code, refused.value.message
    assert refused.value.message and "{" not in refused.value.message


def outcome(run: Any, sql: str) -> tuple[str, Any]:
    """What a buyer sees of a query, minus timing: its rows, columns and measurements, or its error code."""
    try:
        result = run(sql)
    except (QueryRefused, QueryFailed) as error:
        return ("error", error.code)
    seen = {k: v for k, v in result.measurements.buyer_dict().items() if k != "cpu_ms"}
    return ("rows", (result.columns, result.rows, seen))


# Pairs that differ only in a hidden fact about a suppressed group: 'rare' exists, 'nobody' does not;
# person P0050 (in 'rare') has amount 54 in month 1 (51 elsewhere).
ORACLE_PAIRS: list[tuple[str, str]] = [
    (
        "SELECT region, count(*) AS n FROM people WHERE CASE WHEN category = '{c}' THEN CAST('x' AS INTEGER) = 1 "
        "ELSE true END GROUP BY region",
        "rare|nobody",
    ),
    ("SELECT count(*) AS n FROM people WHERE CASE WHEN category = '{c}' THEN region = 5 ELSE true END", "rare|nobody"),
    ("SELECT region, sum(amount) AS s FROM people WHERE category = '{c}' GROUP BY region", "rare|nobody"),
    ("SELECT count(*) AS n, sum(amount) AS s FROM people WHERE category = '{c}'", "rare|nobody"),
    ("SELECT sum(CAST(amount - {c} AS TINYINT) * 0 + trips) AS s FROM people", "54|55"),
    ("SELECT sum(trips / (amount - {c})) AS s FROM people WHERE category = 'rare'", "54|55"),
    ("SELECT sum(amount * 92233720368547758 * 0 + trips) AS s FROM people WHERE amount > {c}", "54|55"),
    (
        "SELECT category, count(*) AS n FROM people WHERE CASE WHEN category = '{c}' THEN length("
        + NESTED_REPLACE
        + ") > 5 ELSE true END GROUP BY category",
        "tiny|nobody",
    ),
    # Integer overflow, abs() and // by zero for the hidden rows only: now DOUBLE arithmetic, no error, no TRY.
    (
        "SELECT region, count(*) AS n FROM people WHERE (CASE WHEN category = '{c}' THEN 9223372036854775807 "
        "ELSE 1 END) + month > 0 GROUP BY region",
        "rare|nobody",
    ),
    (
        "SELECT count(*) AS n FROM people WHERE 10 // (CASE WHEN category = '{c}' THEN 0 ELSE 1 END) > 0",
        "rare|nobody",
    ),
]


@pytest.mark.parametrize(("template", "facts"), ORACLE_PAIRS)
def test_a_hidden_fact_about_a_small_group_changes_nothing(run, template: str, facts: str) -> None:
    true_fact, false_fact = facts.split("|")
    assert outcome(run, template.format(c=true_fact)) == outcome(run, template.format(c=false_fact))
