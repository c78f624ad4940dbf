"""/healthz, and a busy database: 200 when it answers, 503 with Retry-After (never a 500) when it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from market.app import create_app
from market.db import Database, make_engine
from market.settings import Settings
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


def test_a_request_that_finds_every_pooled_connection_taken_gets_503_with_retry_after(
    database_factory: Any, tmp_path: Path
) -> None:
    """Overload of the database is a 503 the caller may retry, never a 500."""
    url = database_factory.new_database()
    settings = Settings(data_dir=tmp_path / "data", database_url=url, scheduler_enabled=False)
    engine = make_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    database = Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
    try:
        with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
            with engine.connect():  # the pool's one connection, taken
                response = client.get("/v1/products", headers={"Authorization": "Bearer whatever"})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
            assert client.get("/v1/products", headers={"Authorization": "Bearer whatever"}).status_code == 401
    finally:
        database.dispose()
        database_factory.release(url)
