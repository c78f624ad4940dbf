"""POST /v1/queries answered by the lean ASGI fast path (market.fast_path) exactly as FastAPI's route answers it.

The same battery of requests (good queries, idempotent replays, and every error class: bad JSON, wrong types,
unknown fields, missing or revoked keys, quota exceeded, refused SQL, in English and zh-CN) is sent to two
marketplaces built the same way, one with the fast path on and one with it off. Identifiers are generated
from a counter (market.clock.new_id's randomness replaced) so both build the same ids; status, headers
(there is no date header under the test client) and bodies must then be byte-identical, apart from `cpu_ms`,
which measures the machine. The app's counter proves the fast path, not FastAPI, answered the good ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market import clock
from market.accounts.models import Role
from tests.conftest import Market, running_market
from tests.factories import grant, listed_product
from tests.metering.helpers import BY_REGION

Sent = tuple[str, dict[str, str], bytes]  # (path, headers, body)
Answer = tuple[int, list[tuple[str, str]], bytes]


@pytest.fixture
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """market.clock.new_id from a counter (reset per marketplace) instead of secrets.token_hex."""
    counter = [0]

    def token_hex(nbytes: int) -> str:
        counter[0] += 1
        return f"{counter[0]:0{2 * nbytes}x}"

    monkeypatch.setattr(clock, "secrets", SimpleNamespace(token_hex=token_hex))
    yield counter


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _battery(market: Market) -> tuple[list[Sent], int]:
    """Build the marketplace's products and actors; return the requests to send and how many the fast path
    must answer (the well-formed ones)."""
    listed = listed_product(market)
    buyer, capped, operator, revoked = (
        market.actor(Role.BUYER),
        market.actor(Role.BUYER),
        market.actor(Role.OPERATOR),
        market.actor(Role.BUYER),
    )
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    grant(market, listed, capped, purpose="industry", plan="standard", monthly_query_quota=2)
    keys = market.client.get("/v1/keys", headers=revoked.headers).json()["items"]
    assert market.client.delete(f"/v1/keys/{keys[0]['id']}", headers=revoked.headers).status_code == 200
    slug = listed.slug
    plain = {"Content-Type": "application/json"}
    en, zh = {"Accept-Language": "en"}, {"Accept-Language": "zh-CN"}

    def auth(actor: Any, **extra: str) -> dict[str, str]:
        return {**plain, **actor.headers, **extra}

    good = _json({"product": slug, "sql": BY_REGION})
    structured = _json(
        {"product": slug, "query": {"table": "people", "dimensions": ["region"], "measures": [{"count": "*"}]}}
    )
    fast: list[Sent] = [
        ("/v1/queries", auth(buyer), good),
        ("/v1/queries", auth(buyer, **zh), good),
        ("/v1/queries", auth(buyer, **{"Idempotency-Key": "k-1"}), good),
        ("/v1/queries", auth(buyer, **{"Idempotency-Key": "k-1"}), good),  # replay
        ("/v1/queries", auth(buyer, **{"Idempotency-Key": "k-1", **zh}), _json({"product": slug, "sql": "SELECT 1"})),
        (
            "/v1/queries",
            auth(buyer, **{"Idempotency-Key": "k-2"}),
            _json({"product": slug, "sql": "SELECT max(amount) FROM people"}),
        ),
        (
            "/v1/queries",
            auth(buyer, **{"Idempotency-Key": "k-2"}),
            _json({"product": slug, "sql": "SELECT max(amount) FROM people"}),
        ),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": "SELECT name FROM people"})),
        ("/v1/queries", auth(buyer, **zh), _json({"product": slug, "sql": "SELECT name FROM people"})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": "SELEC nonsense"})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": "DROP TABLE people"})),
        ("/v1/queries", auth(buyer), _json({"product": "no-such-product", "sql": BY_REGION})),
        ("/v1/queries", auth(buyer, **zh), _json({"product": "no-such-product", "sql": BY_REGION})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "agreement": "agr_nothing"})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "epsilon": 1})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "dry_run": True})),
        ("/v1/queries", auth(buyer), structured),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "agreement": None, "epsilon": None})),
        ("/v1/queries", {**auth(buyer), "Content-Type": "application/json; charset=utf-8"}, good),
        ("/v1/queries", auth(operator), good),
        ("/v1/queries", auth(operator, **zh), good),
        ("/v1/queries", auth(revoked), good),
        ("/v1/queries", auth(revoked, **zh), good),
        ("/v1/queries", {**plain, "Authorization": "Bearer not-a-key"}, good),
        ("/v1/queries", {**plain, "Authorization": "Basic dXNlcjpwdw=="}, good),
        ("/v1/queries", auth(capped), good),
        ("/v1/queries", auth(capped), good),
        ("/v1/queries", auth(capped), good),  # over the quota
        ("/v1/queries", auth(capped, **zh), good),
        ("/v1/queries", {**auth(buyer), **en}, good),
    ]
    fallen: list[Sent] = [
        ("/v1/queries", auth(buyer), b'{"product": '),
        ("/v1/queries", auth(buyer, **zh), b'{"product": '),
        ("/v1/queries", auth(buyer), b""),
        ("/v1/queries", auth(buyer), b"[1, 2]"),
        ("/v1/queries", auth(buyer), _json({"product": 7, "sql": BY_REGION})),
        ("/v1/queries", auth(buyer, **zh), _json({"product": slug, "sql": ["SELECT 1"]})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "limit": 5})),
        ("/v1/queries", auth(buyer), _json({"product": slug})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "query": {"table": "people"}})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": ""})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": "x" * 100_001})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": BY_REGION, "epsilon": 11})),
        ("/v1/queries", auth(buyer), _json({"product": slug, "sql": "SELECT '\x00'"})),
        ("/v1/queries", auth(buyer), b'{"product": "people-trips", "sql": "SELECT \'\\ud800\'"}'),
        ("/v1/queries", auth(buyer, **{"Idempotency-Key": ""}), good),
        ("/v1/queries", auth(buyer, **{"Idempotency-Key": "k" * 201}), good),
        ("/v1/queries", {**auth(buyer), "Content-Type": "text/plain"}, good),
        ("/v1/queries", {**auth(buyer), "Content-Type": "application/x-www-form-urlencoded"}, b"product=x&sql=y"),
        ("/v1/queries", plain, good),
        ("/v1/queries", {**plain, **zh}, good),
        ("/v1/queries?dry_run=true", auth(buyer), good),
        ("/v1/queries/", auth(buyer), good),
    ]
    return fast + fallen, len(fast)


def _normalised(body: bytes) -> bytes:
    return re.sub(rb'"cpu_ms": ?\d+', b'"cpu_ms": 0', body)


def _answers(market: Market, sent: list[Sent]) -> list[Answer]:
    answers = []
    for path, headers, body in sent:
        response = market.client.post(path, headers=headers, content=body)
        kept = [(name, value) for name, value in response.headers.multi_items() if name != "date"]
        if any(name == "content-length" for name, _ in kept):  # cpu_ms's digits may change the length
            kept = [(name, "n" if name == "content-length" else value) for name, value in kept]
        answers.append((response.status_code, kept, _normalised(response.content)))
    return answers


def _run(database_factory: Any, data_dir: Path, counter: list[int], *, fast: bool) -> tuple[list[Answer], int, int]:
    counter[0] = 0
    with running_market(database_factory, data_dir, query_fast_path=fast) as market:
        sent, well_formed = _battery(market)
        answers = _answers(market, sent)
        served = market.client.app.state.query_fast_path.served  # type: ignore[attr-defined]
    return answers, well_formed, served


def test_the_fast_path_answers_byte_for_byte_as_fastapi_does(
    database_factory: Any, tmp_path: Path, counted_ids: list[int]
) -> None:
    on, well_formed, served = _run(database_factory, tmp_path / "on", counted_ids, fast=True)
    off, _, served_off = _run(database_factory, tmp_path / "off", counted_ids, fast=False)
    assert len(on) >= 45
    assert served == well_formed and served_off == 0  # the fast path answered the well-formed, and only them
    statuses = {status for status, _, _ in on}
    assert {200, 401, 403, 404, 409, 415, 422, 429} <= statuses, statuses
    for index, (fast_answer, slow_answer) in enumerate(zip(on, off, strict=True)):
        assert fast_answer == slow_answer, index


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["product", "sql", "query", "agreement", "epsilon", "dry_run", "other"]),
        st.none() | st.booleans() | st.integers(-3, 12) | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
        max_size=4,
    )
)
def test_any_body_gets_the_same_answer_on_both_paths(market: Market, body: dict[str, Any]) -> None:
    """Whatever JSON object is sent (known and unknown fields, any types), both paths answer alike; no key
    is valid, so nothing is run and the two marketplaces need not share state."""
    from tests.conftest import _english_client

    slow = _english_client(market.settings.model_copy(update={"query_fast_path": False}), market.database)
    headers = {"Authorization": "Bearer nobody", "Content-Type": "application/json"}
    with slow:
        fast_answer = market.client.post("/v1/queries", headers=headers, content=_json(body))
        slow_answer = slow.post("/v1/queries", headers=headers, content=_json(body))
    assert (fast_answer.status_code, fast_answer.content) == (slow_answer.status_code, slow_answer.content)
    assert fast_answer.headers.items() == slow_answer.headers.items()


def test_the_counter_counts_only_what_the_fast_path_answered(market: Market) -> None:
    stats = market.client.app.state.query_fast_path  # type: ignore[attr-defined]
    before = stats.served
    market.client.post("/v1/queries", headers={"Authorization": "Bearer x"}, json={"product": "p", "sql": "SELECT 1"})
    market.client.post("/v1/queries", headers={"Authorization": "Bearer x"}, json={"product": "p", "sql": 1})
    assert stats.served == before + 1
