"""Disclosure reports: who generates, who reads drafts, who publishes; published reports are frozen."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market


def test_drafts_stay_with_their_publisher_until_published(market: Market) -> None:
    regulator = market.actor(Role.REGULATOR)
    mine, theirs = market.actor(Role.OPERATOR), market.actor(Role.OPERATOR)
    buyer = market.actor(Role.BUYER)
    body = {"year": 2026, "kind": "operating_report"}
    assert market.client.post("/v1/disclosures", headers=buyer.headers, json=body).status_code == 403
    regulator_only = {"year": 2026, "kind": "regulator_disclosure"}
    assert market.client.post("/v1/disclosures", headers=mine.headers, json=regulator_only).status_code == 403
    draft = market.client.post("/v1/disclosures", headers=mine.headers, json=body).json()
    assert draft["status"] == "draft" and draft["content"]["revenue"]["received_minor"] == 0
    for path in (f"/v1/disclosures/{draft['id']}", f"/v1/disclosures/{draft['id']}?format=html"):
        assert market.client.get(path, headers=theirs.headers).json()["error"]["code"] == "disclosure_not_found"
    assert market.client.get(f"/v1/disclosures/{draft['id']}", headers=regulator.headers).status_code == 200
    assert market.client.get(f"/disclosures/{draft['id']}").status_code == 404  # not public yet
    assert market.client.get("/v1/disclosures", headers=theirs.headers).json()["items"] == []
    for outsider in (theirs, regulator):
        refused = market.client.post(f"/v1/disclosures/{draft['id']}/publish", headers=outsider.headers)
        assert refused.status_code == 404
    # The regulator may draft an operator's report for it; it is the same report.
    same = market.client.post(
        "/v1/disclosures", headers=regulator.headers, json={**body, "operator": mine.principal.org_id}
    )
    assert same.json()["id"] == draft["id"]
    published = market.client.post(f"/v1/disclosures/{draft['id']}/publish", headers=mine.headers)
    assert published.status_code == 200 and len(published.json()["content_hash"]) == 64
    assert market.client.post(f"/v1/disclosures/{draft['id']}/publish", headers=mine.headers).status_code == 409
    assert [r["id"] for r in market.client.get("/v1/disclosures", headers=theirs.headers).json()["items"]] == [
        draft["id"]
    ]
    assert market.client.get(f"/disclosures/{draft['id']}").status_code == 200
    status = market.client.get("/v1/disclosures/status", headers=mine.headers, params={"year": 2026}).json()
    assert [m["kind"] for m in status["missing"]] == ["operator_disclosure"]
    assert [p["kind"] for p in status["published"]] == ["operating_report"]
