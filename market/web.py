"""The web pages: a public catalogue of listed products, server-rendered, no login needed.

Catalogue metadata of listed products is public, as on any open-data portal; the data itself is
reachable only through the authenticated, aggregate-only API.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from market.deps import SessionDep, SettingsDep
from market.money import Money
from products import repository as products_repo
from products import service as products
from products.schemas import PlanOut, ProductOut

router = APIRouter(tags=["web pages"], include_in_schema=False)

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2933}
h1{margin-bottom:.2rem} .muted{color:#52606d}
.card{border:1px solid #d9e2ec;border-radius:8px;padding:1rem;margin:1rem 0}
table{border-collapse:collapse;width:100%} td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eee}
code{background:#f0f4f8;padding:0 .25rem;border-radius:3px} .tag{background:#e3f8ff;border-radius:3px;padding:0 .4rem}
"""


def _plan_text(plan: PlanOut) -> str:
    if plan.kind == "public_interest":
        quota = f", up to {plan.monthly_query_quota:,} queries a month" if plan.monthly_query_quota else ""
        return f"free for public-interest use{quota}"
    parts = []
    if plan.monthly_fee_minor:
        parts.append(f"{Money(plan.monthly_fee_minor, plan.currency).format()} a month")
    if plan.per_query_minor:
        parts.append(f"{Money(plan.per_query_minor, plan.currency).format()} per query")
    if plan.per_gb_minor:
        parts.append(f"{plan.per_gb_minor.normalize()} {plan.currency} minor units per GB scanned")
    if plan.monthly_cap_minor is not None:
        parts.append(f"at most {Money(plan.monthly_cap_minor, plan.currency).format()} a month")
    return ", ".join(parts) or "no charge"


def _product_card(product: ProductOut) -> str:
    columns = "".join(
        f"<tr><td><code>{escape(t.name)}.{escape(c.name)}</code></td><td>{escape(c.type)}</td>"
        f"<td>{escape(c.role.replace('_', ' '))}</td></tr>"
        for t in product.tables
        for c in t.columns
    )
    plans = "".join(f"<li><b>{escape(p.title)}</b>: {escape(_plan_text(p))}</li>" for p in product.plans)
    k = (product.policy or {}).get("min_group_size", "?")
    rows = sum(t.row_count for t in product.tables)
    return (
        f"<div class='card'><h2>{escape(product.title)}</h2>"
        f"<p class='muted'><code>{escape(product.slug)}</code> · <span class='tag'>{escape(product.zone)}</span> "
        f"· {escape(product.region)} · {escape(product.operator)} · version {product.version} · {rows:,} rows</p>"
        f"<p>{escape(product.description)}</p>"
        f"<p>Results are aggregates over groups of at least <b>{escape(str(k))}</b> distinct protected entities; "
        f"smaller groups are suppressed.</p>"
        f"<table><tr><th>column</th><th>type</th><th>role</th></tr>{columns}</table>"
        f"<h3>Plans</h3><ul>{plans}</ul></div>"
    )


@router.get("/", response_class=HTMLResponse)
def catalogue_page(session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """The public catalogue: every listed product, its columns' roles, its policy and plans."""
    listed = products.present(session, products_repo.listed(session))
    cards = "".join(_product_card(p) for p in listed) or "<p>No product is listed yet.</p>"
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(settings.platform_name)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(settings.platform_name)}</h1>"
        "<p class='muted'>Authorised public data, usable but not visible: buyers run aggregate-only SQL in a "
        "sandbox. Public-interest use is free under supervision; commercial use is paid at capped prices. "
        "API reference: <a href='/docs'>/docs</a>.</p>"
        f"<h2>Catalogue</h2>{cards}</body></html>"
    )
    return HTMLResponse(page)
