"""Last month's usage for the demo built by `market demo`: a billing period that has ended, so the
README tour can bill, finalize, pay, reconcile and close a period without touching the current,
unfinished month.

A fresh demo is built as of the first day of the previous month (its grants, agreements and keys date
from then); on the 15th of that month both demo buyers run a few queries on `nyc-flights-2013`, through
the same metered path as POST /v1/queries. Each query has an idempotency key naming its month, so
running `market demo` again the same month records nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market.accounts import repository as accounts_repo
from market.accounts.models import Organisation, Role
from market.accounts.service import Principal
from market.clock import travel_to, utcnow
from market.db import Database
from market.demo import DEMO_USERS, FLIGHTS_SLUG
from market.settings import Settings
from metering import service as metering

HISTORY_QUERIES = (
    "SELECT origin, count(*) AS flights, avg(dep_delay) AS avg_delay FROM flights GROUP BY origin",
    "SELECT carrier, count(*) AS n FROM flights WHERE month = 7 GROUP BY carrier ORDER BY n DESC LIMIT 5",
    "SELECT month, avg(arr_delay) AS avg_arrival_delay FROM flights GROUP BY month",
)
HISTORY_BUYERS = ("buyer_public", "buyer_commercial")


def previous_month_start(now: datetime | None = None) -> datetime:
    """The first instant (UTC) of the calendar month before `now`'s."""
    moment = now or utcnow()
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    last_month = first - timedelta(days=1)
    return datetime(last_month.year, last_month.month, 1, tzinfo=UTC)


def is_fresh(database: Database) -> bool:
    """True when the marketplace has no organisation yet: the demo may be dated back a month."""
    with database.transaction() as session:
        return session.query(Organisation.id).first() is None


def add_history(database: Database, settings: Settings) -> int:
    """Run the demo buyers' queries of the 15th of last month; returns how many were accepted (or replayed)."""
    moment = previous_month_start() + timedelta(days=14, hours=10)
    period = moment.strftime("%Y-%m")
    accepted = 0
    with travel_to(moment, frozen=False):
        for key_name in HISTORY_BUYERS:
            demo = next(u for u in DEMO_USERS if u.key_name == key_name)
            for index, sql in enumerate(HISTORY_QUERIES):
                with database.transaction() as session:
                    user = accounts_repo.user_by_email(session, demo.email)
                    org = accounts_repo.org_by_name(session, demo.org)
                    if user is None or org is None:  # pragma: no cover - build_demo created them
                        return accepted
                    buyer = Principal(user_id=user.id, org_id=org.id, org_name=org.name, role=Role.BUYER)
                    outcome = metering.run_metered_query(
                        session,
                        settings,
                        buyer,
                        product_slug=FLIGHTS_SLUG,
                        sql=sql,
                        idempotency_key=f"demo-history-{period}-{index}",
                    )
                accepted += outcome.status_code == 200
    return accepted
