"""The public catalogue page."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import create_product, listed_product


def test_catalogue_page_shows_listed_products_only_and_escapes_text(market: Market) -> None:
    listed_product(market, slug="people-trips")
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "secret-draft")
    page = market.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "people-trips" in page.text and "secret-draft" not in page.text
    assert "person_id" in page.text and "privacy unit" in page.text
    assert "1.50 CNY per query" in page.text


def test_product_text_is_html_escaped() -> None:
    from datetime import UTC, datetime

    from market.web import _product_card
    from products.schemas import ProductOut

    card = _product_card(
        ProductOut(
            id="prd_x",
            slug="x",
            title="<script>alert(1)</script>",
            description="a & b",
            zone="transport",
            region="CN-11",
            status="listed",
            operator="Op",
            version=1,
            tables=[],
            policy={"min_group_size": 5},
            plans=[],
            updated_at=datetime.now(UTC),
        )
    )
    assert "<script>" not in card and "&lt;script&gt;" in card and "a &amp; b" in card
