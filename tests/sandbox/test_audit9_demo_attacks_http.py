"""Audit of issue 9 (branch audit9): the issue's attack classes over HTTP on every demo product.

Issue 9's "Done when" asks that no single row's value is returned "on both demo products", and the red team
read one business's row of the tax-credit product as well as one flight's. tests/sandbox/test_attacks.py runs
the classes on a fixture, tests/sandbox/test_red12_oracles_http.py error oracles on the flights demo; here
every class (indicator functions in aggregates, error oracles, counts of hidden values, cost blow-ups in a
hidden branch) is sent through `POST /v1/queries` to each demo product: `nyc-flights-2013` (threshold mode),
`nyc-flights-2013-dp` and `bj-sme-tax-credits-2025` (DP mode, whose unit is a natural person).

Each query is sent twice, naming a hidden value that exists and one that does not ('LEX', one flight of
one aircraft, against 'ZZZ'; the district 'Haidian' against 'Atlantis', a district the recipe quarantined).
- An indicator or a cost blow-up must be refused, with the same code both times (never a 5xx).
- Every other pair must get the same answer: status and error code, and in threshold mode the same rows
  (DP answers are noisy, so there only the status and code are compared).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from market.demo import FLIGHTS_DP_SLUG, FLIGHTS_SLUG
from market.demo_credit import CREDIT_SLUG
from tests.conftest import DemoMarket, DemoTemplates, _english_client


@dataclass(frozen=True)
class Demo:
    slug: str
    table: str
    hidden: str  # a text dimension holding the hidden value
    other: str  # another text dimension
    number: str  # a whole-number dimension
    m: str  # measures
    n: str
    present: str
    absent: str
    dp: bool


DEMOS = [
    Demo(FLIGHTS_SLUG, "flights", "dest", "origin", "month", "arr_delay", "dep_delay", "LEX", "ZZZ", False),
    Demo(FLIGHTS_DP_SLUG, "flights", "dest", "origin", "month", "arr_delay", "dep_delay", "LEX", "ZZZ", True),
    Demo(
        CREDIT_SLUG, "tax_credits", "district", "industry", "month", "revenue_yuan", "tax_credit_yuan", "Haidian",
        "Atlantis", True,
    ),
]  # fmt: skip

_REPLACE = "{o}"
for _ in range(4):
    _REPLACE = f"replace({_REPLACE}, 'a', 'aaaaaaaaaa')"

REFUSED = [
    # 1. Indicator functions inside aggregates: NULL or an error for every row but chosen ones.
    "SELECT {o}, sum(CAST({m} - 57 AS TINYINT) * 0 + {n}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum(TRY_CAST({m} AS UTINYINT) * 0 + {n}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, avg(CAST({m} AS DECIMAL(2, 0)) + {n}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum({m} * 92233720368547758 * 0 + {n}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum(({m} + 9223372036854775000) * 0 + {n}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum({n} / ({m} - 57)) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum(1 / {m} * 0 + {n}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum({n} // ({m} - 57)) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum({n} % ({m} - 56)) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum({m} * {m}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum(CASE WHEN {h} = '{v}' THEN {m} ELSE 0 END) AS s FROM {t} GROUP BY {o}",
    "SELECT {o}, sum(({h} = '{v}')::INTEGER * {m}) AS s FROM {t} GROUP BY {o}",
    "SELECT {o}, count(nullif({m}, 57)) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, sum({m}) FILTER (WHERE {h} = '{v}') AS s FROM {t} GROUP BY {o}",
    "SELECT {o}, max({m}) AS s FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    # 2. Error oracles: text compared with a number, casts of text, failing constants in a hidden branch.
    "SELECT {o}, count(*) AS n FROM {t} WHERE CASE WHEN {h} = '{v}' THEN {o} = 5 ELSE true END GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE CASE WHEN {h} = '{v}' THEN CAST('x' AS INTEGER) = 1 "
    "ELSE true END GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE CASE WHEN {h} = '{v}' THEN {i} = 'x' ELSE true END GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE CASE WHEN {h} = '{v}' THEN 100000 * 100000 > 1 ELSE true END "
    "GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE TRY_CAST({h} AS INTEGER) IS NULL AND {h} = '{v}' GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE year(CAST({h} AS DATE)) = 2013 AND {h} = '{v}' GROUP BY {o}",
    "SELECT CASE WHEN {h} = '{v}' THEN 1 // 0 END AS k, count(*) AS n FROM {t} GROUP BY 1",
    # 3. Counts that tell whether a hidden value exists.
    "SELECT count(DISTINCT {h}) AS n FROM {t} WHERE {h} IN ('{v}', '{o_value}')",
    # 4. A cost blow-up reached only when a hidden condition holds.
    "SELECT {o}, count(*) AS n FROM {t} WHERE CASE WHEN {h} = '{v}' THEN length(" + _REPLACE + ") > 5 "
    "ELSE true END GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE replace({o}, 'a', {h} || {o}) = 'x' AND {h} = '{v}' GROUP BY {o}",
    # A row-level position from data (TRY() would make the hidden row slow).
    "SELECT {o}, count(*) AS n FROM {t} WHERE substring({o}, CASE WHEN {h} = '{v}' THEN -9223372036854775807 "
    "ELSE 1 END, 2) = 'ab' GROUP BY {o}",
]

SAME = [
    # Accepted, or refused alike: the hidden value's rows are in suppressed groups (threshold) or noise (DP).
    "SELECT {o}, count(*) AS n, sum({m}) AS s, avg({n}) AS a FROM {t} WHERE {h} = '{v}' GROUP BY {o}",
    "SELECT count(*) AS n, sum({m}) AS s FROM {t} WHERE {h} = '{v}'",
    "SELECT {o}, count(*) AS n FROM {t} WHERE (CASE WHEN {h} = '{v}' THEN 9223372036854775807 ELSE 1 END) "
    "+ {i} > 0 GROUP BY {o}",
    "SELECT {o}, count(*) AS n FROM {t} WHERE 10 // (CASE WHEN {h} = '{v}' THEN 0 ELSE 1 END) > 0 GROUP BY {o}",
    "SELECT {h}, count(*) AS n FROM {t} WHERE {h} IN ('{v}', '{o_value}') GROUP BY {h} HAVING ln(count(*) - 1) > -1",
]

OTHER_VALUE = {"flights": "BOS", "tax_credits": "Chaoyang"}


def _sql(template: str, demo: Demo, value: str) -> str:
    return template.format(
        t=demo.table, h=demo.hidden, o=demo.other, i=demo.number, m=demo.m, n=demo.n, v=value,
        o_value=OTHER_VALUE[demo.table],
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(demo_templates: DemoTemplates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoMarket]:
    """One copy of the demo for the module: every query here is refused, or in DP mode spends 0.05."""
    data_dir: Path = tmp_path_factory.mktemp("audit9-demo") / "data"
    with demo_templates.copy(data_dir) as copy, _english_client(copy.settings, copy.database) as client:
        yield DemoMarket(
            settings=copy.settings, database=copy.database, client=client, keys=copy.keys, logins=copy.logins
        )


def _answer(market: DemoMarket, demo: Demo, sql: str) -> tuple[Any, ...]:
    body: dict[str, Any] = {"product": demo.slug, "sql": sql}
    if demo.dp:
        body["epsilon"] = 0.05
    response = market.client.post("/v1/queries", headers=market.headers("buyer_commercial"), json=body)
    assert response.status_code < 500, (sql, response.text)
    payload = response.json()
    if "error" in payload:
        assert payload["error"]["message"], payload
        return response.status_code, payload["error"]["code"]
    if demo.dp:
        return (response.status_code,)
    return response.status_code, payload["columns"], sorted(map(repr, payload["rows"]))


@pytest.mark.parametrize("demo_product", DEMOS, ids=[d.slug for d in DEMOS])
def test_every_indicator_oracle_and_blow_up_is_refused_alike_on_every_demo_product(
    demo: DemoMarket, demo_product: Demo
) -> None:
    accepted = []
    for template in REFUSED:
        present = _answer(demo, demo_product, _sql(template, demo_product, demo_product.present))
        absent = _answer(demo, demo_product, _sql(template, demo_product, demo_product.absent))
        assert present == absent, template
        if not 400 <= present[0] < 500:
            accepted.append((template, present))
    assert accepted == []


@pytest.mark.parametrize("demo_product", DEMOS, ids=[d.slug for d in DEMOS])
def test_a_hidden_value_present_or_absent_gets_the_same_answer_on_every_demo_product(
    demo: DemoMarket, demo_product: Demo
) -> None:
    for template in SAME:
        present = _answer(demo, demo_product, _sql(template, demo_product, demo_product.present))
        absent = _answer(demo, demo_product, _sql(template, demo_product, demo_product.absent))
        assert present == absent, template
