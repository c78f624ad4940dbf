"""The OpenAPI document is what buyers integrate against: complete, authenticated, with the real error shape."""

from __future__ import annotations

import json
from typing import Any

from market.openapi import PUBLIC_PATHS
from tests.conftest import Market


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def test_every_operation_says_what_it_does(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    operations = _operations(doc)
    assert len(operations) > 70
    missing = [f"{m} {p}" for m, p, op in operations if not op.get("summary") or not op.get("description")]
    assert missing == []


def test_errors_are_documented_in_the_shape_the_service_sends(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(doc)  # FastAPI's {"detail": [...]}, never sent
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    for method, path, op in _operations(doc):
        if not path.startswith("/v1/") or path in PUBLIC_PATHS:
            assert "security" not in op, f"{method} {path}"
            continue
        assert op["security"] == [{"apiKey": []}], f"{method} {path}"
        for status in ("401", "403", "404", "422"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"
        assert ("415" in op["responses"]) == ("requestBody" in op), f"{method} {path}"


def test_every_success_response_and_request_body_has_a_schema(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    for method, path, op in _operations(doc):
        for status, response in op["responses"].items():
            if status.startswith("2"):
                content = response.get("content") or {}
                assert content and all(c.get("schema") for c in content.values()), f"{method} {path} {status}"
        if "requestBody" in op:
            assert all(c.get("schema") for c in op["requestBody"]["content"].values()), f"{method} {path}"
    query = doc["paths"]["/v1/queries"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert query == {"$ref": "#/components/schemas/QueryResultOut"}
