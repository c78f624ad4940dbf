"""Shared steps for the compliance tests, all through the HTTP API."""

from __future__ import annotations

from typing import Any

from market.accounts.models import Role
from tests.conftest import Actor, Market


def registered_resource(market: Market, regulator: Actor, *, title: str = "City trip records") -> dict[str, Any]:
    """A source submits a resource and `regulator` registers it; returns the registration (in notice)."""
    source = market.actor(Role.SOURCE)
    created = market.client.post(
        "/v1/resources",
        headers=source.headers,
        json={
            "title": title,
            "zone": "transport",
            "region": "CN-11",
            "classification": "important",
            "catalogue": {"fields": ["rider_id", "district", "fare"]},
        },
    )
    assert created.status_code == 201, created.text
    reviewed = market.client.post(
        f"/v1/resources/{created.json()['id']}/review",
        headers=regulator.headers,
        json={"decision": "register", "comment": "Catalogue complete."},
    )
    assert reviewed.status_code == 200, reviewed.text
    code = reviewed.json()["registration_code"]
    found = [
        r
        for r in market.client.get("/v1/registrations", headers=regulator.headers, params={"limit": 500}).json()[
            "items"
        ]
        if r["registration_code"] == code
    ]
    assert len(found) == 1
    return dict(found[0])


def object_to(market: Market, actor: Actor, registration_id: str, reason: str = "This is our data.") -> Any:
    return market.client.post(
        f"/v1/registrations/{registration_id}/objections", headers=actor.headers, json={"reason": reason}
    )


def notifications_of(market: Market, actor: Actor, **params: Any) -> dict[str, Any]:
    """The actor's notifications (first page) and its unread count."""
    response = market.client.get("/v1/notifications", headers=actor.headers, params=params)
    assert response.status_code == 200, response.text
    count = market.client.get("/v1/notifications/unread", headers=actor.headers).json()["unread"]
    return {"unread": count, "items": response.json()["items"]}
