"""Audit of issue 9 (branch audit9): what buyers see of the demo products' data outside query answers.

Issue 9: "catalogue and quality-report statistics (ranges, distinct counts, min/max) must come from values
held by at least k units, or be hidden from buyers". tests/products/test_catalogue_http.py checks it on a
fixture product; here on every demo product, through the buyer's catalogue (`GET /v1/products/{slug}`), each
statistic is recomputed from the version's own Parquet file with DuckDB:

- a dimension's distinct count and range are those of the values at least k distinct units hold (on the
  flights, `dest` has values one aircraft alone flies to, e.g. 'LEX', so the plain figures differ);
- a measure shows no range (its min and max are single rows' values);
- a null share is shown only when there are no nulls or k or more units hold them;
- a DP product shows no quality summary at all (exact statistics are outside the privacy budget);
- the product list shows no quality summary either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from market.demo import FLIGHTS_DP_SLUG, FLIGHTS_SLUG
from market.demo_credit import CREDIT_SLUG
from tests.conftest import DemoMarket


def _files(market: DemoMarket, product_id: str, version: int) -> dict[str, Path]:
    base = market.settings.products_dir / product_id / f"v{version}"
    return {path.stem: path for path in base.glob("*.parquet")}


def _expected(path: Path, unit: str, column: str, k: int) -> dict[str, Any]:
    connection = duckdb.connect()
    source = f"read_parquet('{path}')"
    held = connection.execute(
        f'SELECT count(*), min(v)::VARCHAR, max(v)::VARCHAR FROM (SELECT "{column}" AS v, '
        f'count(DISTINCT "{unit}") AS units FROM {source} WHERE "{column}" IS NOT NULL GROUP BY 1) WHERE units >= {k}'
    ).fetchone()
    every = connection.execute(f'SELECT count(DISTINCT "{column}") FROM {source}').fetchone()
    nulls, null_units, rows = connection.execute(
        f'SELECT count(*) FILTER (WHERE "{column}" IS NULL), '
        f'count(DISTINCT "{unit}") FILTER (WHERE "{column}" IS NULL), count(*) FROM {source}'
    ).fetchone()  # type: ignore[misc]
    connection.close()
    assert held is not None and every is not None
    return {
        "distinct": held[0],
        "range": [held[1], held[2]] if held[0] else None,
        "every_distinct": every[0],
        "null_share_shown": nulls == 0 or null_units >= k,
        "null_share": round(nulls / rows, 4),
    }


def test_the_threshold_demo_products_statistics_come_from_values_k_units_hold(demo_market: DemoMarket) -> None:
    buyer = demo_market.headers("buyer_commercial")
    detail = demo_market.client.get(f"/v1/products/{FLIGHTS_SLUG}", headers=buyer).json()
    k = detail["policy"]["min_group_size"]
    assert detail["quality"]["held_by_at_least"] == k
    files = _files(demo_market, detail["id"], detail["version"])
    narrowed = []
    for table, summary in detail["quality"]["tables"].items():
        policy = detail["policy"]["tables"][table]
        shown = {c["name"]: c for c in summary["columns"]}
        assert not set(policy.get("hidden") or []) & set(shown)
        assert policy["privacy_unit"] not in shown or shown[policy["privacy_unit"]]["range"] is None
        for name in policy["dimensions"]:
            expected = _expected(files[table], policy["privacy_unit"], name, k)
            assert shown[name]["distinct"] == expected["distinct"], name
            if expected["range"] is not None:
                # Compared as text: DuckDB's VARCHAR of the value, as the build wrote it.
                assert [str(v) for v in shown[name]["range"]] == expected["range"], name
            assert (shown[name]["null_share"] is not None) == expected["null_share_shown"], name
            if expected["null_share_shown"]:
                assert shown[name]["null_share"] == expected["null_share"], name
            if expected["every_distinct"] != expected["distinct"]:
                narrowed.append(name)
        for name in policy["measures"]:
            assert shown[name]["range"] is None and shown[name]["distinct"] is None, name
            expected = _expected(files[table], policy["privacy_unit"], name, k)
            assert (shown[name]["null_share"] is not None) == expected["null_share_shown"], name
    # The check has teeth: some dimension has values fewer than k aircraft hold (dest 'LEX', for one).
    assert "dest" in narrowed


def test_dp_demo_products_and_the_product_list_show_no_quality_summary(demo_market: DemoMarket) -> None:
    for role in ("buyer_commercial", "buyer_public"):
        headers = demo_market.headers(role)
        for slug in (FLIGHTS_DP_SLUG, CREDIT_SLUG):
            detail = demo_market.client.get(f"/v1/products/{slug}", headers=headers)
            assert detail.status_code == 200, detail.text
            assert detail.json()["policy"]["mode"] == "dp"
            assert detail.json()["quality"] is None, slug
        listed = demo_market.client.get("/v1/products", headers=headers).json()["items"]
        assert listed and all(p["quality"] is None for p in listed)
