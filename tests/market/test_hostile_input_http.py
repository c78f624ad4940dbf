"""Hostile input anywhere in a request is a 4xx with the error shape, never a 500, on both databases."""

from __future__ import annotations

from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Market


def assert_error(response: Any, status: int, code: str) -> str:
    """The response is `status` with exactly {"error": {"code", "message"}}; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"product": "nyc\\u0000", "sql": "SELECT 1"}', "body.product"),
        (b'{"product": "p", "sql": "SELECT count(*) FROM t\\u0000"}', "body.sql"),
        (b'{"product": "\\ud800", "sql": "SELECT 1"}', "body.product"),
        (b'{"product": "p", "sql": "SELECT \'\\udfff\'"}', "body.sql"),
    ],
)
def test_nul_and_lone_surrogates_in_a_json_body_are_422_naming_the_field(
    market: Market, raw: bytes, where: str
) -> None:
    # Before: PostgreSQL refused NUL and UTF-8 could not encode the surrogate, deep in a repository: 500.
    buyer = market.actor(Role.BUYER)
    response = market.client.post(
        "/v1/queries", headers={**buyer.headers, "Content-Type": "application/json"}, content=raw
    )
    assert where in assert_error(response, 422, "unstorable_text")


def test_nul_in_path_query_and_header_is_422(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    path = market.client.get("/v1/products/a%00b", headers=buyer.headers)
    assert "path.slug" in assert_error(path, 422, "unstorable_text")
    query = market.client.get("/v1/usage", headers=buyer.headers, params={"product": "a\x00"})
    assert "query.product" in assert_error(query, 422, "unstorable_text")
    header = market.client.post(
        "/v1/queries",
        headers={**buyer.headers, "Idempotency-Key": "k\x00"},
        json={"product": "p", "sql": "SELECT 1"},
    )
    assert "header.idempotency-key" in assert_error(header, 422, "unstorable_text")


def test_nul_in_a_multipart_field_or_file_name_is_422(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    field = market.client.post(
        "/v1/products/p/versions",
        headers=operator.headers,
        files={"files": ("t.csv", b"a,b\n1,2\n")},
        data={"policy": '{"x": "\x00"}'},
    )
    assert "body.policy" in assert_error(field, 422, "unstorable_text")
    raw = (
        b'--B\r\nContent-Disposition: form-data; name="files"; filename="t\x00.csv"\r\n\r\na,b\n1,2\n\r\n'
        b'--B\r\nContent-Disposition: form-data; name="policy"\r\n\r\n{}\r\n--B--\r\n'
    )
    name = market.client.post(
        "/v1/products/p/versions",
        headers={**operator.headers, "Content-Type": "multipart/form-data; boundary=B"},
        content=raw,
    )
    assert "body.files" in assert_error(name, 422, "unstorable_text")


def test_plain_unicode_is_not_refused(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    response = market.client.post("/v1/queries", headers=buyer.headers, json={"product": "数据-😀", "sql": "SELECT 1"})
    assert_error(response, 404, "product_not_found")


def test_a_body_in_the_wrong_media_type_is_415_naming_the_right_one(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    text = market.client.post(
        "/v1/queries", headers={**buyer.headers, "Content-Type": "text/plain"}, content=b'{"product": "p"}'
    )
    assert "application/json" in assert_error(text, 415, "unsupported_media_type")
    operator = market.actor(Role.OPERATOR)
    json_for_files = market.client.post("/v1/products/p/versions", headers=operator.headers, json={"policy": "{}"})
    assert "multipart/form-data" in assert_error(json_for_files, 415, "unsupported_media_type")


def test_unreadable_bodies_are_400_invalid_body(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    not_utf8 = market.client.post(
        "/v1/queries", headers={**buyer.headers, "Content-Type": "application/json"}, content=b'{"product": "\xff"}'
    )
    assert "UTF-8" in assert_error(not_utf8, 400, "invalid_body")
    operator = market.actor(Role.OPERATOR)
    no_boundary = market.client.post(
        "/v1/products/p/versions",
        headers={**operator.headers, "Content-Type": "multipart/form-data"},
        content=b"garbage",
    )
    assert "boundary" in assert_error(no_boundary, 400, "invalid_body")


def test_invalid_json_says_where_and_why(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    response = market.client.post(
        "/v1/queries", headers={**buyer.headers, "Content-Type": "application/json"}, content=b'{"product": }'
    )
    message = assert_error(response, 422, "invalid_request")
    assert "not valid JSON at character 12" in message and "Expecting value" in message


def test_a_missing_body_names_the_body(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    assert "body: Field required" in assert_error(market.client.post("/v1/queries", headers=buyer.headers), 422,
                                                  "invalid_request")  # fmt: skip


def test_framework_errors_have_the_error_shape(market: Market) -> None:
    buyer = market.actor(Role.BUYER)
    assert_error(market.client.delete("/v1/products", headers=buyer.headers), 405, "method_not_allowed")
    assert_error(market.client.get("/v1/nowhere", headers=buyer.headers), 404, "not_found")
