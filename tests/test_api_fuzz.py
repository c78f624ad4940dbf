"""Fuzz every documented route from its OpenAPI schema: no 5xx, and every 4xx in the one error shape.

Schemathesis generates requests that fit the schema (positive) and requests that break it (negative)
for each operation. They run against the demo marketplace, with the ids of real objects in the path
(the demo product, an agreement, an invoice...) so that requests get past "not found" and into the
services, and under the key of a demo user picked per example. Examples are derandomized, so a run
is reproducible and a failure shrinks to the same minimal request every time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from billing.config import Period
from market import clock
from market.app import ROUTERS, create_app
from market.clock import utcnow
from market.demo import FLIGHTS_SLUG
from market.messages import EN
from tests.conftest import DemoTemplates

EXAMPLES = 12
"""Examples per operation and generation mode: about 2,000 requests in all."""

TOLERATED_5XX = {(503, "stripe_not_configured")}
"""Card payments without Stripe configured: a state of the deployment, not a fault in the input."""

SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")
BY_ORIGIN = "SELECT origin, count(*) AS n FROM flights GROUP BY origin"


def _operations() -> list[str]:
    """Every documented operation, as 'METHOD /path', read from the routers the app mounts."""
    found = ["GET /healthz"]
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                found += [f"{method} {route.path}" for method in sorted(route.methods)]
    return found


OPERATIONS = _operations()


@dataclass
class Target:
    schema: Any
    client: Any
    keys: dict[str, str]
    ids: dict[str, Any]


def _real_ids(client: TestClient, keys: dict[str, str]) -> dict[str, Any]:
    """Ids of live demo objects, by path parameter name: a usage record, an invoice and its line..."""
    auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}
    period = utcnow().strftime("%Y-%m")
    ran = client.post("/v1/queries", headers=auth["buyer_commercial"], json={"product": FLIGHTS_SLUG, "sql": BY_ORIGIN})
    assert ran.status_code == 200, ran.text
    # Only an ended period can be billed: bill this one as on the first day of the next.
    with clock.travel_to(Period.parse(period).end + timedelta(hours=1)):
        assert client.post("/v1/billing/runs", headers=auth["finance"], json={"period": period}).status_code == 200
    invoice = next(i for i in client.get("/v1/invoices", headers=auth["finance"]).json()["items"] if i["lines"])
    return {
        "slug": FLIGHTS_SLUG,
        "code": "commercial-standard",
        "number": 1,
        "table": "flights",
        "period": period,
        "record_id": ran.json()["query_id"],
        "invoice_id": invoice["id"],
        "line_id": invoice["lines"][0]["id"],
        "agreement_id": client.get("/v1/agreements", headers=auth["buyer_commercial"]).json()["items"][0]["id"],
        "request_id": client.get("/v1/access-requests", headers=auth["buyer_commercial"]).json()["items"][0]["id"],
        "authorisation_id": client.get("/v1/authorisations", headers=auth["regulator"]).json()["items"][0]["id"],
        "resource_id": client.get("/v1/resources", headers=auth["regulator"]).json()["items"][0]["id"],
        "user_id": client.get("/v1/me", headers=auth["buyer_commercial"]).json()["user_id"],
    }


@pytest.fixture(scope="module")
def target(demo_templates: DemoTemplates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The module's own copy of the demo marketplace (the session builds it once: it loads 336,776 flights)."""
    with demo_templates.copy(tmp_path_factory.mktemp("fuzz") / "data") as demo:
        app = create_app(demo.settings, demo.database)
        with TestClient(app, raise_server_exceptions=False) as client:
            ids = _real_ids(client, demo.keys)
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            yield Target(schema=schema, client=asgi.get_client(app), keys=demo.keys, ids=ids)


def problem(response: Any) -> str | None:
    """What is wrong with `response`, or None: a 5xx, or a 4xx body that is not the error shape."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} with a body that is not JSON: {response.text[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if set(body) != {"error"} or not isinstance(error, dict):
        return f"{response.status_code} without the error shape: {body!r:.300}"
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not SNAKE_CASE.fullmatch(code) or code not in EN:
        return f"{response.status_code} with code {code!r}, which has no message in market/messages.py"
    if not isinstance(message, str) or not message.strip():
        return f"{response.status_code} with an empty message for {code}"
    if response.status_code >= 500 and (response.status_code, code) not in TOLERATED_5XX:
        return f"{response.status_code} {code}: {message}"
    return None


def test_every_documented_operation_is_fuzzed(target: Target) -> None:
    documented = {f"{op.ok().method.upper()} {op.ok().path}" for op in target.schema.get_all_operations()}
    assert documented == set(OPERATIONS)


def test_problem_catches_what_the_fuzzer_must_catch() -> None:
    class Fake:
        def __init__(self, status: int, body: Any) -> None:
            self.status_code, self.body, self.text = status, body, str(body)

        def json(self) -> Any:
            if isinstance(self.body, str):
                raise ValueError(self.body)
            return self.body

    assert problem(Fake(200, {"ok": 1})) is None
    assert problem(Fake(404, {"error": {"code": "not_found", "message": "No such route."}})) is None
    assert problem(Fake(503, {"error": {"code": "stripe_not_configured", "message": "m"}})) is None
    assert problem(Fake(500, {"error": {"code": "internal_error", "message": "m"}})) is not None
    assert problem(Fake(422, {"detail": [{"msg": "x"}]})) is not None
    assert problem(Fake(400, {"error": {"code": "http_error_x", "message": "m"}})) is not None
    assert problem(Fake(400, "Bad Request")) is not None


def _fuzz(target: Target, endpoint: Any, mode: GenerationMode) -> None:
    """Send EXAMPLES generated requests of `mode` to `endpoint`, each under a demo user's key."""
    fixed = {p.name: target.ids[p.name] for p in endpoint.path_parameters if p.name in target.ids}

    @given(
        case=endpoint.as_strategy(generation_mode=mode, path_parameters=fixed),
        role=st.sampled_from(sorted(target.keys)),
    )
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def request_is_handled(case: Any, role: str) -> None:
        response = case.call(session=target.client, headers={"Authorization": f"Bearer {target.keys[role]}"})
        found = problem(response)
        assert found is None, f"{mode.value} {role}: {case.method} {case.formatted_path} -> {found}"

    request_is_handled()


@pytest.mark.parametrize("operation", OPERATIONS)
def test_operation_never_fails_on_our_side(target: Target, operation: str) -> None:
    method, path = operation.split(" ", 1)
    endpoint = target.schema[path][method]
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            _fuzz(target, endpoint, mode)
        except Unsatisfiable:
            # An operation with nothing to get wrong (no parameters, no body) has no negative examples.
            assert mode is GenerationMode.NEGATIVE
        except AssertionError as error:
            failures.append(str(error).splitlines()[0])
    assert failures == []
