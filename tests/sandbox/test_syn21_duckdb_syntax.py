"""A text DuckDB's parser cannot read is refused with DuckDB's syntax error, where it stopped (session 21).

sqlglot reads the buyer's text first and accepts much that DuckDB does not (`sum(amount), , avg(trips)`, a `)`
missing); it then refused such a text for what it made of it: `max(amount> 90` became "max is not an allowed
aggregate", `GROUP BY LIMIT 10` "region is not grouped". Now the refusal is `sql_syntax` with DuckDB's message
and the line and column of the token it names, in the caller's language (crosscheck.syntax_first). Also here:
the prepared call that hands texts to json_serialize_sql gives DuckDB exactly the texts (crosscheck._serialized).
"""

from __future__ import annotations

import json
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
from tests.factories import PEOPLE_POLICY, dp_policy, grant, listed_product
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

POLICY = ProtectionPolicy.model_validate(PEOPLE_POLICY)
CORPUS = [sql for _, sql, _ in PEOPLE + JOINED if len(sql) < 2_000 and "\x00" not in sql and duckdb.tokenize(sql)]

MISSING_PARENTHESIS = "SELECT region, count(*) FROM people GROUP BY region HAVING max(amount> 90"
"""Before: refused as `disallowed_aggregate` (max), which the buyer did not mean to use as one."""


def _duckdb_reading(sql: str) -> dict[str, Any]:
    row = duckdb.connect().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    assert row is not None
    found: dict[str, Any] = json.loads(row[0])
    return found


def _refusal(sql: str, policy: ProtectionPolicy = POLICY) -> QueryRefused | None:
    cache.plans.clear()
    try:
        plan_query(sql, policy)
    except QueryRefused as refused:
        return refused
    return None


def _where(sql: str, position: int) -> tuple[int, int]:
    before = sql.encode()[:position].decode(errors="ignore")
    lines = re.split(r"\r\n|\r|\n", before)  # red21: as an editor splits them
    return len(lines), len(lines[-1]) + 1


@pytest.mark.parametrize(
    ("sql", "token", "column", "before"),
    [
        (MISSING_PARENTHESIS, "90", 72, "disallowed_aggregate"),
        ("SELECT max_by(amount, tripsFROM people", "people", 33, "disallowed_aggregate"),
        ("SELECT region, count(*) FROM people GROUP BY LIMIT 10", "LIMIT", 46, "not_grouped"),
        ("SELECT category, sum(amount), , avg(trips) FROM people GROUP BY category", ",", 31, "parser_mismatch"),
    ],
)
def test_a_text_duckdb_cannot_read_is_refused_where_it_stops(sql: str, token: str, column: int, before: str) -> None:
    refused = _refusal(sql)
    assert refused is not None and refused.code == "sql_syntax", (refused and refused.code, before)
    assert f'near "{token}"' in refused.message and f"line 1, column {column}" in refused.message, refused.message


def test_the_column_counts_characters_and_lines_not_bytes() -> None:
    sql = 'SELECT count(*) AS "北京的人数"\nFROM people\nWHERE amount > 1 AND\nGROUP BY region'
    refused = _refusal(sql)
    assert refused is not None and refused.code == "sql_syntax"
    assert 'near "GROUP" (line 4, column 1)' in refused.message, refused.message


def test_the_refusal_is_in_the_callers_language(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    messages = {}
    for language in ("en", "zh-CN"):
        response = market.client.post(
            "/v1/queries",
            headers={**buyer.headers, "Accept-Language": language},
            json={"product": listed.slug, "sql": MISSING_PARENTHESIS},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "sql_syntax"
        messages[language] = response.json()["error"]["message"]
    assert 'near "90" (line 1, column 72)' in messages["en"], messages
    assert "（第 1 行第 72 列）" in messages["zh-CN"] and "无法解析该 SQL" in messages["zh-CN"], messages
    # Refused before it ran: recorded as rejected, never charged.
    records = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert [r["charge_type"] for r in records] == ["rejected", "rejected"], records
    assert all(r["amount_minor"] == 0 for r in records)


def test_differential_privacy_mode_refuses_the_same_way() -> None:
    policy = ProtectionPolicy.model_validate(dp_policy())
    cache.plans.clear()
    with pytest.raises(QueryRefused) as refused:
        dp.plan(MISSING_PARENTHESIS, policy, "seed")
    assert refused.value.code == "sql_syntax" and "(line 1, column 72)" in refused.value.message


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT count(*) FROM people WHERE " + "(" * 40 + "month = 1" + ")" * 40, "sql_too_complex"),
        ("SELECT count(*) FROM people WHERE " + " OR ".join(["month = 1"] * 3000), "sql_too_long"),
        ("SELECT count(*) FROM people WHERE max(amount> 90\x00", "sql_syntax"),
        ("SELECT count(*) FROM people WHERE month = " + "- " * 1200 + "1", "sql_too_complex"),
    ],
)
def test_size_nesting_and_nul_refusals_stand(sql: str, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No parser reads such a text: the refusal is decided before DuckDB's parser would be asked.
    asked: list[str] = []
    monkeypatch.setattr(crosscheck, "_syntax_error", lambda connection, raw: asked.append(raw))
    refused = _refusal(sql)
    assert refused is not None and refused.code == code and not asked


def _mutations(sql: str, data: st.DataObject) -> str:
    """The text with one of DuckDB's tokens dropped, doubled or moved: typing slips."""
    tokens = duckdb.tokenize(sql)
    starts = [start for start, _ in tokens] + [len(sql.encode())]
    raw = sql.encode()
    pieces = [raw[starts[i] : starts[i + 1]] for i in range(len(tokens))]
    i = data.draw(st.integers(0, len(pieces) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "move"]))
    if kind == "drop":
        del pieces[i]
    elif kind == "double":
        pieces.insert(i, pieces[i])
    else:
        pieces.insert(data.draw(st.integers(0, len(pieces) - 1)), pieces.pop(i))
    return b"".join(pieces).decode(errors="ignore")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_text_duckdb_cannot_read_is_refused_with_its_syntax_error(data: st.DataObject) -> None:
    sql = _mutations(data.draw(st.sampled_from(CORPUS)), data)
    reading = _duckdb_reading(sql)
    refused = _refusal(sql)
    if not reading.get("error"):
        # DuckDB reads it: whatever the outcome, it is not a syntax error of DuckDB's.
        assert refused is None or "(line " not in refused.message, (sql, refused.message)
        return
    assert refused is not None, sql  # a text DuckDB cannot read never runs
    if reading.get("error_type") != "parser" or str(reading.get("error_message", "")).startswith("Max expression"):
        return
    if refused.code in crosscheck._BEFORE_PARSING:  # red21: refused for its size or nesting before any parser
        return
    if sql.count("-") + sql.count("+") > crosscheck.MOST_SIGNS:  # red21: sqlglot's refusal stands
        return
    assert refused.code == "sql_syntax", (sql, refused.code, refused.message)
    # red21: the text DuckDB quotes is cut at NEAR_CHARS, the message at MAX_MESSAGE.
    message = crosscheck._NEAR.sub(crosscheck._shortened, reading["error_message"])[: crosscheck.MAX_MESSAGE]
    assert message in refused.message, (sql, refused.message)
    if str(reading.get("position", "")).isdigit():
        line, column = _where(sql, int(reading["position"]))
        assert f"(line {line}, column {column})" in refused.message, (sql, refused.message)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=60), min_size=1, max_size=6))
def test_the_prepared_call_hands_duckdb_the_texts_byte_for_byte(texts: list[str]) -> None:
    # Quotes, backslashes, dollar quotes, NUL (bound as a parameter instead) and more texts than prepared calls.
    texts = [text + suffix for text, suffix in zip(texts, ["'", "\\", "$$", "\x00", "''", "E'\\n'"], strict=False)]
    connection = duckdb.connect()
    expected = tuple(connection.execute("SELECT json_serialize_sql(?)", [text]).fetchone()[0] for text in texts)
    with crosscheck._lock:
        assert crosscheck._serialized(crosscheck._connection(), texts) == expected
