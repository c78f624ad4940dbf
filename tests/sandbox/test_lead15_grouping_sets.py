"""Stage 1's template must group by one list of keys as DuckDB reads it (val15's note, closed by the lead).

GROUPING SETS, ROLLUP, CUBE and GROUP BY ALL would add subtotal groups, or keys, that the threshold never
decided. sqlglot refuses them in the buyer's text, so the rewrite never writes them; the second validator now
refuses them too, whatever wrote the template.
"""

from __future__ import annotations

import pytest

from sandbox import crosscheck
from sandbox.errors import QueryRefused
from sandbox.rewrite import RESTRICT_COLUMN, THRESHOLD_COLUMN
from sandbox.service import plan_query
from tests.sandbox.test_validation_shortcuts import FILTERED, POLICY, _confirm

ALIASES = {"people": "people"}
REGION = '"people"."region"'
CATEGORY = '"people"."category"'


def _template(group_by: str) -> str:
    return (
        f'SELECT {REGION} AS "__g0", {CATEGORY} AS "__g1", count(*) AS "__a0", "{THRESHOLD_COLUMN}" '
        f'FROM "people" AS "people" WHERE (TRUE) AND "{RESTRICT_COLUMN}" {group_by}'
    )


def _check(sql: str, policy) -> None:
    crosscheck.check_groups(sql, policy, ALIASES, threshold=THRESHOLD_COLUMN, restrict=RESTRICT_COLUMN)


def test_a_plain_group_by_passes(policy) -> None:
    _check(_template(f"GROUP BY {REGION}, {CATEGORY}"), policy)


@pytest.mark.parametrize(
    "group_by",
    [
        f"GROUP BY GROUPING SETS (({REGION}), ({CATEGORY}))",
        f"GROUP BY ROLLUP ({REGION}, {CATEGORY})",
        f"GROUP BY CUBE ({REGION}, {CATEGORY})",
        f"GROUP BY GROUPING SETS (({REGION}, {CATEGORY}), ())",
        "GROUP BY ALL",
    ],
)
def test_subtotals_are_refused(policy, group_by: str) -> None:
    with pytest.raises(QueryRefused) as refused:
        _check(_template(group_by), policy)
    assert refused.value.code == "parser_mismatch"


@pytest.mark.parametrize("grouping", ["ROLLUP", "CUBE", "GROUPING SETS"])
def test_a_seeded_stage_1_with_subtotals_is_refused(grouping: str) -> None:
    """The seeded stage 1 (the template plus the flag key) as DuckDB reads it: its keys, the flag's included,
    must be one grouping set too. The walk of the statement without its flag key would otherwise see a plain
    list of keys and pass subtotal groups the threshold never decided."""
    plan = plan_query(FILTERED, POLICY)
    assert plan.seeded is not None
    head, tail = plan.seeded.split("GROUP BY ", 1)
    keys = tail.split(" ORDER BY ")[0] if " ORDER BY " in tail else tail
    sets = f"(({keys}), ())" if grouping == "GROUPING SETS" else f"({keys})"
    _confirm(plan, plan.seeded)  # the seeded text as written passes
    with pytest.raises(QueryRefused) as refused:
        _confirm(plan, f"{head}GROUP BY {grouping} {sets}{tail[len(keys) :]}")
    assert refused.value.code == "parser_mismatch"
