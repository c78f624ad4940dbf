"""The fee-cap comparison: a plan is accepted exactly when none of its fees, tiers included, exceeds the cap."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from products.governance.authorisations import over_cap

money = st.integers(min_value=0, max_value=10**9)
rates = st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False)


@given(
    per_query=money,
    per_gb=rates,
    monthly=money,
    privacy=st.one_of(st.none(), money),
    cap_query=money,
    cap_gb=rates,
    cap_monthly=money,
    cap_privacy=money,
)
def test_a_plan_is_within_the_cap_exactly_when_every_fee_is(
    per_query: int,
    per_gb: Decimal,
    monthly: int,
    privacy: int | None,
    cap_query: int,
    cap_gb: Decimal,
    cap_monthly: int,
    cap_privacy: int,
) -> None:
    plan = SimpleNamespace(
        per_query_minor=per_query,
        per_gb_minor=per_gb,
        monthly_fee_minor=monthly,
        per_tenth_epsilon_minor=privacy,
        tiers=None,
    )
    limits = {
        "per_query_minor": Decimal(cap_query),
        "per_gb_minor": cap_gb,
        "monthly_fee_minor": Decimal(cap_monthly),
        "per_tenth_epsilon_minor": Decimal(cap_privacy),
    }
    within = per_query <= cap_query and per_gb <= cap_gb and monthly <= cap_monthly and (privacy or 0) <= cap_privacy
    assert (over_cap(plan, limits) is None) == within


@given(tier_fees=st.lists(money, min_size=1, max_size=5), cap=money)
def test_graduated_tiers_are_held_to_the_cap_too(tier_fees: list[int], cap: int) -> None:
    plan = {
        "per_query_minor": 0,
        "per_gb_minor": "0",
        "monthly_fee_minor": 0,
        "tiers": [{"per_query_minor": fee, "per_gb_minor": "0"} for fee in tier_fees],
    }
    limits = {"per_query_minor": Decimal(cap), "per_gb_minor": Decimal(0), "monthly_fee_minor": Decimal(0)}
    excess = over_cap(plan, limits)
    assert (excess is None) == (max(tier_fees) <= cap)
    if excess is not None:
        assert excess == ("per_query_minor", Decimal(max(tier_fees)), Decimal(cap))
