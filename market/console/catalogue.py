"""The catalogue pages: search and filters, and one page per product. Signed-out visitors see listed products."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from market.console.web import ConsoleDep, page
from products import catalogue, service
from products.schemas import ProductOut

router = APIRouter(include_in_schema=False)

ShortText = Annotated[str, Query(max_length=200)]


def _zones_regions(products: list[ProductOut]) -> tuple[list[str], list[str], list[str]]:
    zones = sorted({p.zone for p in products})
    regions = sorted({p.region for p in products})
    scenarios = sorted({s for p in products for s in p.scenarios})
    return zones, regions, scenarios


@router.get("/")
def catalogue_page(
    console: ConsoleDep,
    q: ShortText = "",
    zone: ShortText = "",
    region: ShortText = "",
    scenario: ShortText = "",
    pricing: ShortText = "",
) -> Response:
    """The catalogue: listed products, searchable by words, zone, region, scenario and free or paid plans."""
    listed = service.public_catalogue(console.session)
    everything = service.present(console.session, listed, viewer=console.principal)
    found = catalogue.search(
        console.session,
        listed,
        text=q or None,
        zone=zone or None,
        region=region or None,
        scenario=scenario or None,
        pricing=pricing if pricing in ("free", "paid") else None,
    )
    shown = service.present(console.session, found, viewer=console.principal)
    zones, regions, scenarios = _zones_regions(everything)
    return page(
        console,
        "catalogue.html",
        title="Catalogue",
        products=shown,
        filters={"q": q, "zone": zone, "region": region, "scenario": scenario, "pricing": pricing},
        zones=zones,
        regions=regions,
        scenarios=scenarios,
        filtered=any((q, zone, region, scenario, pricing)),
    )


@router.get("/products/{slug}")
def product_page(slug: str, console: ConsoleDep) -> Response:
    """One product: documentation, tables and column roles, the policy in plain words, plans, lineage, quality."""
    if console.principal is None:
        product = service.public_product(console.session, slug)
    else:
        product = service.visible_product(console.session, console.principal, slug)
    shown = service.present(console.session, [product], detail=True, viewer=console.principal)[0]
    return page(
        console,
        "product.html",
        title=shown.title,
        crumbs=(("Catalogue", "/"), (shown.slug, None)),
        product=shown,
        policy=shown.policy or {},
    )
