"""Invoices, credit notes and settlement statements in zh-CN and en, as HTML and as PDF with Chinese text."""

from __future__ import annotations

import re
from datetime import timedelta
from io import BytesIO
from typing import Any

import pytest
from pypdf import PdfReader

from billing.config import Period, billing_settings
from market import clock
from market.accounts.models import Role
from market.capitals import chinese_capitals
from tests.billing.helpers import SQL, invoices_of
from tests.conftest import Market
from tests.factories import grant, listed_product, query

BUYER = "北京数据应用科技有限公司"
PROFILE = {
    "uscc": "91110108551385082Q",
    "address": "北京市海淀区中关村大街1号",
    "contact_name": "张三",
    "bank_name": "中国工商银行北京中关村支行",
    "bank_account": "0200004509020123456",
}


def pdf_text(content: bytes) -> str:
    """The PDF's text with whitespace removed (extractors space out CJK glyphs)."""
    assert content.startswith(b"%PDF")
    # pypdf reads the embedded CID CMap's 2-byte codes as byte pairs: a NUL comes before each character.
    text = "".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages)
    return re.sub(r"[\s\x00]+", "", text)


@pytest.fixture
def billed(market: Market) -> dict[str, Any]:
    """A finalized invoice for a buyer with a Chinese name and profile, in a period that has ended."""
    admin = market.actor(Role.ADMIN)
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER, org=BUYER)
    patched = market.client.patch(f"/v1/orgs/{buyer.principal.org_id}", headers=admin.headers, json=PROFILE)
    assert patched.status_code == 200, patched.text
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    for _ in range(3):
        assert query(market, buyer, listed.slug, SQL).status_code == 200
    period = Period.containing(clock.utcnow())
    finance = market.actor(Role.FINANCE)
    with clock.travel_to(period.end + timedelta(days=2), frozen=False):
        ran = market.client.post(
            "/v1/billing/runs", headers=finance.headers, json={"period": period.key, "finalize": True}
        )
        assert ran.status_code == 200, ran.text
        invoice = invoices_of(market, buyer)[0]
        assert invoice["total_minor"] > 0 and invoice["status"] == "finalized"
        yield {"listed": listed, "buyer": buyer, "finance": finance, "invoice": invoice, "period": period.key}


def get(market: Market, url: str, actor, language: str, **params: Any):
    response = market.client.get(url, headers={**actor.headers, "Accept-Language": language}, params=params)
    assert response.status_code == 200, response.text
    return response


def test_zh_cn_invoice_pdf_carries_the_chinese_buyer_and_the_amount_in_capitals(market: Market, billed):
    invoice, buyer = billed["invoice"], billed["buyer"]
    text = pdf_text(get(market, invoice["document"], buyer, "zh-CN", format="pdf").content)
    assert BUYER in text
    assert chinese_capitals(invoice["total_minor"]) in text
    for expected in (
        "账单",
        "购买方",
        "统一社会信用代码",
        PROFILE["uscc"],
        PROFILE["address"],
        invoice["number"],
        "金额大写",
    ):
        assert expected in text, expected
    # The seller is not configured in tests: its details say so, and nothing prints as '?'.
    assert "未提供" in text and "??" not in text


def test_en_invoice_names_the_chinese_buyer_without_capitals(market: Market, billed):
    invoice, buyer = billed["invoice"], billed["buyer"]
    page = get(market, invoice["document"], buyer, "en")
    assert '<html lang="en">' in page.text and page.headers["content-language"] == "en"
    for expected in ("Invoice", "Seller", "Bill to", BUYER, PROFILE["uscc"], "not provided", "Due date", "Total"):
        assert expected in page.text, expected
    assert chinese_capitals(invoice["total_minor"]) not in page.text
    text = pdf_text(get(market, invoice["document"], buyer, "en", format="pdf").content)
    assert BUYER in text and "Billto" in text and "大写" not in text


def test_zh_cn_html_and_the_lang_parameter(market: Market, billed):
    invoice, buyer = billed["invoice"], billed["buyer"]
    page = get(market, invoice["document"], buyer, "en", lang="zh-CN")
    assert '<html lang="zh-CN">' in page.text and page.headers["content-language"] == "zh-CN"
    assert f"金额大写：</strong> {chinese_capitals(invoice['total_minor'])}" in page.text
    assert "¥" in page.text and "销售方" in page.text


def test_configured_seller_replaces_every_missing_mark(market: Market, billed, monkeypatch: pytest.MonkeyPatch):
    seller = {
        "NAME": "北京公共数据运营有限公司",
        "TAX_ID": "91350100M000100Y43",
        "ADDRESS": "北京市朝阳区数据大道8号",
        "PHONE": "010-87654321",
        "BANK": "北京银行朝阳支行",
        "BANK_ACCOUNT": "20000012345678901234",
    }
    for name, value in seller.items():
        monkeypatch.setenv(f"MARKET_BILLING_SELLER_{name}", value)
    monkeypatch.setenv("MARKET_BILLING_PAYMENT_TERMS_DAYS", "30")
    billing_settings.cache_clear()
    try:
        invoice, buyer = billed["invoice"], billed["buyer"]
        page = get(market, invoice["document"], buyer, "zh-CN").text
        assert "未提供" not in page.split('<table class="facts">')[0].split("购买方")[0]
        text = pdf_text(get(market, invoice["document"], buyer, "zh-CN", format="pdf").content)
        for value in seller.values():
            assert value in text, value
    finally:
        monkeypatch.undo()
        billing_settings.cache_clear()


def test_a_wrong_seller_code_fails_loudly(monkeypatch: pytest.MonkeyPatch):
    from billing.config import BillingSettings

    monkeypatch.setenv("MARKET_BILLING_SELLER_TAX_ID", "91350100M000100Y44")
    with pytest.raises(ValueError, match="unified social credit code"):
        BillingSettings()


def test_credit_note_document_for_its_buyer_only(market: Market, billed):
    invoice, buyer, finance = billed["invoice"], billed["buyer"], billed["finance"]
    note = market.client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        headers=finance.headers,
        json={"amount_minor": 101, "reason": "重复计费的查询"},
    )
    assert note.status_code == 201, note.text
    url = f"/v1/credit-notes/{note.json()['id']}/document"
    text = pdf_text(get(market, url, buyer, "zh-CN", format="pdf").content)
    for expected in ("贷项通知单", BUYER, "重复计费的查询", chinese_capitals(101), invoice["number"]):
        assert expected in text, expected
    assert "Credit note" in get(market, url, finance, "en").text
    other = market.actor(Role.BUYER)
    hidden = market.client.get(url, headers=other.headers)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "credit_note_not_found"
    unknown = market.client.get("/v1/credit-notes/crn_nope/document", headers=finance.headers)
    assert unknown.status_code == 404
    assert market.client.get(url, headers=buyer.headers, params={"format": "doc"}).status_code == 422


def test_settlement_statement_document(market: Market, billed):
    invoice, finance, operator = billed["invoice"], billed["finance"], billed["listed"].operator
    paid = market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=finance.headers,
        json={"amount_minor": invoice["total_minor"], "reference": "BOC-20261201-0001"},
    )
    assert paid.status_code == 201, paid.text
    mine = market.client.get("/v1/settlements", headers=operator.headers, params={"period": billed["period"]}).json()[
        "items"
    ]
    assert len(mine) == 1
    text = pdf_text(
        get(market, "/v1/settlements/document", operator, "zh-CN", period=billed["period"], format="pdf").content
    )
    for expected in ("收益分配结算单", "授权运营主体", operator.principal.org_name.replace(" ", ""), "收款方"):
        assert expected in text, expected
    assert chinese_capitals(mine[0]["amount_minor"]) in text
    everyone = get(market, "/v1/settlements/document", finance, "en", period=billed["period"]).text
    everyone_data = market.client.get("/v1/settlements", headers=finance.headers, params={"period": billed["period"]})
    assert {s["party"] for s in everyone_data.json()["items"]} == {"operator", "platform"}
    for text in ("Authorised operator", "Platform", "Total distributed", operator.principal.org_name):
        assert text in everyone, text
    buyer = billed["buyer"]
    assert (
        market.client.get(
            "/v1/settlements/document", headers=buyer.headers, params={"period": billed["period"]}
        ).status_code
        == 403
    )
