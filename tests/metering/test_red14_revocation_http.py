"""Red team red14 (session 10): a query in flight when the buyer's API KEY is revoked.

test_revocation_race_http covers the agreement: a query admitted under an active agreement that is revoked
while it waits for a worker is refused at transaction 3 (`agreement_revoked`), because metering.service's
`_record` reads the agreement again when the access generation moved. The key that authenticated the request
is not read again: an organisation that revokes a leaked key (DELETE /v1/keys/{id}, "it stops working at
once") still has the holder's queued query answered, with the rows, and charged, after the revocation was
answered. Fixed by the lead after the merge: the Principal carries its key's hash and `_record`'s recheck reads
the key again (market.accounts.service.key_refusal); docs/sandbox.md "Red team red14".
"""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.support.busy_sandbox import ONE_WORKER_QUEUED, market_fixture, queued

market = market_fixture(**ONE_WORKER_QUEUED)


def test_a_query_waiting_for_a_worker_when_its_key_is_revoked_gets_no_answer(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    colleague = market.actor(Role.BUYER, org=buyer.principal.org_name)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, "SELECT count(*) AS n FROM people").status_code == 200
    keys = market.client.get("/v1/keys", headers=colleague.headers).json()["items"]
    leaked = keys[0]["id"]  # oldest first: the buyer's
    with queued(market, lambda: query(market, buyer, listed.slug, BY_REGION, "in-flight")) as sent:
        revoked = market.client.delete(f"/v1/keys/{leaked}", headers=colleague.headers)
        assert revoked.status_code == 200, revoked.text
        # "It stops working at once": the next request with it is refused.
        assert query(market, buyer, listed.slug, BY_REGION).status_code == 401
    answer = sent.result(timeout=60)
    assert answer.status_code in (401, 403), answer.text
    assert "rows" not in answer.json()
