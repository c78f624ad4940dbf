"""Rating rules as properties: caps are never exceeded, trials are free, public interest is free."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from market.money import round_minor
from metering.models import ChargeType
from metering.pricing import BYTES_PER_GB, PlanTerms, Tier, list_price, rate_query, tier_price

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


tier_strategy = st.lists(
    st.tuples(
        st.integers(1, 20),
        st.integers(0, 5_000),
        st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=4,
)


def _tiers(spec: list[tuple[int, int, Decimal]]) -> tuple[Tier, ...]:
    """Tiers whose widths are the first items of `spec`; the last one is open."""
    bound = 0
    tiers = []
    for index, (width, per_query, per_gb) in enumerate(spec):
        bound += width
        up_to = None if index == len(spec) - 1 else bound
        tiers.append(Tier(up_to=up_to, per_query_minor=per_query, per_gb_minor=per_gb))
    return tuple(tiers)


@given(
    spec=tier_strategy,
    trial=st.integers(0, 3),
    scans=st.lists(st.integers(0, 5 * 10**9), min_size=1, max_size=60),
)
def test_graduated_charges_equal_the_sum_of_their_tiers(
    spec: list[tuple[int, int, Decimal]], trial: int, scans: list[int]
) -> None:
    terms = PlanTerms(currency="CNY", trial_queries=trial, tiers=_tiers(spec))
    total = 0
    for accepted, bytes_scanned in enumerate(scans):
        charge = rate_query(
            terms, public_interest=False, accepted_before=accepted, charged_before=total, bytes_scanned=bytes_scanned
        )
        total += charge.amount_minor
    # independently: put each billable query in its tier, price each tier's queries at that tier's rates
    billable = scans[trial:]
    by_tier = []
    start = 0
    for tier in terms.tiers:
        end = len(billable) if tier.up_to is None else min(tier.up_to, len(billable))
        queries = billable[start:end] if end > start else []
        by_tier.append(sum(tier_price(tier, b) for b in queries))
        start = max(start, end)
    assert total == sum(by_tier)
    # and with only per-query fees, each tier contributes exactly (its query count) x (its fee)
    flat = PlanTerms(currency="CNY", tiers=tuple(Tier(t.up_to, t.per_query_minor) for t in terms.tiers))
    charged = [
        rate_query(flat, public_interest=False, accepted_before=n, charged_before=0, bytes_scanned=0).amount_minor
        for n in range(len(scans))
    ]
    counts = []
    lower = 0
    for tier in flat.tiers:
        upper = len(scans) if tier.up_to is None else min(tier.up_to, len(scans))
        counts.append(max(upper - lower, 0))
        lower = max(lower, upper)
    assert sum(charged) == sum(c * t.per_query_minor for c, t in zip(counts, flat.tiers, strict=True))


@given(
    spec=tier_strategy,
    cap=st.integers(0, 20_000),
    scans=st.lists(st.integers(0, 5 * 10**9), min_size=1, max_size=60),
)
def test_graduated_charges_never_exceed_the_cap_and_reach_it_exactly_when_due(
    spec: list[tuple[int, int, Decimal]], cap: int, scans: list[int]
) -> None:
    capped = PlanTerms(currency="CNY", tiers=_tiers(spec), monthly_cap_minor=cap)
    uncapped = PlanTerms(currency="CNY", tiers=_tiers(spec))
    charged = 0
    list_total = 0
    for accepted, bytes_scanned in enumerate(scans):
        charge = rate_query(
            capped, public_interest=False, accepted_before=accepted, charged_before=charged, bytes_scanned=bytes_scanned
        )
        list_total += list_price(uncapped, bytes_scanned, accepted + 1)
        charged += charge.amount_minor
        assert charged <= cap
        assert charged == min(list_total, cap)
        if charge.charge_type == ChargeType.CAP_REACHED:
            assert charge.amount_minor == 0 and charged == cap


def test_a_plan_snapshot_round_trips_tiers_exactly() -> None:
    snapshot = {
        "currency": "CNY",
        "per_query_minor": 999,
        "tiers": [
            {"up_to": 2, "per_query_minor": 100, "per_gb_minor": "0.5"},
            {"up_to": None, "per_query_minor": 50, "per_gb_minor": "0"},
        ],
    }
    terms = PlanTerms.from_snapshot(snapshot)
    assert terms.tier_for(1) == terms.tier_for(2) == Tier(2, 100, Decimal("0.5"))
    assert terms.tier_for(3).per_query_minor == 50
    assert list_price(terms, 10**9, 1) == 101  # 100 + 0.5 fen, rounded half away from zero


def test_peak_rates_cover_every_tier() -> None:
    from metering.pricing import peak_rates

    flat = PlanTerms(currency="CNY", per_query_minor=7, per_gb_minor=Decimal("3"))
    assert (peak_rates(flat).per_query_minor, peak_rates(flat).per_gb_minor) == (7, Decimal("3"))
    tiered = PlanTerms(currency="CNY", tiers=(Tier(5, 100, Decimal("1")), Tier(None, 50, Decimal("9"))))
    assert (peak_rates(tiered).per_query_minor, peak_rates(tiered).per_gb_minor) == (100, Decimal("9"))


def _month(terms: PlanTerms, scans: list[int]) -> list[int]:
    """Rate a month of queries as metering does: the per-GB carry threads from one query to the next."""
    carry, charged, amounts = Decimal(0), 0, []
    for accepted, bytes_scanned in enumerate(scans):
        charge = rate_query(
            terms,
            public_interest=False,
            accepted_before=accepted,
            charged_before=charged,
            bytes_scanned=bytes_scanned,
            per_gb_carry=carry,
        )
        assert Decimal("-0.5") <= charge.per_gb_carry <= Decimal("0.5")
        carry, charged = charge.per_gb_carry, charged + charge.amount_minor
        amounts.append(charge.amount_minor)
    return amounts


def test_small_queries_pay_their_share_of_the_per_gb_fee() -> None:
    """Issue 10 item 6: 10,000 queries of 900 KB at 500 fen/GB bill 4,500 fen, not 0."""
    terms = PlanTerms(currency="CNY", per_gb_minor=Decimal("500"))
    assert list_price(terms, 900_000) == 0  # one such query alone rounds to nothing
    assert sum(_month(terms, [900_000] * 10_000)) == 4_500


@given(
    terms=st.builds(
        PlanTerms,
        currency=st.just("CNY"),
        per_query_minor=st.integers(0, 1_000),
        per_gb_minor=st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False, allow_infinity=False),
        trial_queries=st.integers(0, 3),
    ),
    scans=st.lists(st.integers(0, 3 * 10**9), min_size=1, max_size=60),
)
def test_a_months_per_gb_fees_are_its_total_bytes_rounded_once(terms: PlanTerms, scans: list[int]) -> None:
    amounts = _month(terms, scans)
    billable = scans[terms.trial_queries :]
    per_gb = sum(amounts) - terms.per_query_minor * len(billable)
    assert per_gb == round_minor(terms.per_gb_minor * sum(billable) / BYTES_PER_GB)


@given(
    tiers=st.lists(
        st.tuples(st.integers(1, 5), st.integers(0, 500), st.decimals(min_value=0, max_value=5_000, places=2)),
        min_size=1,
        max_size=3,
    ),
    scans=st.lists(st.integers(0, 10**9), min_size=1, max_size=40),
)
def test_tiered_per_gb_fees_are_rounded_once_over_the_month(
    tiers: list[tuple[int, int, Decimal]], scans: list[int]
) -> None:
    bound, built = 0, []
    for size, per_query, per_gb in tiers:
        bound += size
        built.append(Tier(up_to=bound, per_query_minor=per_query, per_gb_minor=per_gb))
    terms = PlanTerms(currency="CNY", tiers=tuple(built))
    amounts = _month(terms, scans)
    rates = [terms.tier_for(n + 1) for n in range(len(scans))]
    exact = sum((t.per_gb_minor * b / BYTES_PER_GB for t, b in zip(rates, scans, strict=True)), Decimal(0))
    assert sum(amounts) == sum(t.per_query_minor for t in rates) + round_minor(exact)
