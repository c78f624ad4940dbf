"""Rating rules as properties: caps are never exceeded, trials are free, public interest is free."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from metering.models import ChargeType
from metering.pricing import PlanTerms, list_price, rate_query

terms_strategy = st.builds(
    PlanTerms,
    currency=st.just("CNY"),
    per_query_minor=st.integers(0, 10_000),
    per_gb_minor=st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False, allow_infinity=False),
    trial_queries=st.integers(0, 5),
    monthly_cap_minor=st.one_of(st.none(), st.integers(0, 50_000)),
)


@given(terms=terms_strategy, scans=st.lists(st.integers(0, 50 * 10**9), min_size=1, max_size=40))
def test_a_month_of_charges_never_exceeds_the_cap(terms: PlanTerms, scans: list[int]) -> None:
    charged = 0
    for accepted, bytes_scanned in enumerate(scans):
        charge = rate_query(
            terms,
            public_interest=False,
            accepted_before=accepted,
            charged_before=charged,
            bytes_scanned=bytes_scanned,
        )
        assert charge.amount_minor >= 0
        if accepted < terms.trial_queries:
            assert charge.charge_type == ChargeType.TRIAL and charge.amount_minor == 0
        charged += charge.amount_minor
        if terms.monthly_cap_minor is not None:
            assert charged <= terms.monthly_cap_minor
        else:
            assert charged == sum(list_price(terms, b) for b in scans[terms.trial_queries : accepted + 1])


@given(terms=terms_strategy, bytes_scanned=st.integers(0, 10**12), before=st.integers(0, 100))
def test_public_interest_is_always_free(terms: PlanTerms, bytes_scanned: int, before: int) -> None:
    charge = rate_query(
        terms, public_interest=True, accepted_before=before, charged_before=0, bytes_scanned=bytes_scanned
    )
    assert (charge.charge_type, charge.amount_minor) == (ChargeType.FREE_PUBLIC, 0)


def test_per_gb_fee_rounds_half_away_from_zero_once() -> None:
    terms = PlanTerms(currency="CNY", per_query_minor=0, per_gb_minor=Decimal("1"))
    assert list_price(terms, 500_000_000) == 1  # 0.5 fen rounds up
    assert list_price(terms, 499_999_999) == 0


def test_the_query_that_reaches_the_cap_pays_only_the_rest() -> None:
    terms = PlanTerms(currency="CNY", per_query_minor=400, monthly_cap_minor=1000)
    amounts = []
    charged = 0
    for n in range(4):
        charge = rate_query(terms, public_interest=False, accepted_before=n, charged_before=charged, bytes_scanned=0)
        amounts.append((charge.charge_type.value, charge.amount_minor))
        charged += charge.amount_minor
    assert amounts == [("billable", 400), ("billable", 400), ("billable", 200), ("cap_reached", 0)]
