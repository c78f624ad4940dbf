"""The language layer: negotiation, locale formatting, and API errors in the caller's language."""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from market import i18n
from market.accounts.models import Role
from market.messages import EN, render
from tests.conftest import Market
from tests.factories import grant, listed_product, query

CJK = re.compile(r"[\u4e00-\u9fff]")
TAGS = st.sampled_from(["zh-CN", "zh", "zh-Hans-CN", "zh_TW", "en", "en-US", "en-GB", "fr", "de-DE", "*", "ja", ""])


@given(st.one_of(st.none(), st.text(max_size=200)), st.one_of(st.none(), st.text(max_size=20)))
def test_negotiate_always_answers_a_supported_locale(header, preferred):
    assert i18n.negotiate(header, preferred) in i18n.LOCALES


@given(st.lists(st.tuples(TAGS, st.sampled_from(["", ";q=1", ";q=0.9", ";q=0.5", ";q=0"])), max_size=6), TAGS)
def test_preference_wins_then_the_best_supported_language(entries, preferred):
    header = ", ".join(tag + weight for tag, weight in entries)
    chosen = i18n.negotiate(header, preferred)
    if i18n.normalize(preferred) is not None:
        assert chosen == i18n.normalize(preferred)
        return
    # Otherwise: the first supported tag among those with the highest weight, or zh_CN.
    weighted = [
        (-float(weight.split("=")[1]) if weight else -1.0, index, tag)
        for index, (tag, weight) in enumerate(entries)
        if tag and weight != ";q=0"
    ]
    expected = i18n.DEFAULT_LOCALE
    for _, _, tag in sorted(weighted):
        if tag == "*" or i18n.normalize(tag):
            expected = i18n.normalize(tag) or i18n.DEFAULT_LOCALE
            break
    assert chosen == expected


def test_no_preference_is_chinese():
    assert i18n.negotiate(None) == "zh_CN"
    assert i18n.negotiate("fr-FR, de;q=0.8") == "zh_CN"
    assert i18n.negotiate("fr-FR, en;q=0.1") == "en"
    assert i18n.negotiate("en-US", preferred="zh-CN") == "zh_CN"


def test_money_dates_and_numbers_follow_the_locale():
    assert i18n.format_money(123456, "CNY", "zh_CN") == "¥1,234.56"
    assert i18n.format_money(-5, "CNY", "zh_CN") == "-¥0.05"
    assert i18n.format_money(123456, "CNY", "en") == "CN¥1,234.56"
    assert i18n.format_money(1500, "JPY", "en") == "¥1,500"
    assert i18n.format_date(date(2026, 12, 1), "zh_CN") == "2026年12月1日"
    assert i18n.format_date(date(2026, 12, 1), "en") == "December 1, 2026"
    # Stored UTC, shown in Beijing time: 16:30 UTC on 30 November is 00:30 on 1 December.
    assert i18n.format_datetime(datetime(2026, 11, 30, 16, 30), "zh_CN") == "2026年12月1日 00:30"
    assert i18n.format_datetime(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), "en").startswith("Dec 1, 2026")
    assert i18n.format_number(1234567, "zh_CN") == "1,234,567"


def test_gettext_translates_then_formats():
    english = EN["no_agreement"]
    assert i18n.pgettext("en", "no_agreement", english, slug="x") == english.format(slug="x")
    chinese = i18n.pgettext("zh_CN", "no_agreement", english, slug="x")
    assert "授权使用协议" in chinese and "“x”" in chinese
    # An unknown msgid comes back as itself; unknown locales read English.
    assert i18n.gettext("zh_CN", "Not a msgid {n}", n=3) == "Not a msgid 3"
    assert i18n.translations("xx") is i18n.translations("en")


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def test_every_message_has_a_chinese_rendering_with_every_parameter():
    for code, english in EN.items():
        params = {name: f"<{name}>" for name in _fields(english)}
        chinese = render(code, "zh_CN", **params)
        assert render(code, "en", **params) == english.format(**params)
        for value in params.values():
            assert value in chinese, (code, chinese)
        if english != "{detail}":
            assert CJK.search(chinese), (code, chinese)


def test_api_errors_follow_accept_language_and_keep_their_code(market: Market):
    english = market.client.get("/v1/me", headers={"Accept-Language": "en-US,en;q=0.9"})
    chinese = market.client.get("/v1/me", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert english.status_code == chinese.status_code == 401
    assert english.json()["error"]["code"] == chinese.json()["error"]["code"] == "missing_credentials"
    assert english.json()["error"]["message"] == EN["missing_credentials"]
    assert chinese.json()["error"]["message"] == render("missing_credentials", "zh_CN")
    assert CJK.search(chinese.json()["error"]["message"])


def test_without_a_preference_errors_are_chinese(market: Market):
    bare = TestClient(market.client.app, raise_server_exceptions=False)
    for response in (bare.get("/v1/me"), bare.get("/v1/no/such/route"), bare.post("/v1/orgs", content=b"{")):
        assert response.status_code in (401, 404, 422), response.text
        assert CJK.search(response.json()["error"]["message"]), response.text
    assert bare.get("/v1/me", headers={"Accept-Language": "en"}).json()["error"]["message"] == EN["missing_credentials"]


def test_the_locale_cookie_beats_accept_language(market: Market):
    market.client.cookies.set(i18n.LOCALE_COOKIE, "zh-CN")
    try:
        response = market.client.get("/v1/no/such/route", headers={"Accept-Language": "en"})
    finally:
        market.client.cookies.clear()
    assert response.json()["error"] == {
        "code": "not_found",
        "message": render("not_found", "zh_CN", path="/v1/no/such/route"),
    }


def test_an_unknown_page_is_a_readable_404_page_in_the_visitors_language(market: Market):
    bare = TestClient(market.client.app, raise_server_exceptions=False)
    for path in ("/no/such/page", "/console/nothing-here", "/console/query/nothing"):
        page = bare.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), path
        assert render("page_not_found", "zh_CN", path=path).replace("“", "&#34;")[:6] in page.text
        assert 'lang="zh-CN"' in page.text and "page_not_found" in page.text
    english = bare.get("/no/such/page", headers={"Accept-Language": "en"})
    assert english.status_code == 404 and render("page_not_found", "en", path="/no/such/page") in english.text
    # The API keeps its JSON error, and so does a program that asks for JSON.
    api = bare.get("/v1/no/such/route", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    wants_json = bare.get("/no/such/page", headers={"Accept": "application/json"})
    assert wants_json.status_code == 404 and wants_json.json()["error"]["code"] == "not_found"


def test_service_errors_and_refused_queries_are_translated(market: Market):
    admin = market.actor(Role.ADMIN)
    zh = {**admin.headers, "Accept-Language": "zh-CN"}
    missing = market.client.post(
        "/v1/users", headers=zh, json={"org_id": "org_nope", "name": "n", "email": "a@b.c", "role": "buyer"}
    )
    assert missing.json()["error"] == {"code": "organisation_not_found", "message": "不存在机构“org_nope”。"}

    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    # The query path records the refusal (rejected, never charged) and answers in the caller's language.
    market.client.headers["Accept-Language"] = "zh-CN"
    try:
        refused = query(market, buyer, listed.slug, "SELECT * FROM people")
    finally:
        market.client.headers["Accept-Language"] = "en"
    assert refused.status_code in (400, 422), refused.text
    error = refused.json()["error"]
    assert error["code"] == "not_aggregated"
    assert error["message"] == render("not_aggregated", "zh_CN") != EN["not_aggregated"]


def test_text_parameters_marked_msg_are_translated_with_their_message():
    params = {"current": "listed", "action": "submitted", "hint": i18n.Msg("Wait for the review decision.")}
    assert render("invalid_transition", "zh_CN", **params).endswith("请等待审核结果。")
    assert render("invalid_transition", "en", **params).endswith("Wait for the review decision.")


def test_validation_errors_read_in_the_callers_language(market: Market):
    admin = market.actor(Role.ADMIN)
    body = {"name": "", "kind": "buyer", "extra": 1}
    chinese = market.client.post("/v1/orgs", headers={**admin.headers, "Accept-Language": "zh-CN"}, json=body)
    english = market.client.post("/v1/orgs", headers=admin.headers, json=body)
    assert chinese.status_code == english.status_code == 422
    assert chinese.json()["error"]["code"] == english.json()["error"]["code"] == "invalid_request"
    assert "name: 至少应有 1 个字符" in chinese.json()["error"]["message"]
    assert "name: String should have at least 1 character" in english.json()["error"]["message"]
    broken = market.client.post(
        "/v1/orgs",
        headers={**admin.headers, "Accept-Language": "zh-CN", "Content-Type": "application/json"},
        content=b'{"name": ',
    )
    assert broken.status_code == 422 and "不是有效的 JSON" in broken.json()["error"]["message"], broken.text
