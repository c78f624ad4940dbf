"""Plan and fee-cap numbers beyond what the columns hold are 422 naming the field, never a 500."""

from __future__ import annotations

import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import authorise, create_product
from tests.market.test_hostile_input_http import assert_error


@pytest.mark.parametrize(
    "field", ["monthly_fee_minor", "per_query_minor", "trial_queries", "monthly_cap_minor", "monthly_query_quota"]
)
def test_plan_numbers_beyond_their_column_are_422(market: Market, field: str) -> None:
    # Before: trial_queries, monthly_cap_minor and monthly_query_quota of 2**63 overflowed on insert: 500.
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "bounds").status_code == 201
    response = market.client.put(
        "/v1/products/bounds/plans/big",
        headers=operator.headers,
        json={"code": "big", "title": "t", "kind": "public_interest", field: 2**63},
    )
    assert field in assert_error(response, 422, "invalid_request")


def test_fee_caps_and_revenue_ceiling_beyond_their_column_are_422(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    response = authorise(market, operator, max_per_query_minor=2**70, max_monthly_fee_minor=2**70)
    message = assert_error(response, 422, "invalid_request")
    assert "max_per_query_minor" in message and "max_monthly_fee_minor" in message
