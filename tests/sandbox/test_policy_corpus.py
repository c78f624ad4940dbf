"""A corpus of buyer queries, each accepted or refused for a stated reason."""

from __future__ import annotations

import pytest

from sandbox.errors import QueryFailed, QueryRefused

ACCEPTED = [
    ("count by a dimension", "SELECT region, count(*) FROM people GROUP BY region"),
    ("sum and avg of measures", "SELECT category, sum(amount), avg(trips) FROM people GROUP BY category"),
    ("no GROUP BY: one group", "SELECT count(*), sum(amount) FROM people"),
    ("GROUP BY ALL", "SELECT region, month, count(*) FROM people GROUP BY ALL"),
    (
        "alias and ORDER BY alias",
        "SELECT region AS r, sum(amount) AS total FROM people GROUP BY r ORDER BY total DESC",
    ),
    (
        "ORDER BY position and LIMIT",
        "SELECT region, count(*) FROM people GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 2",
    ),
    (
        "WHERE on dimensions",
        "SELECT region, count(*) FROM people WHERE month IN (1, 2) AND region <> 'x' GROUP BY region",
    ),
    ("HAVING on an aggregate", "SELECT region, sum(amount) FROM people GROUP BY region HAVING count(*) > 3"),
    ("count distinct unit", "SELECT region, count(DISTINCT person_id) FROM people GROUP BY region"),
    ("variance family", "SELECT region, stddev(amount), var_pop(trips) FROM people GROUP BY region"),
    (
        "scalar functions on dimensions",
        "SELECT upper(region), round(avg(amount), 2) FROM people GROUP BY upper(region)",
    ),
    (
        "arithmetic over aggregates",
        "SELECT region, sum(amount) / count(*) AS mean FROM people GROUP BY region",
    ),
    (
        "CASE on a dimension",
        "SELECT CASE WHEN month = 1 THEN 'jan' ELSE 'later' END AS m, count(*) FROM people GROUP BY 1",
    ),
    ("comments are dropped", "SELECT region, /* hi */ count(*) FROM people -- trailing\n GROUP BY region"),
    ("quoted identifiers", 'SELECT "region", count(*) FROM "people" GROUP BY "region"'),
]

REFUSED = [
    ("raw rows", "SELECT * FROM people", "not_aggregated"),
    ("raw column", "SELECT region FROM people", "not_aggregated"),
    (
        "measure outside aggregate",
        "SELECT amount, count(*) FROM people GROUP BY amount",
        "measure_outside_aggregate",
    ),
    ("star in aggregate query", "SELECT *, count(*) FROM people GROUP BY ALL", "star_not_allowed"),
    ("max", "SELECT region, max(amount) FROM people GROUP BY region", "disallowed_aggregate"),
    ("min", "SELECT min(amount) FROM people", "disallowed_aggregate"),
    ("median", "SELECT median(amount) FROM people", "disallowed_aggregate"),
    ("quantile", "SELECT quantile_cont(amount, 0.5) FROM people", "disallowed_aggregate"),
    ("any_value", "SELECT region, any_value(amount) FROM people GROUP BY region", "disallowed_aggregate"),
    ("arg_max", "SELECT arg_max(person_id, amount) FROM people", "disallowed_aggregate"),
    ("list", "SELECT region, list(amount) FROM people GROUP BY region", "disallowed_aggregate"),
    ("string_agg", "SELECT string_agg(name, ',') FROM people", "disallowed_aggregate"),
    ("mode", "SELECT mode(amount) FROM people", "disallowed_aggregate"),
    ("first", "SELECT first(amount) FROM people", "disallowed_aggregate"),
    ("group by unit", "SELECT person_id, count(*) FROM people GROUP BY person_id", "protected_column"),
    ("filter on unit", "SELECT count(*) FROM people WHERE person_id = 'P0001'", "protected_column"),
    ("hidden column", "SELECT name, count(*) FROM people GROUP BY name", "protected_column"),
    ("hidden in aggregate", "SELECT count(DISTINCT name) FROM people", "protected_column"),
    ("unit in expression", "SELECT sum(length(person_id)) FROM people", "protected_column"),
    ("unknown column", "SELECT salary, count(*) FROM people GROUP BY salary", "unknown_column"),
    ("unknown table", "SELECT count(*) FROM secrets", "unknown_table"),
    ("schema-qualified table", "SELECT count(*) FROM main.people", "unknown_table"),
    ("table function", "SELECT count(*) FROM read_csv('/etc/passwd')", "disallowed_construct"),
    ("file path", "SELECT count(*) FROM '/etc/passwd'", "unknown_table"),
    ("catalogue", "SELECT count(*) FROM information_schema.tables", "unknown_table"),
    ("duckdb_settings", "SELECT count(*) FROM duckdb_settings()", "disallowed_construct"),
    ("two statements", "SELECT count(*) FROM people; SELECT count(*) FROM people", "multiple_statements"),
    ("pragma", "PRAGMA version", "not_a_select"),
    ("set", "SET enable_external_access = true", "not_a_select"),
    ("copy", "COPY people TO '/tmp/x.csv'", "not_a_select"),
    ("attach", "ATTACH '/tmp/x.db'", "not_a_select"),
    ("create", "CREATE TABLE x AS SELECT 1", "not_a_select"),
    ("window", "SELECT region, count(*) OVER () FROM people GROUP BY region", "disallowed_construct"),
    ("rollup", "SELECT region, count(*) FROM people GROUP BY ROLLUP (region)", "disallowed_construct"),
    ("cube", "SELECT region, count(*) FROM people GROUP BY CUBE (region)", "disallowed_construct"),
    (
        "grouping sets",
        "SELECT region, count(*) FROM people GROUP BY GROUPING SETS ((region), ())",
        "disallowed_construct",
    ),
    ("union", "SELECT count(*) FROM people UNION ALL SELECT count(*) FROM people", "disallowed_construct"),
    ("subquery", "SELECT count(*) FROM (SELECT * FROM people) t", "disallowed_construct"),
    ("cte", "WITH t AS (SELECT * FROM people) SELECT count(*) FROM t", "disallowed_construct"),
    ("scalar subquery", "SELECT count(*) FROM people WHERE amount > (SELECT 1)", "disallowed_construct"),
    ("filter clause", "SELECT count(*) FILTER (WHERE region = 'north') FROM people", "disallowed_construct"),
    (
        "targeted case in sum",
        "SELECT sum(CASE WHEN month = 1 THEN amount END) FROM people",
        "disallowed_construct",
    ),
    ("sample", "SELECT count(*) FROM people USING SAMPLE 10", "disallowed_construct"),
    ("unknown function", "SELECT count(*) FROM people WHERE getenv('HOME') = 'x'", "disallowed_function"),
    ("nested aggregate", "SELECT sum(count(*)) FROM people", "disallowed_construct"),
    ("aggregate in WHERE", "SELECT count(*) FROM people WHERE sum(amount) > 1", "disallowed_construct"),
    ("syntax error", "SELEC count(*) FROM people", "sql_syntax"),
    ("no FROM", "SELECT 1", "not_aggregated"),
    (
        "non-literal limit",
        "SELECT region, count(*) FROM people GROUP BY region LIMIT (SELECT 1)",
        "disallowed_construct",
    ),
]


@pytest.mark.parametrize(("reason", "sql"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted(run, reason: str, sql: str) -> None:
    result = run(sql)
    assert result.columns and result.measurements.result_rows == len(result.rows)


@pytest.mark.parametrize(("reason", "sql", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(run, reason: str, sql: str, code: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        run(sql)
    assert refused.value.code == code, refused.value.message
    assert refused.value.message  # every refusal says what to do instead


def test_refusals_name_the_construct_and_the_alternative(run) -> None:
    with pytest.raises(QueryRefused) as refused:
        run("SELECT max(amount) FROM people")
    assert refused.value.message.startswith("max() can reveal a single row")
    assert "count, sum, avg" in refused.value.message


def test_runtime_errors_do_not_quote_row_values(run) -> None:
    with pytest.raises(QueryFailed) as failed:
        run("SELECT sum(CAST(region || 'x' AS INTEGER)) FROM people")
    assert "northx" not in failed.value.message and "southx" not in failed.value.message
