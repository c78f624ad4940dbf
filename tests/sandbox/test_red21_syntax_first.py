"""Red team red21 of session 21's syntax_first and prepared json_serialize_sql call (docs/sandbox.md, "Red team red21").

Findings: DuckDB's message quotes the rest of the text after an unterminated comment or dollar quote (up to the
whole 20,000 characters) where sqlglot's detail was cut at 200; a text with CR-only line ends was told line 1 with a
column counted across its lines; an unpaired surrogate made plan_query raise TypeError out of DuckDB's binding (the
HTTP layer refuses such a body first, `unstorable_text`, but planning must refuse, never raise). Also here, the checks
that held: the EXECUTE form gives DuckDB the texts exactly over SQL-like text (Unicode spaces, quotes, comment and
dollar markers), and the console's query page shows DuckDB's syntax error in both languages.
"""

from __future__ import annotations

import html
import re
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.accounts.models import Role
from sandbox import cache, crosscheck, dp
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.conftest import Market
from tests.console.helpers import csrf_of, sign_in
from tests.factories import PEOPLE_POLICY, dp_policy, grant, listed_product

POLICY = ProtectionPolicy.model_validate(PEOPLE_POLICY)
HEAD = "SELECT region, count(*) FROM people WHERE "


def _refusal(sql: str) -> QueryRefused:
    cache.plans.clear()
    with pytest.raises(QueryRefused) as refused:
        plan_query(sql, POLICY)
    return refused.value


@pytest.mark.parametrize("opening", ["/*", "$$", "$tag$"])
def test_the_message_does_not_quote_the_whole_rest_of_the_text(opening: str) -> None:
    # Before: 19,100 characters of message (DuckDB quotes from the opening to the end of the text).
    refused = _refusal(HEAD + opening + "x" * 19_000)
    assert refused.code == "sql_syntax" and "(line 1, column 43)" in refused.message, refused.message[:300]
    assert len(refused.message) < 400, len(refused.message)
    assert f'near "{opening}xxx' in refused.message and "…" in refused.message, refused.message


@pytest.mark.parametrize(
    ("newline", "line", "column"), [("\r", 4, 10), ("\r\n", 4, 10), ("\n", 4, 10), ("\u2028", 1, 30)]
)
def test_lines_end_at_cr_lf_and_crlf(newline: str, line: int, column: int) -> None:
    # Before: CR-only line ends gave line 1, column 46. U+2028 is no line end to an editor nor to DuckDB, which
    # reads `people\u2028GROUP` as one name (column 30).
    sql = newline.join(["SELECT region,", "count(*)", "FROM people", "GROUP BY LIMIT 1"])
    refused = _refusal(sql)
    assert refused.code == "sql_syntax", refused.message
    assert f"(line {line}, column {column})" in refused.message, refused.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, count(*) FROM people GROUP BY LIMIT 1 \ud800",  # sqlglot refuses it: then DuckDB was asked
        "SELECT region, count(*) FROM people WHERE region = '\udcff' GROUP BY region",  # sqlglot reads it
    ],
)
def test_an_unpaired_surrogate_is_refused_not_raised(sql: str) -> None:
    # Before: TypeError from DuckDB's binding (extract_statements / tokenize take only encodable text).
    refused = _refusal(sql)
    assert refused.code == "sql_syntax" and "surrogate" in refused.message, refused.message
    cache.plans.clear()
    with pytest.raises(QueryRefused) as in_dp:
        dp.plan(sql, ProtectionPolicy.model_validate(dp_policy()), "seed")
    assert in_dp.value.code == "sql_syntax"


_PIECES = st.sampled_from(
    [
        "'",
        "''",
        '"',
        "\\",
        "$$",
        "$a$",
        "--",
        "/*",
        "*/",
        "\n",
        "\r",
        "\u2028",
        "\xa0",
        "\u3000",
        "\u200b",
        "\ufeff",
        "E'",
        "U&'",
        "’",
        "＇",
        "SELECT ",
        "1",
        " ",
        ";",
        "?",
        "$1",
        "x",
        "北",
        "😀",
        "\t",
        "\x01",
        "\x85",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.lists(_PIECES, max_size=30).map("".join), min_size=1, max_size=4))
def test_the_execute_form_reads_as_the_call_with_exactly_those_texts(texts: list[str]) -> None:
    connection = duckdb.connect()
    expected = tuple(connection.execute("SELECT json_serialize_sql(?)", [text]).fetchone()[0] for text in texts)
    with crosscheck._lock:
        parser = crosscheck._connection()
        # The EXECUTE text itself, not the parameter fallback of _serialized (which would hide a misread).
        assert parser.execute(crosscheck._serialize_call(texts)).fetchone() == expected, texts


def test_the_console_shows_duckdbs_syntax_error_in_both_languages(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    client = sign_in(market, buyer)
    sql = "SELECT region, count(*) FROM people GROUP BY region HAVING max(amount> 90"
    shown = {}
    for language in ("en", "zh-CN"):
        page = client.get("/console/query", headers={"Accept-Language": language})
        data = {"product": listed.slug, "sql": sql, "csrf_token": csrf_of(page.text)}
        refused = client.post("/console/query", data=data, headers={"Accept-Language": language})
        assert refused.status_code == 422 and 'id="sql-error"' in refused.text, refused.text[-2000:]
        shown[language] = html.unescape(refused.text)
    assert 'syntax error at or near "90" (line 1, column 72)' in shown["en"]
    assert "Phrase(" not in shown["en"] + shown["zh-CN"]
    assert '无法解析该 SQL：syntax error at or near "90"（第 1 行第 72 列）' in shown["zh-CN"]
    # DuckDB quotes the buyer's own text: the page escapes it.
    page = client.get("/console/query")
    data = {"product": listed.slug, "sql": "SELECT <img src=x onerror=alert(1)> FROM people", "csrf_token": ""}
    data["csrf_token"] = csrf_of(page.text)
    refused = client.post("/console/query", data=data)
    found = re.search(r'id="sql-error"[^>]*>(.*?)</', refused.text, re.DOTALL)
    assert refused.status_code == 422 and found, refused.text[-3000:]
    assert "near &#34;&lt;&#34;" in found.group(1) and "<img src=x" not in refused.text, found.group(1)


def test_a_text_read_by_duckdb_in_read_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # sqlglot reads `sum(amount), , avg(trips)`; crosscheck._read then finds DuckDB's syntax error. Before,
    # syntax_first asked DuckDB's parser again (extract_statements, then json_serialize_sql): three parses of a
    # text of up to 20,000 characters under the parser's lock instead of one, for the same refusal.
    asked: list[str] = []
    reading = crosscheck._syntax_error

    def counted(connection: duckdb.DuckDBPyConnection, raw_sql: str) -> QueryRefused | None:
        asked.append(raw_sql)
        return reading(connection, raw_sql)

    monkeypatch.setattr(crosscheck, "_syntax_error", counted)
    refused = _refusal("SELECT category, sum(amount), , avg(trips) FROM people GROUP BY category")
    assert refused.code == "sql_syntax" and 'near "," (line 1, column 31)' in refused.message, refused.message
    assert len(asked) == 1, asked


class _Counting:
    """The parser connection, counting the calls that hand DuckDB's parser `text`."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, text: str) -> None:
        self.connection, self.text, self.parses = connection, text, 0

    def extract_statements(self, query: str) -> Any:
        self.parses += query == self.text
        return self.connection.extract_statements(query)

    def execute(self, query: str, parameters: Any = None) -> Any:
        self.parses += self.text in query or self.text in (parameters or [])
        return self.connection.execute(query, parameters)


def test_a_refused_text_is_parsed_by_duckdb_once_or_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # DuckDB's parser is quadratic on a chain of minus signs before a missing operand: about 120 ms for 1,100 of
    # them, a text sqlglot refuses as sql_syntax (deeper, it is sql_too_complex and DuckDB is not asked). Before,
    # syntax_first parsed a text DuckDB reads twice. Now: once when DuckDB reads it (most refusals), twice when it
    # cannot (once to know, once for the message and position), never more.
    for sql, code, parses in [
        ("SELECT " + "- " * 50 + "FROM people", "sql_syntax", 2),
        ("SELECT max(amount) FROM people", "disallowed_aggregate", 1),
    ]:
        with crosscheck._lock:
            counting = _Counting(crosscheck._connection(), sql)
        monkeypatch.setattr(crosscheck, "_connection", lambda counting=counting: counting)
        refused = _refusal(sql)
        assert refused.code == code, (sql, refused.message)
        assert counting.parses == parses, (sql, counting.parses)
    assert 'near "FROM" (line 1, column 108)' in _refusal("SELECT " + "- " * 50 + "FROM people").message


def test_a_chain_of_signs_is_not_handed_to_duckdbs_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    # Up to 1,100 minus signs before a missing operand: sqlglot refuses it as sql_syntax (deeper, it is
    # sql_too_complex); DuckDB's parser, quadratic on such a chain, took 120 ms on it under the parser's lock.
    asked: list[str] = []
    monkeypatch.setattr(crosscheck, "_syntax_error", lambda connection, raw: asked.append(raw))
    refused = _refusal("SELECT " + "- " * 600 + "FROM people")  # deeper in a test run's stack: sql_too_complex
    assert refused.code == "sql_syntax" and not asked
    # Up to MOST_SIGNS, DuckDB's message as for any text it cannot read.
    monkeypatch.undo()
    refused = _refusal("SELECT " + "- " * crosscheck.MOST_SIGNS + "FROM people")
    assert 'near "FROM" (line 1, column 408)' in refused.message, refused.message


def test_a_dp_product_refuses_duckdbs_syntax_error_over_http_in_both_languages(market: Market) -> None:
    listed = listed_product(market, "people-dp", policy=dp_policy())
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    sql = "SELECT region, count(*) FROM people GROUP BY region HAVING max(amount> 90"
    messages = {}
    for language in ("en", "zh-CN"):
        response = market.client.post(
            "/v1/queries",
            headers={**buyer.headers, "Accept-Language": language},
            json={"product": listed.slug, "sql": sql, "epsilon": 0.5},
        )
        assert response.status_code == 422 and response.json()["error"]["code"] == "sql_syntax", response.text
        messages[language] = response.json()["error"]["message"]
    assert 'near "90" (line 1, column 72)' in messages["en"], messages
    assert "（第 1 行第 72 列）" in messages["zh-CN"], messages
    records = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert [r["charge_type"] for r in records] == ["rejected", "rejected"], records
