"""DP mode's pieces: OpenDP's noise (unbiased, the stated scale), the accounting units, contribution bounds."""

from __future__ import annotations

import math
import statistics
from decimal import Decimal

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import dp
from sandbox.policy import DifferentialPrivacy, ProtectionPolicy
from tests.factories import PEOPLE_POLICY, people_rows


def _policy(**params: object) -> ProtectionPolicy:
    raw = {**PEOPLE_POLICY, "mode": "dp", "dp": {"max_groups_per_unit": 2, "max_rows_per_group": 2, **params}}
    return ProtectionPolicy.model_validate(raw)


def test_opendp_noise_is_unbiased_with_the_calibrated_scale() -> None:
    """20,000 draws: mean within 5 standard errors of 0, standard deviation within 3% of the scale."""
    scale = 7.5
    draws = dp.noise([0.0] * 20_000, scale)
    assert abs(statistics.fmean(draws)) < 5 * scale / math.sqrt(len(draws))
    assert statistics.stdev(draws) == pytest.approx(scale, rel=0.03)
    assert len(set(draws)) > 19_000  # fresh noise per value, never a constant offset


def test_calibration_spends_the_chosen_epsilon_and_the_scale_follows_the_declared_bounds() -> None:
    policy = _policy()
    assert policy.dp is not None
    plan = dp.plan("SELECT count(*), sum(amount) FROM people", policy, seed="v1")
    calibration = dp.calibrate(plan, policy.dp, Decimal("1.0"))
    assert abs(calibration.epsilon - 1) <= Decimal("1e-6")
    # count(*): one unit adds at most max_rows_per_group rows; sum: that many rows of at most 10,000.
    assert calibration.sensitivities == {"rows": 2.0, "sum:__v0": 20_000.0}
    wider = dp.plan("SELECT count(*), sum(amount) FROM people", _policy(max_rows_per_group=4), seed="v1")
    assert dp.calibrate(wider, policy.dp, 1.0).scales["rows"] == pytest.approx(2 * calibration.scales["rows"])


epsilons = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(50), places=6)


@settings(max_examples=200, deadline=None)
@given(epsilons, st.sampled_from([1e-5, 1e-7, 1e-9]))
def test_epsilon_and_rho_convert_both_ways_and_costs_never_round_down(epsilon: Decimal, delta: float) -> None:
    """The accountant's conversions are Decimal (no float in the budget path): exact both ways to far
    beyond a nano-rho, and a cost in nano-units is never rounded down."""
    rho = dp.rho_of(epsilon, delta)
    assert isinstance(rho, Decimal)
    assert abs(dp.epsilon_of(rho, delta) - epsilon) <= epsilon * Decimal("1e-30")
    assert dp.rho_nano(rho) >= rho * dp.NANO - Decimal("1e-6")
    assert dp.rho_of(epsilon * Decimal("1.01"), delta) > rho  # monotone: more epsilon is more rho


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.decimals(min_value=Decimal("0.05"), max_value=Decimal(2), places=4), min_size=1, max_size=30),
    st.decimals(min_value=Decimal(1), max_value=Decimal(20), places=3),
)
def test_queries_admitted_greedily_never_exceed_the_budget(spends: list[Decimal], budget_epsilon: Decimal) -> None:
    """The accountant's rule (reserve when spent + cost <= budget, in integer nano-rho) never overspends,
    and the admitted queries' composed epsilon never exceeds the budget's."""
    budget = dp.rho_nano(dp.rho_of(budget_epsilon, 1e-7))
    spent = 0
    for epsilon in spends:
        cost = dp.rho_nano(dp.rho_of(epsilon, 1e-7))
        if spent + cost <= budget:
            spent += cost
    assert spent <= budget
    assert dp.epsilon_of(Decimal(spent) / dp.NANO, 1e-7) <= budget_epsilon + Decimal("1e-6")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([1e-5, 1e-7, 3e-8, 1e-9]),
    st.decimals(min_value=Decimal(1), max_value=Decimal(200), places=2),
    st.integers(min_value=1, max_value=400),
)
def test_selection_delta_admits_whole_selections_and_never_more_than_the_room(
    delta: float, multiple: Decimal, queries: int
) -> None:
    """The accountant's delta rule (reserve when spent + share <= room, in integer atto-units): every
    admitted selection fits, the total never exceeds the agreement's delta, and no room is lost to rounding
    (exactly floor((agreement_delta - delta) / (0.1 delta)) selections fit)."""
    from metering import privacy

    agreement_delta = float(Decimal(str(delta)) * multiple)
    params = DifferentialPrivacy(delta=delta, agreement_delta=agreement_delta, version_delta_cap=agreement_delta)
    room, _ = privacy.delta_rooms(params)
    share = privacy.delta_atto(Decimal(str(delta)) * dp.SELECTION_DELTA_SHARE)
    spent = admitted = 0
    for _ in range(queries):
        if spent + share <= room:
            spent += share
            admitted += 1
    assert Decimal(str(delta)) + Decimal(spent) / privacy.ATTO <= Decimal(str(agreement_delta))
    stated = Decimal(str(agreement_delta)) - Decimal(str(delta))
    assert admitted == min(queries, int(stated / (Decimal(str(delta)) * dp.SELECTION_DELTA_SHARE)))


def test_contributions_are_bounded_in_sql_deterministically_per_version() -> None:
    """Each person has 3 rows in one region; with 2 rows per group only 2 count, and the person's sum is
    scaled to 2 rows' worth, the same on every run."""
    connection = duckdb.connect()
    rows = people_rows()
    connection.execute(
        "CREATE TABLE people AS SELECT * FROM (VALUES "
        + ", ".join(
            f"('{r['person_id']}', '{r['region']}', '{r['category']}', {r['month']}, {r['amount']}, {r['trips']})"
            for r in rows
        )
        + ") AS v(person_id, region, category, month, amount, trips)"
    )
    plan = dp.plan("SELECT region, count(*), sum(amount) FROM people GROUP BY region", _policy(), seed="v1")
    first = sorted(connection.execute(plan.sql).fetchall())
    assert [r[1] for r in first] == [30, 30, 30, 30]  # 15 people x 2 rows each, not 3
    again = sorted(connection.execute(plan.sql).fetchall())
    assert [(r[0], r[1], r[3]) for r in again] == [(r[0], r[1], r[3]) for r in first]
    assert [r[2] for r in again] == pytest.approx([r[2] for r in first])  # float sums: summation order only
    other = dp.plan("SELECT region, count(*), sum(amount) FROM people GROUP BY region", _policy(), seed="v2")
    assert sorted(r[1] for r in connection.execute(other.sql).fetchall()) == [30, 30, 30, 30]
    # Clamping: a sum over bounded rows never exceeds rows x the bound.
    assert all(r[2] <= 30 * 10_000 for r in first)


def test_a_unit_touches_at_most_max_groups_per_unit_groups() -> None:
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE people AS SELECT 'P1' AS person_id, 'r' AS region, 'c' || i AS category, i AS month, "
        "1 AS amount, 1 AS trips FROM range(10) AS t(i)"
    )
    plan = dp.plan("SELECT category, count(*) FROM people GROUP BY category", _policy(), seed="v1")
    assert len(connection.execute(plan.sql).fetchall()) == 2


def test_dp_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="query_epsilon"):
        DifferentialPrivacy(query_epsilon=3.0, max_query_epsilon=2.0)
    with pytest.raises(ValueError, match="not dimensions"):
        _policy(public_keys={"amount": [1, 2]})
