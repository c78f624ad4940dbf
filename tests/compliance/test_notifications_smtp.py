"""Notifications: in-app per user, e-mailed over a real SMTP server, retried with backoff, sent once."""

from __future__ import annotations

import threading
from datetime import timedelta

from market import clock
from market.accounts.models import Role
from market.compliance.jobs import run_upkeep
from market.notifications.delivery import deliver_due
from tests.compliance.conftest import SmtpServer, free_port
from tests.compliance.helpers import notifications_of, object_to, registered_resource
from tests.conftest import Market


def test_an_objection_reaches_each_regulator_once_in_app_and_by_mail(
    mailing_market: Market, smtp_server: SmtpServer
) -> None:
    market = mailing_market
    regulator, other_regulator = market.actor(Role.REGULATOR), market.actor(Role.REGULATOR)
    buyer = market.actor(Role.BUYER)
    registration = registered_resource(market, regulator)
    assert object_to(market, buyer, registration["id"]).status_code == 201

    first = run_upkeep(market.database, market.settings)
    again = run_upkeep(market.database, market.settings)

    assert first["emails_sent"] == 3 and again["emails_sent"] == 0  # two regulators and the source
    mine = notifications_of(market, regulator)
    assert mine["unread"] == 1 and mine["items"][0]["kind"] == "objection_filed"
    assert mine["items"][0]["email_status"] == "sent"
    assert len({str(m["To"]) for m in smtp_server.mailbox.messages}) == 3
    subjects = smtp_server.mailbox.subjects()
    assert len(subjects) == 3 and all(registration["registration_code"] in s for s in subjects)
    assert notifications_of(market, buyer)["items"] == []  # the objector is not told its own objection

    notification_id = mine["items"][0]["id"]
    assert market.client.post(f"/v1/notifications/{notification_id}/read", headers=buyer.headers).status_code == 404
    read = market.client.post(f"/v1/notifications/{notification_id}/read", headers=regulator.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert notifications_of(market, regulator, unread="true") == {"unread": 0, "items": []}
    assert notifications_of(market, other_regulator)["unread"] == 1


def test_a_refused_mail_is_retried_after_backoff_and_then_sent_once(
    mailing_market: Market, smtp_server: SmtpServer
) -> None:
    market = mailing_market
    regulator = market.actor(Role.REGULATOR)
    registration = registered_resource(market, regulator)
    smtp_server.mailbox.refuse = True
    with clock.travel_to(clock.utcnow()):
        assert object_to(market, market.actor(Role.BUYER), registration["id"]).status_code == 201
        failed = deliver_due(market.database, market.settings)
        assert len(failed.failed) == 2 and failed.sent == []
        smtp_server.mailbox.refuse = False
        assert deliver_due(market.database, market.settings).sent == []  # not before its backoff
        clock.advance(timedelta(seconds=61))
        assert len(deliver_due(market.database, market.settings).sent) == 2
        clock.advance(timedelta(hours=1))
        assert deliver_due(market.database, market.settings).sent == []
    assert len(smtp_server.mailbox.subjects()) == 2  # the regulator and the source, once each
    assert notifications_of(market, regulator)["items"][0]["email_status"] == "sent"


def test_an_unreachable_server_leaves_mail_pending(mailing_market: Market, smtp_server: SmtpServer) -> None:
    market = mailing_market
    regulator = market.actor(Role.REGULATOR)
    registration = registered_resource(market, regulator)
    nobody_listens = market.settings.model_copy(update={"smtp_port": free_port()})
    assert object_to(market, market.actor(Role.BUYER), registration["id"]).status_code == 201
    report = deliver_due(market.database, nobody_listens)
    assert len(report.failed) == 2 and smtp_server.mailbox.messages == []
    assert notifications_of(market, regulator)["items"][0]["email_status"] == "pending"


def test_concurrent_deliverers_send_every_mail_exactly_once(mailing_market: Market, smtp_server: SmtpServer) -> None:
    market = mailing_market
    regulators = [market.actor(Role.REGULATOR) for _ in range(3)]
    buyer = market.actor(Role.BUYER)
    for n in range(6):
        registration = registered_resource(market, regulators[0], title=f"Resource {n}")
        assert object_to(market, buyer, registration["id"]).status_code == 201

    def deliver() -> None:
        deliver_due(market.database, market.settings)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [str(m["Message-ID"]) for m in smtp_server.mailbox.messages]
    assert len(ids) == 24 and len(set(ids)) == 24  # 6 objections x (3 regulators + the source)
