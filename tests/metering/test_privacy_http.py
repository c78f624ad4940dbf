"""DP mode over HTTP: noisy answers, the privacy budget (spent, refunded, exhausted, never overspent), stored
repeats per agreement, dry runs, and differencing that no longer recovers a small group exactly."""

from __future__ import annotations

import copy
import statistics
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from market.accounts.models import Role
from metering.models import PrivacyBudget, UsageRecord
from sandbox import dp
from sandbox.errors import QueryFailed
from tests.conftest import Actor, Market
from tests.factories import PEOPLE_POLICY, Listed, dp_policy, grant, listed_product
from tests.metering.test_concurrency_http import CONCURRENT, market

__all__ = ["market"]  # the burst market fixture (tests/metering/test_concurrency_http.py)

DELTA = 1e-7


def _listed(market: Market, **params: Any) -> Listed:
    return listed_product(market, "people-dp", policy=dp_policy(**params))


def _buyer(market: Market, listed: Listed) -> Actor:
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    return buyer


def ask(market: Market, buyer: Actor, sql: str, **extra: Any) -> Any:
    return market.client.post("/v1/queries", headers=buyer.headers, json={"product": "people-dp", "sql": sql, **extra})


def _spent(market: Market, scope: str) -> tuple[int, int]:
    with market.database.transaction() as session:
        budget = session.scalars(select(PrivacyBudget).where(PrivacyBudget.id.like(f"{scope}:%"))).one()
        return budget.spent_nano, budget.reserved_nano


def test_a_dp_answer_is_noisy_states_its_cost_and_bounds_and_a_repeat_is_free(market: Market) -> None:
    listed = _listed(market)
    buyer = _buyer(market, listed)
    sql = "SELECT region, count(*) AS n, sum(amount) AS total, avg(trips) AS trips FROM people GROUP BY region"
    dry = ask(market, buyer, sql, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and "rows" not in dry.json()
    cost = dry.json()["privacy"]["cost"]
    assert cost["epsilon"] == pytest.approx(1.0, rel=1e-3) and cost["delta"] == DELTA
    with market.database.transaction() as session:
        assert session.scalars(select(PrivacyBudget)).all() == []  # a dry run spends (and reserves) nothing
        assert session.scalars(select(UsageRecord)).all() == []

    first = ask(market, buyer, sql)
    assert first.status_code == 200, first.text
    body = first.json()
    # Ordered by every output column (the keys first), like every grouped answer (sbx-red15).
    assert body["noise"] is True and [r[0] for r in body["rows"]] == ["east", "north", "south", "west"]
    privacy = body["privacy"]
    assert privacy["cost"] == cost
    assert privacy["error_bound_95"]["n"] == dry.json()["privacy"]["error_bound_95"]["n"] > 0
    assert privacy["error_bound_95"]["trips"] > 0
    assert 0 < privacy["budget_left"]["epsilon"] < 10
    spent, reserved = _spent(market, "agreement")
    assert spent == dp.rho_nano(privacy["cost"]["rho"]) or spent == pytest.approx(privacy["cost"]["rho"] * 1e9, abs=2)
    assert reserved == 0

    again = ask(
        market,
        buyer,
        "select region, COUNT(*) as n, SUM(amount) as total, AVG(trips) as trips from people group by region",
    )
    assert again.status_code == 200
    assert again.json()["rows"] == body["rows"]
    assert again.json()["privacy"]["cost"] == {"epsilon": 0.0, "delta": 0.0, "rho": 0.0}
    assert again.json()["privacy"]["stored_answer_of"] == body["query_id"]
    assert _spent(market, "agreement") == (spent, 0)

    # Another agreement's identical query is its own: fresh noise, its own budget.
    other = _buyer(market, listed)
    theirs = ask(market, other, sql)
    assert theirs.status_code == 200 and theirs.json()["rows"] != body["rows"]
    assert theirs.json()["privacy"]["cost"] == cost

    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert [u["privacy_rho_nano"] for u in usage] == [0, spent]


def test_the_buyer_chooses_the_spend_within_the_plan_limits(market: Market) -> None:
    listed = _listed(market)
    buyer = _buyer(market, listed)
    sql = "SELECT count(*) FROM people"
    small = ask(market, buyer, sql, epsilon=0.2, dry_run=True).json()["privacy"]
    large = ask(market, buyer, sql, epsilon=2.0, dry_run=True).json()["privacy"]
    assert small["cost"]["epsilon"] == pytest.approx(0.2, rel=1e-3)
    assert small["error_bound_95"]["count(*)"] > 5 * large["error_bound_95"]["count(*)"]
    refused = ask(market, buyer, sql, epsilon=5.0)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "privacy_epsilon_out_of_range"


def test_unsupported_queries_are_refused_with_what_to_write_instead(market: Market) -> None:
    listed = _listed(market)
    buyer = _buyer(market, listed)
    for sql in (
        "SELECT region, count(*) FROM people GROUP BY region HAVING count(*) > 10",
        "SELECT region, variance(amount) FROM people GROUP BY region",
        "SELECT region, sum(amount) / count(*) FROM people GROUP BY region",
        "SELECT month % 2, count(*) FROM people GROUP BY 1",
    ):
        answer = ask(market, buyer, sql)
        assert answer.status_code == 422, (sql, answer.text)
        assert answer.json()["error"]["code"] == "dp_unsupported", answer.text
        assert ";" in answer.json()["error"]["message"]
    with market.database.transaction() as session:
        charges = {r.charge_type for r in session.scalars(select(UsageRecord))}
    assert charges == {"rejected"}


def test_differencing_a_small_group_out_gives_only_noisy_differences(market: Market) -> None:
    """Threshold mode's attack: total minus `WHERE category <> 'tiny'` gave the 5 tiny people's exact sums."""
    listed = _listed(market)
    buyer = _buyer(market, listed)
    total = ask(market, buyer, "SELECT count(*), sum(amount) FROM people")
    rest = ask(market, buyer, "SELECT count(*), sum(amount) FROM people WHERE category <> 'tiny'")
    assert total.status_code == rest.status_code == 200
    from tests.factories import people_rows

    tiny = [r for r in people_rows() if r["category"] == "tiny"]
    (count_all, sum_all), (count_rest, sum_rest) = total.json()["rows"][0], rest.json()["rows"][0]
    assert (count_all - count_rest, sum_all - sum_rest) != (len(tiny), sum(r["amount"] for r in tiny))
    assert sum_all - sum_rest != sum(r["amount"] for r in tiny)
    bound = total.json()["privacy"]["error_bound_95"]["sum(amount)"]
    assert bound > max(r["amount"] for r in tiny) * 3  # the noise hides any one person's contribution


def test_budget_is_exhausted_with_429_and_a_failed_run_is_refunded(market: Market, monkeypatch: Any) -> None:
    listed = _listed(market, agreement_epsilon=2.0, max_query_epsilon=1.0)
    buyer = _buyer(market, listed)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise QueryFailed("timeout", status_code=408, seconds=1)

    monkeypatch.setattr("metering.privacy.dp_run.run", broken)
    failed = ask(market, buyer, "SELECT count(*) FROM people WHERE month = 1")
    assert failed.status_code == 408
    assert _spent(market, "agreement") == (0, 0)  # refunded
    assert _spent(market, "version") == (0, 0)
    monkeypatch.undo()

    answers = [ask(market, buyer, f"SELECT count(*) FROM people WHERE month <> {i}") for i in range(6)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) >= 2 and statuses[-1] == 429, statuses
    exhausted = answers[-1].json()["error"]
    assert exhausted["code"] == "privacy_budget_exhausted" and "agreement" in exhausted["message"]
    spent, reserved = _spent(market, "agreement")
    assert reserved == 0 and spent <= dp.rho_nano(dp.rho_of(2.0, DELTA))
    with market.database.transaction() as session:
        records = session.scalars(select(UsageRecord).order_by(UsageRecord.chain_seq)).all()
    assert records[-1].charge_type == "rejected" and records[-1].error_code == "privacy_budget_exhausted"
    assert sum(r.privacy_rho_nano for r in records) == spent


def test_64_concurrent_queries_never_overspend(market: Market) -> None:
    """Each distinct query costs the same; exactly floor(budget / cost) of 64 concurrent ones are answered."""
    listed = _listed(market, agreement_epsilon=3.0, max_query_epsilon=1.0)
    buyer = _buyer(market, listed)
    dry = ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 0", dry_run=True).json()
    cost = dp.rho_nano(dry["privacy"]["cost"]["rho"])
    budget = dp.rho_nano(dp.rho_of(3.0, DELTA))
    expected = budget // cost
    assert 2 <= expected < CONCURRENT
    barrier = threading.Barrier(CONCURRENT)

    def one(i: int) -> Any:
        barrier.wait()
        return ask(market, buyer, f"SELECT count(*) FROM people WHERE month <> {i}")

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        responses = list(pool.map(one, range(CONCURRENT)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: expected, 429: CONCURRENT - expected}, statuses
    spent, reserved = _spent(market, "agreement")
    assert reserved == 0 and spent <= budget


def test_noise_is_unbiased_with_the_stated_scale_over_http(market: Market) -> None:
    """40 distinct queries of the same true count (180 rows): the errors centre on 0 with the stated spread."""
    listed = _listed(market, agreement_epsilon=100.0, version_epsilon_cap=200.0, max_query_epsilon=2.0)
    buyer = _buyer(market, listed)
    errors: list[float] = []
    bound = 0.0
    for i in range(40):
        answer = ask(market, buyer, f"SELECT sum(trips) FROM people WHERE month <> {100 + i}", epsilon=2.0)
        assert answer.status_code == 200, answer.text
        errors.append(answer.json()["rows"][0][0] - sum(r["trips"] for r in _people()))
        bound = answer.json()["privacy"]["error_bound_95"]["sum(trips)"]
    sigma = bound / dp.Z95
    assert abs(statistics.fmean(errors)) < 4 * sigma / len(errors) ** 0.5
    assert 0.6 * sigma < statistics.stdev(errors) < 1.5 * sigma


def _people() -> list[dict[str, Any]]:
    from tests.factories import people_rows

    return people_rows()


def test_a_natural_person_product_must_be_dp_to_be_submitted(market: Market) -> None:
    policy = copy.deepcopy(PEOPLE_POLICY)
    policy["privacy_unit_kind"] = "natural_person"
    from tests.factories import create_product, upload_version

    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "people-exact").status_code == 201
    assert upload_version(market, operator, "people-exact", policy=policy).status_code == 201
    submitted = market.client.post("/v1/products/people-exact/submit", headers=operator.headers)
    assert submitted.status_code == 422 and submitted.json()["error"]["code"] == "dp_required", submitted.text


def test_the_regulator_can_require_dp_for_a_zone_in_the_authorisation(market: Market) -> None:
    from tests.factories import authorise, upload_version

    operator = market.actor(Role.OPERATOR)
    granted = authorise(market, operator, days=30, dp_required_for=("transport",))
    assert granted.status_code == 201 and granted.json()["dp_required_for"] == ["transport"], granted.text
    created = market.client.post(
        "/v1/products",
        headers=operator.headers,
        json={"slug": "trips", "title": "Trips", "zone": "transport", "region": "CN-11", "plans": []},
    )
    assert created.status_code == 201, created.text
    assert upload_version(market, operator, "trips").status_code == 201  # threshold mode
    refused = market.client.post("/v1/products/trips/submit", headers=operator.headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "dp_required_by_authorisation"
    assert upload_version(market, operator, "trips", policy=dp_policy()).status_code == 201
    assert market.client.post("/v1/products/trips/submit", headers=operator.headers).status_code == 200


def test_a_plan_prices_the_privacy_budget_spent(market: Market) -> None:
    from tests.factories import PLANS

    plans = [PLANS[0], {**PLANS[1], "per_query_minor": 100, "per_gb_minor": "0", "per_tenth_epsilon_minor": 30}]
    listed = listed_product(market, "people-dp", plans=plans, policy=dp_policy())
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    paid = ask(market, buyer, "SELECT count(*) FROM people", epsilon=0.5)
    assert paid.status_code == 200, paid.text
    assert paid.json()["charge"] == {"amount_minor": 100 + 150, "currency": "CNY", "charge_type": "billable"}
    repeat = ask(market, buyer, "SELECT count(*) FROM people", epsilon=0.5)
    assert repeat.json()["charge"]["amount_minor"] == 100  # a stored repeat spends no budget and pays no privacy fee
    agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]
    assert agreement["privacy_budget"]["epsilon"] == 10.0
    assert agreement["privacy_budget"]["spent"]["epsilon"] == pytest.approx(0.5, rel=1e-3)
    odrl = market.client.get(f"/v1/agreements/{agreement['id']}/odrl", headers=buyer.headers).json()
    constraints = odrl["permission"][0]["constraint"]
    assert {"leftOperand": "market:privacyEpsilon", "rightOperand": 10.0}.items() <= next(
        c for c in constraints if c["leftOperand"] == "market:privacyEpsilon"
    ).items()
