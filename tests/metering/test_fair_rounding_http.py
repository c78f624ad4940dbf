"""Fair per-GB rounding through the query path: a month's small queries pay their bytes' share."""

from __future__ import annotations

from decimal import Decimal

from market.accounts.models import Role
from market.money import round_minor
from metering.pricing import BYTES_PER_GB
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION

PER_GB = Decimal("1000000")
PLANS = [
    {"code": "public", "title": "Public interest", "kind": "public_interest", "monthly_query_quota": 1000},
    {"code": "standard", "title": "Per GB", "kind": "commercial", "per_query_minor": 0, "per_gb_minor": str(PER_GB)},
]


def test_a_months_queries_pay_their_total_bytes_at_the_per_gb_rate(market: Market) -> None:
    listed = listed_product(market, plans=PLANS)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    answers = [query(market, buyer, listed.slug, BY_REGION).json() for _ in range(12)]
    scanned = [a["usage"]["bytes_scanned"] for a in answers]
    one = PER_GB * scanned[0] / BYTES_PER_GB
    assert one % 1 > 0 and one % 1 != Decimal("0.5"), one  # a query alone would be rounded off
    charged = [a["charge"]["amount_minor"] for a in answers]
    assert sum(charged) > 0 and sum(charged) == round_minor(PER_GB * sum(scanned) / BYTES_PER_GB), (charged, scanned)
