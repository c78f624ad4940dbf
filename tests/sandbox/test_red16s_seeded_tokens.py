"""Red team red16s (session 12): val15's token proof of the seeded stage 1, and the grouping-sets check.

crosscheck._derived_seeded accepts a seeded stage 1 without a DuckDB parse when its text is the template with
the rewrite's insertions, token for token (docs/sandbox.md, "The seeded stage 1 from the template's tokens").
The invariant attacked here: whenever the proof holds, DuckDB's own parse of the seeded text is the template's
tree plus the flag item, the seed and the last key, i.e. check_seeded accepts it against the template's tree and
_unseeded_is finds the template there. Templates and filters are drawn with the spellings a token argument can
get wrong: string constants and quoted identifiers holding `__restrict__`, `"__threshold__"`, `WHERE`,
parentheses, `AND`/`OR`, comment openers, multi-byte characters before every insertion point, dollar-quoted and
E'...' strings, doubled quotes, nested parentheses, a top-level OR, no GROUP BY, whitespace other than a space
after a clause keyword. Both buyer-reachable (plan_query) and tampered templates (written directly).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sandbox import cache, crosscheck
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.rewrite import RESTRICT_COLUMN, THRESHOLD_COLUMN
from sandbox.service import plan_query
from tests.sandbox.conftest import TWO_TABLE_POLICY

POLICY = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
ALIASES = {"people": "people", "p": "people", "s": "shops", "人": "people"}
SEED = '("people"."__row" & 2047) = 0'


def _derived(template: str, seeded: str, aliases: dict[str, str] | None = None) -> bool | None:
    return crosscheck._derived_seeded(
        template, seeded, aliases or ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN
    )


def _template_accepted(template: str) -> dict[str, Any] | None:
    """DuckDB's tree of `template` (no positions) when the groups walk accepts it, else None."""
    try:
        node = crosscheck._serialize(template, compared=True)
        crosscheck._check_groups_node(node, POLICY, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)
    except QueryRefused:
        return None
    return node


def _assert_read_as_derived(template: str, seeded: str) -> None:
    """The proof's claim, checked against DuckDB's parse: the seeded text is the template plus the insertions."""
    grouped = _derived(template, seeded)
    groups = _template_accepted(template)
    if grouped is None or groups is None or not crosscheck._plain_groups(groups, grouped=grouped):
        return  # DuckDB parses the seeded text (crosscheck.confirm): nothing is derived
    node = crosscheck._serialize(seeded, compared=True)
    keys = node.get("group_expressions") or []
    template_keys = groups.get("group_expressions") or []
    flag = {**node["select_list"][-2], "alias": ""}
    if flag in template_keys:
        # The buyer grouped by the flag's very expression: DuckDB keeps one of two equal keys, so the seeded
        # text groups by the template's keys (the same grouping; the flag is TRUE on every row the template reads).
        assert keys == template_keys and node.get("group_sets") == [list(range(len(keys)))], seeded
        return
    crosscheck._check_seeded_node(
        node, POLICY, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN, template=groups
    )
    filter_ = crosscheck._flag_filter(node["select_list"][-2])
    assert keys == [*template_keys, flag], seeded
    assert crosscheck._unseeded_is(node, groups, filter_, node["where_clause"]["children"][1]), seeded
    DERIVED.append(seeded)


DERIVED: list[str] = []


def _seeded_of(template: str, alias: str = "people") -> str:
    """The seeded text the rewrite writes for `template` (rewrite._seeded_text's construction, on the text)."""
    head, _, tail = template.partition(', "__threshold__" FROM ')
    where_at = tail.index(" WHERE (") + len(" WHERE ")
    depth, end = 0, None
    quoted = ""
    for i in range(where_at, len(tail)):  # a naive scan; the proof does not trust it, it recomputes on tokens
        if quoted:
            quoted = "" if tail[i] == quoted else quoted
            continue
        if tail[i] in "'\"":
            quoted = tail[i]
            continue
        depth += {"(": 1, ")": -1}.get(tail[i], 0)
        if depth == 0:
            end = i + 1
            break
    if end is None:
        raise ValueError("no filter found")
    filter_ = tail[where_at:end]
    flag = f"COALESCE({filter_}, FALSE)"
    rest = tail[end:]
    grouped = " GROUP BY " in rest
    last = f", {flag}" if grouped else f" GROUP BY {flag}"
    seed = f'("{alias}"."__row" & 2047) = 0'
    return f'{head}, {flag} AS "__kept", "__threshold__" FROM {tail[:where_at]}({filter_} OR {seed}){rest}{last}'


NASTY_STRINGS = [
    "x",
    '"__threshold__"',
    "__restrict__",
    '"__restrict__"',
    ') AND "__restrict__" GROUP BY (',
    "WHERE (",
    ")) OR ((",
    "-- ",
    "/* ",
    "*/",
    "北京) AND (",
    "é'",
    "$$",
    "$a$",
    "\\",
    "\\'",
    "'; SELECT 1; --",
    "\n'",
    "GROUP BY",
    ", COALESCE(",
    'U&"\\0061"',
]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@st.composite
def buyer_filters(draw: st.DrawFn) -> str:
    atoms = [
        f"region <> {_sql_string(draw(st.sampled_from(NASTY_STRINGS)))}",
        f"category = {_sql_string(draw(st.sampled_from(NASTY_STRINGS)))}",
        f"region IN ({_sql_string(draw(st.sampled_from(NASTY_STRINGS)))}, 'north')",
        f"region LIKE {_sql_string(draw(st.sampled_from(NASTY_STRINGS)) + '%')}",
        "month = 1",
        "(month + 1) * 2 > 3",
        "NOT (month IN (1, 2))",
        "month BETWEEN 1 AND 2",
        "region IS NOT NULL",
        "month NOT IN (3)",
        "region NOT LIKE 'n%'",
        "E'a\\'b' <> region",
        "$$)$$ <> region",
        '$q$ AND "__restrict__" $q$ <> region',
    ]
    chosen = draw(st.lists(st.sampled_from(atoms), min_size=1, max_size=3))
    joiner = draw(st.sampled_from([" AND ", " OR "]))
    text = joiner.join(chosen)
    if draw(st.booleans()):
        text = f"(({text}))"
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filter_=buyer_filters(), grouped=st.booleans(), alias=st.sampled_from(["people", "p", "人"]))
def test_buyer_filters_derived_only_when_duckdb_reads_the_seeded_text_so(
    filter_: str, grouped: bool, alias: str
) -> None:
    table = "people" if alias == "people" else f'people AS "{alias}"'
    keys = ", region" if grouped else ""
    group_by = " GROUP BY region" if grouped else ""
    sql = f"SELECT count(*), sum(amount){keys} FROM {table} WHERE {filter_}{group_by}"
    note(sql)
    cache.plans.clear()
    try:
        plan = plan_query(sql, POLICY)
    except QueryRefused:
        return
    if plan.seeded is None:
        return
    note(plan.seeded)
    _assert_read_as_derived(plan.template, plan.seeded)


BASE = (
    'SELECT "people"."region" AS "__g0", COUNT(*) AS "__a0", "__threshold__" FROM "people" AS "people" '
    'WHERE ({filter}) AND "__restrict__"{group}'
)

TAMPERED_FILTERS = [
    '"people"."region" <> \') AND "__restrict__" GROUP BY ("people"."region"\'',
    '"people"."region" <> $$) OR TRUE OR ($$',
    "\"people\".\"region\" <> E'\\') OR TRUE OR (\\''",
    '"people"."region" <> \'北京\' AND "people"."region" <> \'é\'',
    '"people"."region" <> \'x\' OR "people"."month" = 1',
    '(("people"."month" = 1))',
    '"people"."month" IN (1, (2))',
    "\"people\".\"region\" <> 'a''b'",
    "\"people\".\"region\" <> 'a'\n'b'",
    '"people"."region" <> $tag$ "__threshold__" FROM $tag$',
    '"people"."region" <> \'x\' /* ) AND "__restrict__" */',
    '"people"."region" <> \'x\' -- )\n',
    '"people"."region" NOT LIKE \'x\'',
    'NOT "people"."month" BETWEEN 1 AND 2',
    '"people"."month" = 1 AND "people"."month" = 1',
]
TAMPERED_GROUPS = [
    "",
    ' GROUP BY "people"."region"',
    ' GROUP BY "people"."region", ()',
    ' GROUP BY GROUPING SETS (("people"."region"))',
    ' GROUP BY "people"."region" HAVING\nTRUE',
    ' GROUP BY "people"."region" WINDOW\nw AS (PARTITION BY "people"."month")',
    ' GROUP BY "people"."region" ORDER\tBY 1',
    ' GROUP BY "people"."region" LIMIT\n1',
    ' GROUP BY "people"."region" QUALIFY\nTRUE',
    ' GROUP BY ROLLUP ("people"."region")',
    ' GROUP BY "people"."region", "people"."region"',
    ' GROUP BY "people"."region" UNION\nSELECT 1, 2, 3',
    ' GROUP\tBY "people"."region"',
    " GROUP BY COALESCE(({filter}), FALSE)",
]


@pytest.mark.parametrize("group", TAMPERED_GROUPS)
@pytest.mark.parametrize("filter_", TAMPERED_FILTERS)
def test_tampered_templates_are_derived_only_when_duckdb_reads_the_seeded_text_so(filter_: str, group: str) -> None:
    template = BASE.format(filter=filter_, group=group.replace("{filter}", filter_))
    try:
        seeded = _seeded_of(template)
    except (AssertionError, ValueError):
        return
    _assert_read_as_derived(template, seeded)


def test_a_clause_keyword_before_a_newline_is_seen_by_the_token_scan() -> None:
    """FOUND (red16s): the scan compared each keyword's span with its trailing spaces stripped, not its newlines or
    tabs, so `WINDOW\nw AS (...)` after the keys was not seen as a clause: the proof held and the appended flag
    landed in the WINDOW list, a text DuckDB cannot parse (accepted unparsed by confirm; it would fail at run time
    alike for all data, so nothing hidden showed). The scan now strips all the whitespace the scanner skips. The
    clauses the template's tree shows (HAVING, QUALIFY, ORDER BY, LIMIT, set operations) were refused anyway."""
    for clause in ("HAVING\nTRUE", "QUALIFY\nTRUE", "ORDER\tBY 1", "LIMIT\n1", "UNION\nSELECT 1, 2, 3"):
        template = BASE.format(filter='"people"."month" = 1', group=f' GROUP BY "people"."region" {clause}')
        assert _template_accepted(template) is None, clause
    for spacing in ("\n", "\t", "\r\n", "\x0c", "\x0b"):
        window = BASE.format(
            filter='"people"."month" = 1',
            group=f' GROUP BY "people"."region" WINDOW{spacing}w AS (PARTITION BY "people"."month")',
        )
        assert _template_accepted(window) is not None  # DuckDB's tree shows no named window no function uses
        seeded = _seeded_of(window)
        with pytest.raises(QueryRefused):
            crosscheck._serialize(seeded)
        assert _derived(window, seeded) is None, repr(spacing)


def test_the_tampered_templates_are_mostly_derived() -> None:
    """Not vacuous: most drawn spellings of the filter are derived (and then checked against DuckDB's parse)."""
    derived = 0
    for filter_ in TAMPERED_FILTERS:
        for group in ("", ' GROUP BY "people"."region"'):
            template = BASE.format(filter=filter_, group=group)
            derived += _derived(template, _seeded_of(template)) is not None
    assert derived >= 20


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet="北é'\"()$-/* \n\\ORANDWHEREGROUPBY,", max_size=12),
    where=st.sampled_from(["region", "category"]),
)
def test_any_string_constant_in_the_filter(before: str, where: str) -> None:
    """A drawn string constant (any of the characters a token argument depends on) in a tampered template."""
    filter_ = f'"people"."{where}" <> {_sql_string(before)}'
    for group in ("", ' GROUP BY "people"."region"'):
        template = BASE.format(filter=filter_, group=group)
        try:
            seeded = _seeded_of(template)
        except ValueError:
            continue
        _assert_read_as_derived(template, seeded)


# -- the grouping-sets check (lead, a821994) ----------------------------------------------------------------

GROUPINGS = {
    # DuckDB's reading: keys and grouping sets. Only one set of all the keys may pass.
    'GROUP BY ROLLUP ("people"."region")': False,
    'GROUP BY CUBE ("people"."region")': False,
    'GROUP BY GROUPING SETS (("people"."region"), ())': False,
    'GROUP BY GROUPING SETS (("people"."region"), ("people"."region"))': False,
    'GROUP BY "people"."region", ROLLUP (())': False,
    'GROUP BY "people"."region", GROUPING SETS ((), ())': False,
    'GROUP BY ROLLUP ("people"."region"), "people"."region"': False,
    'GROUP BY CUBE ("people"."region", "people"."region")': False,
    'GROUP BY GROUPING SETS ("people"."region", "people"."region")': False,
    "GROUP BY ALL": False,
    "GROUP BY ()": False,
    "GROUP BY GROUPING SETS (())": False,
    # the same grouping as `GROUP BY region`: one set of all the keys
    'GROUP BY "people"."region"': True,
    'GROUP BY "people"."region", ()': True,
    'GROUP BY ("people"."region")': True,
    'GROUP BY GROUPING SETS (("people"."region"))': True,
    'GROUP BY "people"."region", "people"."region"': True,
}


@pytest.mark.parametrize("grouping", list(GROUPINGS))
def test_only_one_grouping_set_of_all_keys_passes_in_the_template_and_the_seeded_text(grouping: str) -> None:
    template = BASE.format(filter='"people"."month" = 1', group=" " + grouping)
    accepted = _template_accepted(template) is not None
    assert accepted is GROUPINGS[grouping], grouping
    seeded = _seeded_of(template)
    if GROUPINGS[grouping]:
        _assert_read_as_derived(template, seeded)
        assert seeded in DERIVED or grouping.count('"people"."region"') > 1
        return
    # A seeded text built on another grouping: refused by its own walk, unless DuckDB reads it as one set of all
    # its keys (`GROUP BY (), flag` is `GROUP BY flag`); and its template is refused before it is reached.
    try:
        node = crosscheck._serialize(seeded, compared=True)
        crosscheck._check_seeded_node(node, POLICY, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)
    except QueryRefused:
        return
    assert node.get("group_sets") == [list(range(len(node.get("group_expressions") or [])))], grouping


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY ROLLUP (region)",
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY CUBE (region)",
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY GROUPING SETS ((region), ())",
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY region, ()",
        "SELECT count(*) FROM people WHERE month = 1 GROUP BY ()",
        "SELECT region, month, count(*) FROM people WHERE month = 1 GROUP BY (region, month)",
        "SELECT region, grouping(region), count(*) FROM people GROUP BY region",
        "SELECT region, count(*) FROM people GROUP BY region, ROLLUP (())",
    ],
)
def test_the_buyer_cannot_write_another_grouping(sql: str) -> None:
    cache.plans.clear()
    with pytest.raises(QueryRefused):
        plan_query(sql, POLICY)


def test_group_by_all_and_the_flag_as_a_key_keep_one_set() -> None:
    """GROUP BY ALL is rewritten into its keys; a buyer key spelled as the seeded flag is merged by DuckDB with
    the flag the seeded stage appends (the same grouping: the key is TRUE on every row the template reads)."""
    for sql in (
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY ALL",
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY region, coalesce((month = 1), false)",
        "SELECT region, count(*) FROM people WHERE month = 1 GROUP BY coalesce((month = 1), false), region",
    ):
        cache.plans.clear()
        plan = plan_query(sql, POLICY)
        assert plan.seeded is not None
        assert "ALL" not in plan.template
        _assert_read_as_derived(plan.template, plan.seeded)
