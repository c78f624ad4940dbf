"""Red team red14 (session 10): spellings of a skewed join against the fan-out bound (sandbox/fanout.py), over HTTP.

As test_join_fanout's product, smaller: `shops.region` has one value shared by 1,100 shops (fan-out 2,048
rounded up, over the default limit of 1,024), `shops.code` one shop per value (a lookup), and people has
more rows than shops (so it is the root), so `people JOIN shops ON people.region = shops.region` is refused
(`join_fanout`). The bound reads only comparisons of two bare columns joined by AND in the ON; anything
else must count the joined table's rows (or be refused by the validator). Tried: operands swapped,
parentheses, a tautology beside the key, OR, NOT, IS NOT DISTINCT FROM, a comma join with the key in WHERE,
USING, NATURAL, LEFT / RIGHT / FULL / CROSS joins, the tables named in the other order, a cast or
function key, and the same skewed table reached through a lookup first (a self-join).
Every one is refused before it runs (held); a key that really bounds the matches (an AND with the lookup
key `code`) is answered, as it should be.
"""

from __future__ import annotations

from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import csv_bytes, grant, listed_product, query

POLICY: dict[str, Any] = {
    "min_group_size": 10,
    "tables": {
        "people": {
            "privacy_unit": "person_id",
            "dimensions": ["region", "category", "month"],
            "measures": ["amount"],
            "bounds": {"amount": {"min": 0, "max": 1000}},
        },
        "shops": {
            "privacy_unit": "owner_id",
            "dimensions": ["region", "code"],
            "measures": ["rent"],
            "bounds": {"rent": {"min": 0, "max": 10_000}},
        },
    },
}


def _tables() -> dict[str, bytes]:
    people = [
        {
            "person_id": f"P{i % 40:03d}",
            "region": f"r{i % 4}",
            "category": f"k{i % 50}",
            "month": i % 12 + 1,
            "amount": i % 1000,
        }
        for i in range(1_300)  # more rows than shops: people is the root, shops the joined (bounded) table
    ]
    shops = [
        {"owner_id": f"O{i % 100:03d}", "region": "r0" if i < 1_100 else f"r{1 + i % 3}", "code": f"k{i}", "rent": i}
        for i in range(1_200)
    ]
    return {"people.csv": csv_bytes(people), "shops.csv": csv_bytes(shops)}


BY_MONTH = "SELECT people.month, count(*) AS n FROM "
SPELLINGS = [
    "people JOIN shops ON shops.region = people.region",
    "people JOIN shops ON (people.region = shops.region)",
    "people JOIN shops ON ((people.region) = (shops.region))",
    "people JOIN shops ON people.region = shops.region AND shops.kind = shops.kind",
    "people JOIN shops ON people.region = shops.region AND people.month = people.month",
    "people JOIN shops ON people.region = shops.region OR people.category = shops.code",
    "people JOIN shops ON NOT (people.region <> shops.region)",
    "people JOIN shops ON people.region IS NOT DISTINCT FROM shops.region",
    "people JOIN shops ON people.region >= shops.region AND people.region <= shops.region",
    "people JOIN shops ON people.region = shops.region || ''",
    "people JOIN shops ON people.region = CAST(shops.region AS VARCHAR)",
    "people JOIN shops ON lower(people.region) = lower(shops.region)",
    "people JOIN shops USING (region)",
    "people NATURAL JOIN shops",
    "people LEFT JOIN shops ON people.region = shops.region",
    "people CROSS JOIN shops",
    "people, shops WHERE people.region = shops.region",
    "people JOIN shops ON true WHERE people.region = shops.region",
    "people JOIN shops AS s ON people.region = s.region",
    "shops JOIN people ON people.region = shops.region",
    "shops RIGHT JOIN people ON people.region = shops.region",
    "people FULL JOIN shops ON people.region = shops.region",
    "people JOIN shops s1 ON people.category = s1.code JOIN shops s2 ON s1.region = s2.region",
]
BOUNDED = "people JOIN shops ON people.region = shops.region AND people.category = shops.code"
"""Two keys, one a lookup (one shop per code): at most one match per person; answered."""


@pytest.fixture
def joined(market: Market) -> tuple[Market, Any]:
    listed = listed_product(market, "fanout", tables=_tables(), policy=POLICY)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    return market, buyer


def test_no_spelling_of_a_skewed_join_runs(joined: tuple[Market, Any]) -> None:
    market, buyer = joined
    answered = {}
    for spelling in SPELLINGS:
        response = query(market, buyer, "fanout", BY_MONTH + spelling + " GROUP BY people.month")
        assert response.status_code != 500, (spelling, response.text)
        if response.status_code == 200:
            answered[spelling] = response.json()["rows"]
        else:
            assert response.status_code == 422, (spelling, response.text)
    assert answered == {}, f"skewed joins answered: {list(answered)}"
    bounded = query(market, buyer, "fanout", BY_MONTH + BOUNDED + " GROUP BY people.month")
    assert bounded.status_code == 200, bounded.text
