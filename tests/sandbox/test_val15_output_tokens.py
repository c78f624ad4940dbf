"""Stage 2 and the constants statement confirmed from DuckDB's tokens, without a parse (branch val15, session 15).

crosscheck.confirm skips DuckDB's parse of stage 2 when its text is a plain projection of the groups table
(crosscheck._plain_output) and of the constants statement when it is a list of date casts
(crosscheck._plain_constants): a strict pattern, character for character, and DuckDB's own tokens of the text
exactly those words. The fast checks may only accept what the full walks (check_output, the constants walk)
accept; anything else goes to DuckDB's parse and the walk as before (docs/sandbox.md, "Stage 2 and the
constants from their tokens (val15)").
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.sandbox_overhead import POLICY as TPCH_POLICY
from bench.sandbox_overhead import QUERIES
from sandbox import cache, crosscheck
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.rewrite import GROUPS_TABLE, RESTRICT_COLUMN, THRESHOLD_COLUMN
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY
from tests.sandbox.test_attacks import ATTACKS
from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

POLICY = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
SIZES = (None, {"people": 1000, "shops": 20, "orders": 100, "lineitem": 400})


def _full_output_accepts(sql: str, groups_table: str = GROUPS_TABLE) -> bool:
    try:
        crosscheck.check_output(sql, POLICY, groups_table)
    except QueryRefused:
        return False
    return True


def _full_constants_accepts(sql: str) -> bool:
    try:
        crosscheck._check_constants_node(crosscheck._serialize(sql), POLICY)
    except QueryRefused:
        return False
    return True


# -- statements: plain ones, and plain ones with one hostile piece -------------------------------------------

_NAMES = st.sampled_from(['"__a0"', '"__g1"', '"__c0"', '"__lo0"', '"__s"', '"__lo12"', '"__Mixed_9"'])
_HOSTILE_NAMES = st.sampled_from(
    [
        '"amount"', "__a0", '"__a0"."x"', '"people"."__a0"', '"__a""0"', '"__a 0"', '"_a0"', '"__a0" "__b"',
        'amount', '"__a0" /* c */', '"__a0" -- c\n', "(SELECT 1)", "*", "COLUMNS(*)", '"__a0"::VARCHAR', "'x'",
        'CAST("__a0" AS INT)', 'hash("__a0")', '"__a0" + 1', "-1", "$1", "?", "e'\\x41'",
    ]
)  # fmt: skip
_NUMBERS = st.sampled_from(["0", "10", "3", "12345678901234567890123", "007"])
_HOSTILE_NUMBERS = st.sampled_from(
    [
        "1e5",
        "-1",
        "1.5",
        "(SELECT 1)",
        "'10'",
        "10 OR TRUE",
        '"__a0"',
        "0x10",
        "\u0661\u0660",
        "\uff11\uff10",
        "1\u00b2",
    ]
)  # the last three: Arabic-Indic, full-width and superscript digits, which DuckDB reads as names
_OPS = st.sampled_from([">=", "<=", "<>", ">", "<", "="])
_HOSTILE_OPS = st.sampled_from(["!=", "==", "LIKE", "IS", "IN", ">=-", "=>", "~", "<=>"])
_SOURCES = st.sampled_from(['"__groups"', '"people"', '"__groups" AS "g"', "__groups", '"__groups", "people"'])


@st.composite
def _outputs(draw: Any) -> str:
    hostile = draw(st.booleans())

    def name() -> str:
        return draw(_HOSTILE_NAMES if hostile and draw(st.integers(0, 4)) == 0 else _NAMES)

    def number() -> str:
        return draw(_HOSTILE_NUMBERS if hostile and draw(st.integers(0, 4)) == 0 else _NUMBERS)

    items = ", ".join(f"{name()} AS {name()}" for _ in range(draw(st.integers(1, 3))))
    text = f"SELECT {items} FROM {draw(_SOURCES) if hostile else chr(34) + GROUPS_TABLE + chr(34)}"
    tests = [
        f"{name()} {draw(_HOSTILE_OPS if hostile and draw(st.booleans()) else _OPS)} {number()}"
        for _ in range(draw(st.integers(0, 3)))
    ]
    if tests:
        text += " WHERE " + " AND ".join(tests)
    orders = [
        name() + draw(st.sampled_from(["", " ASC", " DESC", " NULLS FIRST", " DESC NULLS LAST", " USING <"]))
        for _ in range(draw(st.integers(0, 3)))
    ]
    if orders:
        text += " ORDER BY " + ", ".join(orders)
    if draw(st.booleans()):
        text += f" LIMIT {number()}" + (f" OFFSET {number()}" if draw(st.booleans()) else "")
    if hostile and draw(st.booleans()):
        text += draw(st.sampled_from(["; SELECT 1", " --", " /* */", " ", "\n", " GROUP BY 1", " HAVING 1 = 1"]))
    return text


def _mutated(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A statement with one character inserted, deleted or replaced (quotes, comment marks, case, spaces)."""

    @st.composite
    def mutate(draw: Any) -> str:
        sql = draw(text)
        at = draw(st.integers(0, len(sql)))
        piece = draw(st.sampled_from(['"', "'", "-", "/", "*", ";", " ", "\n", "(", ")", ".", "e", "x", "_", "$", ""]))
        cut = draw(st.integers(0, 1))
        return sql[:at] + piece + sql[at + cut :]

    return mutate()


_VALID_DATES = st.sampled_from(["1995-01-01", "1994-12-31", "1998-12-01 10:00:00", "2000-01-01 00:00:00.5"])
_DATES = st.one_of(_VALID_DATES, _VALID_DATES, st.text(alphabet="0123456789-: .'\"/*\\x", max_size=14))
_TYPES = st.one_of(
    st.just("DATE"),
    st.just("TIMESTAMP"),
    st.sampled_from(["VARCHAR", "date", "INTERVAL", "DATE[]", "UTINYINT", "DATE)", "DATE) AS x, (1"]),
)


_VALID_SHIFTS = st.builds(
    lambda sign, number, unit: f" {sign} INTERVAL '{number}' {unit}",
    st.sampled_from(["+", "-"]),
    st.sampled_from(["90", "1", "0", "123456789012"]),
    st.sampled_from(["DAY", "MONTH", "YEAR"]),
)
_SHIFTS = st.one_of(
    st.just(""),
    st.builds(
        lambda sign, number, unit: f" {sign} INTERVAL '{number}' {unit}",
        st.sampled_from(["+", "-"]),
        st.sampled_from(["90", "1", "0", "123456789012", "1.5", "-1", "x", "\u0669\u0660", "\uff19"]),
        st.sampled_from(["DAY", "MONTH", "YEAR", "HOUR", "day", "DAYS", "MINUTE", "DAY TO SECOND"]),
    ),
    st.sampled_from([" - INTERVAL 90 DAY", " - INTERVAL '90' DAY - INTERVAL '1' DAY", " * 2", " - '1'", " || 'x'"]),
)


@st.composite
def _constants(draw: Any) -> str:
    if draw(st.booleans()):  # hostile pieces anywhere
        dates, types, shifts = _DATES, _TYPES, _SHIFTS
    else:  # the shapes the rewrite writes
        dates, types = _VALID_DATES, st.sampled_from(["DATE", "TIMESTAMP"])
        shifts = st.one_of(st.just(""), _VALID_SHIFTS)
    items = [
        f"CAST('{draw(dates)}' AS {draw(types)}){draw(shifts)} AS {draw(_NAMES)}"
        for _ in range(draw(st.integers(1, 3)))
    ]
    return "SELECT " + ", ".join(items)


# -- the property: a fast acceptance is a full acceptance ----------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_outputs(), _mutated(_outputs())))
def test_a_plain_output_is_one_the_full_walk_accepts(sql: str) -> None:
    if crosscheck._plain_output(sql, GROUPS_TABLE):
        assert _full_output_accepts(sql), sql


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_constants(), _mutated(_constants())))
def test_plain_constants_are_ones_the_full_walk_accepts(sql: str) -> None:
    if crosscheck._plain_constants(sql):
        assert _full_constants_accepts(sql), sql


@settings(max_examples=150, deadline=None)
@given(_outputs())
def test_the_fast_check_accepts_only_plain_statements_of_the_groups_table(sql: str) -> None:
    """Another groups table name, or one the pattern cannot spell, is never taken the fast way."""
    assert not crosscheck._plain_output(sql, "people")
    assert not crosscheck._plain_output(sql, 'x"y')


def test_digits_of_other_scripts_are_never_plain() -> None:
    """Python's `\\d` matches any script's digits; DuckDB reads them as a name (a column, which stage 2 refuses)."""
    plain = 'SELECT "__a0" AS "__c0" FROM "__groups" WHERE "__lo0" >= 10 LIMIT 5'
    shifted = "SELECT CAST('1995-01-01' AS DATE) - INTERVAL '90' DAY AS \"__k0\""
    assert crosscheck._plain_output(plain, GROUPS_TABLE) and crosscheck._plain_constants(shifted)
    for digits in ("\u0661\u0660", "\uff11\uff10", "1\u00b2", "\u0967"):
        for output in (plain.replace("10", digits), plain.replace("5", digits)):
            assert not crosscheck._plain_output(output, GROUPS_TABLE), output
            assert not _full_output_accepts(output), output
        assert not crosscheck._plain_constants(shifted.replace("90", digits))


def test_hostile_stage_2_statements_are_refused_by_confirm() -> None:
    """Each tampered stage 2 still meets DuckDB's parse and the walk inside confirm, and is refused there."""
    cache.plans.clear()
    sql = "SELECT region, count(*) FROM people GROUP BY region"
    plan = plan_query(sql, POLICY)
    assert crosscheck._plain_output(plan.output_sql, GROUPS_TABLE)
    tampered = [
        plan.output_sql.replace('"__a0"', '"amount"'),
        plan.output_sql.replace('"__groups"', '"people"'),
        plan.output_sql + "; SELECT 1",
        plan.output_sql.replace('"__lo0" >= 10', '"__lo0" >= 10 OR "region" = 1'),
        plan.output_sql.replace('"__a0"', '"__a0"."x"'),
        plan.output_sql + " GROUP BY 1",
        plan.output_sql.replace("FROM", ", (SELECT 1) AS x FROM"),
    ]
    for output in tampered:
        assert not crosscheck._plain_output(output, GROUPS_TABLE), output
        assert not _full_output_accepts(output), output
        with pytest.raises(QueryRefused):
            _confirm(sql, plan, output)
    # A comment is no plain projection either: DuckDB parses it, reads the same tree, and the walk accepts it.
    commented = plan.output_sql.replace('"__a0" AS', '"__a0" /* */ AS')
    assert not crosscheck._plain_output(commented, GROUPS_TABLE)
    _confirm(sql, plan, commented)


def _confirm(sql: str, plan: Any, output: str) -> None:
    crosscheck.confirm(
        sql, plan.template, output, POLICY, {"people": "people"}, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN,
        groups_table=GROUPS_TABLE, constants=plan.constants_sql, seeded=plan.seeded,
    )  # fmt: skip


# -- the fast paths are taken, and the corpora's verdicts are the full path's --------------------------------


def _parsed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    read = crosscheck._read

    def recorded(raw_sql: str, statements: list[str]) -> tuple[Any, ...]:
        calls.append(list(statements))
        return read(raw_sql, statements)

    monkeypatch.setattr(crosscheck, "_read", recorded)
    return calls


def test_plain_stage_2_and_date_constants_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _parsed(monkeypatch)
    accepted = [(sql, POLICY) for _, sql, code in PEOPLE + JOINED if code is None]
    outputs = constants = with_constants = 0
    for sql, policy in accepted + [(sql, TPCH_POLICY) for sql in QUERIES.values()]:
        for sizes in SIZES:
            cache.plans.clear()
            calls.clear()
            plan = plan_query(sql, policy, sizes)
            assert len(calls) == 1
            if plan.output_sql not in calls[0]:
                outputs += 1
            with_constants += bool(plan.constants_sql)
            if plan.constants_sql and plan.constants_sql not in calls[0]:
                constants += 1
    assert outputs >= 120
    assert constants == with_constants >= 10  # TPC-H q1's `CAST(...) - INTERVAL '90' DAY` included
    cache.plans.clear()
    calls.clear()
    plan = plan_query(QUERIES["by_ship_mode_1994"], TPCH_POLICY)
    assert calls == [[plan.template]]  # the seeded stage, stage 2 and the constants: none parsed by DuckDB


def _verdicts(cases: list[tuple[str, ProtectionPolicy]]) -> list[str]:
    out = []
    for sql, policy in cases:
        for sizes in SIZES:
            cache.plans.clear()
            try:
                plan = plan_query(sql, policy, sizes)
                out.append(repr((plan.template, plan.output_sql, plan.constants_sql, plan.seeded)))
            except QueryRefused as error:
                out.append("refused " + error.code)
    cache.plans.clear()
    return out


def test_the_corpora_get_the_full_paths_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy corpus, the attacks and the TPC-H queries: every verdict with the fast checks is the verdict
    with them off (every refusal stays a refusal, every acceptance the same plan)."""
    cases = [(sql, POLICY) for _, sql, _ in PEOPLE + JOINED + ATTACKS]
    cases += [(sql, TPCH_POLICY) for sql in QUERIES.values()]
    fast = _verdicts(cases)
    monkeypatch.setattr(crosscheck, "_plain_output", lambda sql, groups_table: False)
    monkeypatch.setattr(crosscheck, "_plain_constants", lambda sql: False)
    assert _verdicts(cases) == fast
    assert sum(v.startswith("refused") for v in fast) > 300


def test_tampered_constants_are_parsed_and_refused() -> None:
    cache.plans.clear()
    sql = QUERIES["by_ship_mode_1994"]
    plan = plan_query(sql, TPCH_POLICY)
    assert plan.constants_sql and crosscheck._plain_constants(plan.constants_sql)
    tampered = [
        plan.constants_sql.replace("AS DATE", "AS UTINYINT", 1),
        plan.constants_sql + " FROM lineitem",
        plan.constants_sql.replace("CAST(", "CAST(l_shipdate || ", 1),
        plan.constants_sql + ", (SELECT 1) AS x",
        plan.constants_sql.replace("'1994-01-01'", "'1994-01-01' || current_setting('x')"),
    ]
    for constants in tampered:
        assert not crosscheck._plain_constants(constants), constants
        assert not _full_constants_accepts(constants), constants
        with pytest.raises(QueryRefused):
            crosscheck.confirm(
                sql, plan.template, plan.output_sql, TPCH_POLICY, {"lineitem": "lineitem"}, threshold=THRESHOLD_COLUMN,
                restrict=RESTRICT_COLUMN, groups_table=GROUPS_TABLE, constants=constants, seeded=plan.seeded,
            )  # fmt: skip
    cache.plans.clear()


# -- the constants statement's text, written without generating a SELECT (rewrite._constants_sql) -----------

_CONSTANT_LEAVES = st.one_of(
    st.sampled_from(["1", "2.5", "-3", "1e300", "NULL", "TRUE", "DATE '1995-01-01'", "TIMESTAMP '1995-01-01 10:00'"]),
    st.sampled_from(["INTERVAL 90 DAY", "INTERVAL '1' MONTH", "'it''s'", "'é\"x'", "$$a$$", "9223372036854775808"]),
    st.text(alphabet="ab'\"\\ -é", max_size=6).map(lambda t: "'" + t.replace("'", "''") + "'"),
)


def _constant_texts(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _CONSTANT_LEAVES
    inner = _constant_texts(depth - 1)
    return st.one_of(
        _CONSTANT_LEAVES,
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["+", "-", "*", "/", "||", "%"]), inner),
        st.builds(lambda a: f"({a})", inner),
        st.builds(lambda a: f"-{a}", inner),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["least", "greatest", "round"]), inner, inner),
        st.builds(lambda a, t: f"CAST({a} AS {t})", inner, st.sampled_from(["DATE", "VARCHAR", "DECIMAL(10, 2)"])),
        st.builds(lambda a, b: f"CASE WHEN {a} = {b} THEN {a} ELSE {b} END", inner, inner),
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_constant_texts(2), min_size=1, max_size=4))
def test_the_constants_text_is_the_generated_selects(texts: list[str]) -> None:
    from sandbox import rewrite
    from sandbox.syntax import parse_one_select

    try:
        select = parse_one_select("SELECT " + ", ".join(texts))
    except QueryRefused:
        return
    constants = list(select.expressions)
    assert rewrite._constants_sql(constants) == rewrite._constants_select(constants)
