"""Versions built over HTTP are statistics-free Parquet (docs/sandbox.md, "Statistics-free files").

A file's min/max statistics, Bloom filters and page index let DuckDB skip row groups and fold
comparisons by what the rows hold, which a buyer could time. Both ways of building a version (a plain
upload and a recipe) write their tables through storage.write_product_parquet; the version records
that its files are statistics-free, which is what lets the sandbox turn some optimizers back on.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from sqlalchemy import select

from market.accounts.models import Role
from products import footer
from products.models import ProductVersion
from tests.conftest import Market
from tests.factories import create_product, upload_version
from tests.products.pipeline_data import POLICY, RECIPE, csv_bytes


def _footer_facts(path: Path) -> tuple[int, int, int, int]:
    """(column chunks, chunks with any statistic, chunks with a Bloom filter or page index, pages with statistics)."""
    row = duckdb.execute(
        "SELECT count(*), "
        "count(*) FILTER (WHERE stats_min IS NOT NULL OR stats_max IS NOT NULL OR stats_min_value IS NOT NULL "
        "OR stats_max_value IS NOT NULL OR stats_null_count IS NOT NULL OR stats_distinct_count IS NOT NULL), "
        "count(*) FILTER (WHERE bloom_filter_offset IS NOT NULL OR column_index_offset IS NOT NULL "
        "OR offset_index_offset IS NOT NULL) "
        f"FROM parquet_metadata('{path}')"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), footer.page_statistics(path)


def _recorded(market: Market, slug_files: list[Path]) -> list[bool]:
    with market.database.transaction() as session:
        versions = session.scalars(select(ProductVersion)).all()
        names = {p.name for p in slug_files}
        return [
            bool(t.get("statistics", {}).get("statistics_free"))
            for v in versions
            for t in v.tables
            if t["file"] in names
        ]


def test_a_plain_upload_is_stored_without_statistics_or_bloom_filters(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "plainfiles").status_code == 201
    built = upload_version(market, operator, "plainfiles")
    assert built.status_code == 201, built.text
    (path,) = sorted(market.settings.products_dir.rglob("v*/people.parquet"))
    chunks, with_statistics, with_filters, page_statistics = _footer_facts(path)
    assert chunks > 0
    assert (with_statistics, with_filters, page_statistics) == (0, 0, 0)
    # The rows are all there (the footer was rewritten, the pages were not).
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone() == (180,)
    assert _recorded(market, [path]) == [True]


def test_a_recipe_build_is_stored_without_statistics_or_bloom_filters(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "recipefiles").status_code == 201
    upload = market.client.post("/v1/uploads?filename=payments.csv", headers=operator.headers, content=csv_bytes())
    assert upload.status_code == 201, upload.text
    built = market.client.post(
        "/v1/products/recipefiles/builds",
        headers=operator.headers,
        json={"tables": {"payments": upload.json()["id"]}, "recipe": RECIPE, "policy": POLICY},
    )
    assert built.status_code == 201, built.text
    (path,) = [p for p in market.settings.products_dir.rglob("v*/payments.parquet") if "quarantine" not in p.parts]
    chunks, with_statistics, with_filters, page_statistics = _footer_facts(path)
    assert chunks > 0
    assert (with_statistics, with_filters, page_statistics) == (0, 0, 0)
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone() == (160,)
    assert _recorded(market, [path]) == [True]
