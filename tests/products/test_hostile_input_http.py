"""Products: odd version numbers, pathological policies and unreadable files are 4xx that say what to fix."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import create_product, upload_version
from tests.market.test_hostile_input_http import assert_error


def test_a_version_number_beyond_any_integer_column_is_422(market: Market) -> None:
    # Before: the number reached the database and overflowed its integer column: 500.
    operator = market.actor(Role.OPERATOR)
    huge = "99999999999999999999999"
    for method, path in [
        ("GET", f"/v1/products/p/versions/{huge}"),
        ("POST", f"/v1/products/p/versions/{huge}/rebuild"),
        ("GET", f"/v1/products/p/versions/{huge}/quarantine/t"),
        ("POST", f"/v1/products/p/versions/{2**31}/findings/f/resolve"),
    ]:
        response = market.client.request(method, path, headers=operator.headers, json={"justification": "j"})
        assert "path.number" in assert_error(response, 422, "invalid_request")
    zero = market.client.get("/v1/products/p/versions/0", headers=operator.headers)
    assert "greater than or equal to 1" in assert_error(zero, 422, "invalid_request")


def test_a_policy_nested_beyond_the_parser_is_422(market: Market) -> None:
    # Before: json.loads raised RecursionError, which nothing caught: 500.
    operator = market.actor(Role.OPERATOR)
    response = market.client.post(
        "/v1/products/p/versions",
        headers=operator.headers,
        files={"files": ("t.csv", b"a,b\n1,2\n")},
        data={"policy": "[" * 100_000 + "]" * 100_000},
    )
    assert "policy nests JSON too deeply" in assert_error(response, 422, "invalid_request")


def test_an_unreadable_file_is_named_as_uploaded_without_server_paths(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "garbage").status_code == 201
    for filename in ("people.parquet", "people.csv.gz"):
        response = upload_version(market, operator, "garbage", content=bytes(range(256)) * 8, filename=filename)
        message = assert_error(response, 422, "invalid_upload")
        assert filename in message
        assert str(market.settings.data_dir) not in message and "/tmp" not in message and "/uploads/" not in message


def test_a_table_name_with_a_trailing_newline_is_refused(market: Market) -> None:
    # `$` in a Python regex also matches before a final newline; names now must match to the very end.
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "newline").status_code == 201
    upload = market.client.post("/v1/uploads?filename=people.csv", headers=operator.headers, content=b"a,b\n1,2\n")
    assert upload.status_code == 201, upload.text
    response = market.client.post(
        "/v1/products/newline/builds",
        headers=operator.headers,
        json={
            "tables": {"people\n": upload.json()["id"]},
            "policy": {"min_group_size": 10, "tables": {"people\n": {"privacy_unit": "a", "measures": ["b"]}}},
        },
    )
    assert_error(response, 422, "invalid_table_name")
