"""Red team redx15: the ASGI fast path (market.fast_path, branch asgi15) against FastAPI, header by header.

asgi15's own battery varies bodies and actors; this one varies what the fast path reads from the headers itself
(Content-Type spellings, Authorization schemes and spacing, repeated headers, Idempotency-Key lengths and bytes,
Accept-Language) with a valid and an invalid key, and requires status, headers and body to be byte-identical with
the fast path on and off. Nothing is run (the product does not exist, or the key is unknown), so both apps can share
one database. It passed from the start: no difference found (docs/sandbox.md "Red team redx15").
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from market.accounts.models import Role
from tests.conftest import Market, _english_client

CONTENT_TYPES = [
    "application/json",
    "APPLICATION/JSON",
    "application/json; charset=utf-8",
    "application/json; charset=UTF-8",
    " application/json ",
    "application/json;charset=utf-8",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    "text/json",
    "",
]
SCHEMES = ["Bearer {key}", "bearer {key}", "BEARER {key}", "Bearer  {key} ", "Bearer\t{key}", "Token {key}", "{key}"]
KEYS = [None, "", "k", "k" * 200, "k" * 201, "caf\xe9", "a b", "k\t"]
LANGUAGES = [None, "en", "zh-CN", "zh-CN;q=0.1, en;q=0.9", "fr"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content_type=st.lists(st.sampled_from(CONTENT_TYPES), min_size=0, max_size=2),
    scheme=st.lists(st.sampled_from(SCHEMES), min_size=0, max_size=2),
    valid=st.booleans(),
    key=st.lists(st.sampled_from(KEYS), min_size=1, max_size=2),
    language=st.sampled_from(LANGUAGES),
    body=st.sampled_from(
        [
            b'{"product": "no-such-product", "sql": "SELECT count(*) FROM people"}',
            b'{"product": "no-such-product", "sql": "SELECT 1", "dry_run": true}',
            '{"product": "no-such-product", "sql": "SELECT \'\u00e9\'"}'.encode("utf-16"),
            b'\xef\xbb\xbf{"product": "no-such-product", "sql": "SELECT 1"}',
        ]
    ),
)
# A well-formed request, which the fast path answers itself: about 1 generated example in 50 is one, so 150 of them
# held none about one run in twenty (session 18) and test_the_fast_path_answered_some_of_them failed.
@example(
    content_type=["application/json"],
    scheme=["Bearer {key}"],
    valid=True,
    key=[None],
    language=None,
    body=b'{"product": "no-such-product", "sql": "SELECT count(*) FROM people"}',
)
def test_every_header_variant_gets_the_same_answer(
    market: Market,
    content_type: list[str],
    scheme: list[str],
    valid: bool,
    key: list[str | None],
    language: str | None,
    body: bytes,
) -> None:
    actor = _buyer(market)
    token = actor.headers["Authorization"].partition(" ")[2] if valid else "nobody"
    pairs = [("Content-Type", value) for value in content_type]
    pairs += [("Authorization", form.format(key=token)) for form in scheme]
    pairs += [("Idempotency-Key", value) for value in key if value is not None]
    if language is not None:
        pairs.append(("Accept-Language", language))
    headers = [(name.encode(), value.encode("latin-1")) for name, value in pairs]  # bytes as sent: é is one byte
    slow = _english_client(market.settings.model_copy(update={"query_fast_path": False}), market.database)
    with slow:
        fast_answer = market.client.post("/v1/queries", headers=headers, content=body)
        slow_answer = slow.post("/v1/queries", headers=headers, content=body)
    assert (fast_answer.status_code, fast_answer.content) == (slow_answer.status_code, slow_answer.content)
    assert _kept(fast_answer.headers) == _kept(slow_answer.headers)
    _SERVED.append(market.client.app.state.query_fast_path.served)  # type: ignore[attr-defined]


_SERVED: list[int] = []


def test_the_fast_path_answered_some_of_them() -> None:
    """Runs after the property (file order): some variants were well-formed, so the fast path, not FastAPI, answered."""
    assert _SERVED and max(_SERVED) > 0


_BUYERS: dict[int, Any] = {}


def _buyer(market: Market) -> Any:
    found = _BUYERS.get(id(market))
    if found is None:
        found = _BUYERS[id(market)] = market.actor(Role.BUYER)
    return found


def _kept(headers: Any) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.multi_items() if name != "date"]
