"""/healthz: 200 when the database answers, 503 with Retry-After (never a 500) when it does not."""

from __future__ import annotations

from fastapi.testclient import TestClient

from market.app import create_app
from tests.conftest import Market


def test_healthz_answers_200_when_the_database_answers(market: Market) -> None:
    response = market.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_answers_503_with_retry_after_when_the_database_is_unreachable(market: Market) -> None:
    unreachable = market.settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    with TestClient(create_app(unreachable, market.database), raise_server_exceptions=False) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
