"""Red team red13 (issue 9, session 9): the issue's classes against the SECOND demo product, over HTTP.

`bj-sme-tax-credits-2025` (DP mode, unit `business`, public keys for district, industry and month) was
attacked in session 8 for DP's own channels (docs/privacy.md, "Red team"); issue 9's "Done when" asks
that no single row's value is returned on both demo products. Here each query is sent twice, filtered to
a district with 375 businesses ('Dongcheng') and to one no row holds ('Atlantis', the quarantined test
entry of the raw file): every run-time error is reached only on the first side, so a status or an error
code that differs would tell whether any row matches the filter, outside the noise and the budget. With
public keys both sides release the same groups. All held on main (refused up front, or answered on
both sides); each query that runs spends the minimum epsilon (0.05) of the buyer's budget.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DemoMarket

SLUG = "bj-sme-tax-credits-2025"
BY = "SELECT industry, count(*) AS n FROM tax_credits WHERE "
ORACLES = [
    # Class 2, error oracles: a run-time error only where the hidden rows are.
    BY + "CASE WHEN district = '{d}' THEN 2147483647 ELSE 0 END + month > 0 GROUP BY industry",
    BY + "DATE '2013-01-01' + CASE WHEN district = '{d}' THEN INTERVAL 100000000 YEAR ELSE INTERVAL 0 DAY END "
    "> DATE '2013-01-01' GROUP BY industry",
    BY
    + "(CASE WHEN district = '{d}' THEN 2 ELSE 0 END) * INTERVAL 2000000000 MONTH > INTERVAL 0 DAY GROUP BY industry",
    BY + "district = '{d}' AND month * 9223372036854775807 > 0 GROUP BY industry",
    BY + "district = '{d}' AND log(month - 13) < 0 GROUP BY industry",
    BY + "district = '{d}' AND 100 // (month - month) > 0 GROUP BY industry",
    BY + "district = '{d}' AND CAST(month * 100000 AS SMALLINT) > 0 GROUP BY industry",
    BY + "district = '{d}' AND owner_birth_decade + INTERVAL 100000000 YEAR > DATE '2000-01-01' GROUP BY industry",
    BY + "district = '{d}' AND year(owner_birth_decade) * 4611686018427387904 > 0 GROUP BY industry",
    BY + "district = '{d}' AND pow(month + 1000, 1000) > 0 GROUP BY industry",
    BY + "district = '{d}' AND round(month, -2147483648) > 0 GROUP BY industry",
    BY + "district = '{d}' AND extract(epoch FROM owner_birth_decade) * 1e308 * 10 > 0 GROUP BY industry",
    BY + "district = '{d}' AND CAST(district AS INTEGER) > 0 GROUP BY industry",
    BY + "CASE WHEN district = '{d}' THEN district ELSE '1' END > 5 GROUP BY industry",
    BY + "district = '{d}' AND month = '{d}' GROUP BY industry",
    # Class 4, time and memory: growth only where the hidden rows are.
    BY + "district = '{d}' AND length(repeat(district, 100000000)) > 0 GROUP BY industry",
    BY + "district = '{d}' AND replace(replace(replace(district, 'a', district), 'a', district), 'a', district) <> '' "
    "GROUP BY industry",
    # Class 1, indicator functions and overflow inside the aggregate.
    "SELECT industry, sum(revenue_yuan * 1e30) AS s FROM tax_credits WHERE district = '{d}' GROUP BY industry",
    "SELECT industry, avg(revenue_yuan - 1e300) AS s FROM tax_credits WHERE district = '{d}' GROUP BY industry",
    "SELECT industry, sum(CAST(revenue_yuan AS DECIMAL(38,2)) * 99999999999999999999999999) AS s FROM tax_credits "
    "WHERE district = '{d}' GROUP BY industry",
    "SELECT industry, sum(CAST(employees AS TINYINT) * 0 + revenue_yuan) AS s FROM tax_credits "
    "WHERE district = '{d}' GROUP BY industry",
    "SELECT industry, sum(revenue_yuan / (employees - 7)) AS s FROM tax_credits "
    "WHERE district = '{d}' GROUP BY industry",
    "SELECT industry, sum(revenue_yuan * tax_credit_yuan * employees) AS s FROM tax_credits "
    "WHERE district = '{d}' GROUP BY industry",
    # Class 3, counts.
    "SELECT industry, count(DISTINCT month) AS s FROM tax_credits WHERE district = '{d}' GROUP BY industry",
]


def _outcome(market: DemoMarket, sql: str) -> tuple[Any, ...]:
    response = market.client.post(
        "/v1/queries",
        headers=market.headers("buyer_commercial"),
        json={"product": SLUG, "sql": sql, "epsilon": 0.05},
    )
    assert response.status_code < 500, response.text
    body = response.json()
    if "error" in body:
        return response.status_code, body["error"]["code"]
    return response.status_code, body["columns"], sorted(str(row[0]) for row in body["rows"]), body["usage"]


@pytest.mark.parametrize("template", ORACLES)
def test_a_district_with_rows_or_none_gets_the_same_outcome(demo_market: DemoMarket, template: str) -> None:
    assert _outcome(demo_market, template.format(d="Dongcheng")) == _outcome(demo_market, template.format(d="Atlantis"))
