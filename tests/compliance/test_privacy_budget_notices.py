"""Issue 16: privacy budgets near exhaustion notify, once per threshold, in-app and by e-mail over a real
SMTP server: the buyer for its agreement's budget, the regulators and the operator for a version's cap."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from market import clock
from market.accounts.models import Role
from market.compliance.jobs import run_upkeep
from tests.compliance.conftest import SmtpServer
from tests.compliance.helpers import notifications_of
from tests.conftest import Market
from tests.factories import grant, listed_product
from tests.metering.test_privacy_http import ask, dp_policy


def _kinds(market: Market, actor: object) -> list[tuple[str, str]]:
    items = notifications_of(market, actor)["items"]  # type: ignore[arg-type]
    return sorted((n["kind"], n["subject"]) for n in items if n["kind"].startswith("privacy_"))


def test_budget_thresholds_notify_the_buyer_and_the_cap_the_regulator_and_operator_once_each(
    mailing_market: Market, smtp_server: SmtpServer
) -> None:
    market = mailing_market
    # The version's cap equals the agreement's budget: one buyer spends both at once.
    policy = dp_policy(agreement_epsilon=1.0, version_epsilon_cap=1.0, max_query_epsilon=1.0, query_epsilon=0.5)
    listed = listed_product(market, "people-dp", policy=policy)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    with clock.travel_to(clock.utcnow()):
        first = ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 1", epsilon=0.85)
        assert first.status_code == 200, first.text  # about 73% of the budget's rho
        assert run_upkeep(market.database, market.settings)["emails_sent"] == 0
        assert _kinds(market, buyer) == []

        clock.advance(timedelta(hours=1))
        second = ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 2", epsilon=0.35)
        assert second.status_code == 200, second.text  # about 85%, with room for more queries
        done = run_upkeep(market.database, market.settings)
        assert done["privacy_budget_notices"] == 1 and done["privacy_cap_notices"] == 2, done
        kinds = _kinds(market, buyer)
        assert [k for k, _ in kinds] == ["privacy_budget"] and "80%" in kinds[0][1]
        assert [k for k, _ in _kinds(market, listed.regulator)] == ["privacy_cap"]
        assert [k for k, _ in _kinds(market, listed.operator)] == ["privacy_cap"]
        assert run_upkeep(market.database, market.settings)["emails_sent"] == 0  # once per threshold

        clock.advance(timedelta(hours=1))
        dry = ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 3", dry_run=True).json()
        left = Decimal(str(dry["privacy"]["budget_left"]["epsilon"])) - Decimal("0.00001")
        last = ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 3", epsilon=float(left))
        assert last.status_code == 200, last.text
        cheapest = ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 4", epsilon=0.1)
        assert cheapest.status_code == 429  # nothing fits: the budget is exhausted
        done = run_upkeep(market.database, market.settings)
        assert done["privacy_budget_notices"] == 1 and done["privacy_cap_notices"] == 2, done
        assert [s for _, s in _kinds(market, buyer) if "100%" in s]

    mails = {(str(m["To"]), str(m["Subject"])) for m in smtp_server.mailbox.messages}
    subjects = [s for _, s in mails]
    assert sum("privacy budget" in s for s in subjects) == 2  # the buyer's user: 80% and 100%
    assert sum("privacy cap" in s for s in subjects) == 4  # regulator and operator: 80% and 100%
    assert len(smtp_server.mailbox.messages) == len(mails)  # never sent twice


def test_the_operating_report_states_the_privacy_budget_spent_from_the_usage_records(market: Market) -> None:
    listed = listed_product(market, "people-dp", policy=dp_policy())
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    for i, epsilon in enumerate((0.5, 1.0, 0.25)):
        assert ask(market, buyer, f"SELECT count(*) FROM people WHERE month <> {i}", epsilon=epsilon).status_code == 200
    assert ask(market, buyer, "SELECT count(*) FROM people WHERE month <> 0", epsilon=0.5).status_code == 200  # free
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    spent = sum(u["privacy_rho_nano"] for u in usage)
    year = clock.utcnow().year
    report = market.client.post(
        "/v1/disclosures", headers=listed.operator.headers, json={"year": year, "kind": "operating_report"}
    ).json()
    figures = report["content"]["privacy_budget_spent"]
    assert figures["by_product"] == [{"product": "people-dp", "queries": 3, "rho_nano": spent, "agreements": 1}]
    (agreement,) = figures["by_agreement"]
    assert agreement["rho_nano"] == spent and agreement["budget_epsilon"] == 10.0
    listed_agreement = market.client.get("/v1/agreements", headers=buyer.headers).json()["items"][0]
    assert agreement["epsilon"] == listed_agreement["privacy_budget"]["spent"]["epsilon"]
    html = market.client.get(f"/v1/disclosures/{report['id']}?format=html", headers=listed.operator.headers).text
    assert "Privacy budget spent" in html
