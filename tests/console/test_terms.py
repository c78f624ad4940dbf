"""Words whose Chinese depends on what they name are translated in their context (msgctxt): the `finance`
role is 财务 but the `finance` zone is 金融; a `paid` product is 付费 but a `paid` invoice is 已付款."""

from __future__ import annotations

import re

from market import i18n
from market.accounts.models import Role
from market.catalogues import load
from tests.conftest import Market
from tests.console.helpers import browser, sign_in
from tests.factories import listed_product

TAG = re.compile(r'<span class="tag">([^<]+)</span>')


def test_the_same_english_word_reads_by_its_meaning() -> None:
    assert i18n.term("zh_CN", "role", "finance") == "财务"
    assert i18n.term("zh_CN", "zone", "finance") == "金融"
    assert i18n.term("zh_CN", "price", "paid") == "付费"
    assert i18n.term("zh_CN", "invoice state", "paid") == "已付款"
    assert i18n.term("zh_CN", "payment state", "pending") != i18n.term("zh_CN", "request state", "pending")
    # A word marked without a context still reads translated under any context; English stays English.
    assert i18n.term("zh_CN", "no such context", "listed") == "已上架"
    assert i18n.term("en", "role", "finance") == "finance"


def test_each_meaning_of_an_ambiguous_word_has_its_own_zh_entry() -> None:
    catalogue = load("zh_CN")
    meanings = {(m.context, m.id): m.string for m in catalogue if m.context and m.id in ("finance", "paid", "pending")}
    assert meanings[("role", "finance")] != meanings[("zone", "finance")]
    assert meanings[("price", "paid")] != meanings[("invoice state", "paid")]
    assert meanings[("payment state", "pending")] != meanings[("request state", "pending")]


def test_the_finance_clerk_is_finance_and_a_paid_product_is_paid_for(market: Market) -> None:
    listed_product(market, slug="people-trips")
    catalogue = browser(market).get("/")  # zh-CN without a preference
    tags = TAG.findall(catalogue.text)
    assert "付费" in tags and "已付款" not in tags
    assert "交通运输" in tags
    page = sign_in(market, market.actor(Role.FINANCE)).get("/")
    assert "财务" in page.text and "金融" not in page.text
