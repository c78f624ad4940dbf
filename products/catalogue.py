"""The catalogue buyers see: listed products only, searchable, and exportable as DCAT JSON-LD for harvesters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from market.accounts.models import Organisation
from market.settings import Settings
from products import repository
from products.governance import authorisations
from products.governance import repository as governance_repo
from products.models import PlanKind, Product, ProductVersion


def served(session: Session, products: Sequence[Product]) -> list[Product]:
    """Listed products whose operator still holds an authorisation in force for them (grants can expire)."""
    return [
        p
        for p in products
        if authorisations.covering(session, p.operator_org_id, p.zone, p.region, p.scenarios or ()) is not None
    ]


def search(
    session: Session,
    products: Sequence[Product],
    *,
    text: str | None = None,
    zone: str | None = None,
    region: str | None = None,
    scenario: str | None = None,
    pricing: str | None = None,
) -> list[Product]:
    """Filter products by words in slug/title/description/documentation, zone, region (and sub-regions),
    scenario, and whether they offer a free (public-interest) or paid (commercial) plan."""
    plans = repository.plans_of(session, [p.id for p in products])
    words = [w.lower() for w in (text or "").split() if w]
    out = []
    for product in products:
        haystack = " ".join([product.slug, product.title, product.description, product.documentation]).lower()
        if words and not all(w in haystack for w in words):
            continue
        if zone and product.zone != zone:
            continue
        if region and not authorisations.region_covers(region, product.region):
            continue
        if scenario and scenario not in (product.scenarios or []):
            continue
        kinds = {p.kind for p in plans[product.id]}
        if pricing == "free" and PlanKind.PUBLIC_INTEREST not in kinds:
            continue
        if pricing == "paid" and PlanKind.COMMERCIAL not in kinds:
            continue
        out.append(product)
    return out


def _money(minor: int | Any, currency: str) -> str:
    return f"{minor} minor units of {currency}"


def jsonld(session: Session, settings: Settings, base_url: str, products: Sequence[Product]) -> dict[str, Any]:
    """A DCAT-AP style catalogue: each product a dcat:Dataset served by the query API as a dcat:DataService."""
    plans = repository.plans_of(session, [p.id for p in products])
    lineage = governance_repo.lineage(session, [p.id for p in products])
    versions = repository.versions_by_id(session, [p.listed_version_id for p in products if p.listed_version_id])
    base = base_url.rstrip("/")
    service_id = f"{base}/v1/queries"
    datasets = []
    for product in products:
        operator = session.get(Organisation, product.operator_org_id)
        version: ProductVersion | None = versions.get(product.listed_version_id or "")
        datasets.append(
            {
                "@id": f"{base}/v1/products/{product.slug}",
                "@type": "dcat:Dataset",
                "dct:identifier": product.slug,
                "dct:title": product.title,
                "dct:description": product.description,
                "dct:publisher": {"@type": "foaf:Organization", "foaf:name": operator.name if operator else ""},
                "dct:spatial": product.region,
                "dcat:theme": product.zone,
                "dcat:keyword": [product.zone, *(product.scenarios or [])],
                "dct:modified": product.updated_at.isoformat(),
                "dcat:version": str(version.number) if version else None,
                "dct:source": [
                    {"@type": "dcat:Dataset", "dct:identifier": r.registration_code, "dct:title": r.title}
                    for r in lineage[product.id]
                ],
                "dct:accessRights": "restricted: aggregate queries only, under an approved agreement",
                "dcat:distribution": [
                    {
                        "@type": "dcat:Distribution",
                        "dct:title": f"Aggregate SQL access to {t['name']}",
                        "dcat:accessService": {"@id": service_id},
                        "dcat:accessURL": {"@id": service_id},
                        "dct:conformsTo": "SELECT with GROUP BY over dimensions; aggregates over measures",
                    }
                    for t in (version.tables if version else [])
                ],
                "odrl:hasPolicy": [
                    {
                        "@type": "odrl:Offer",
                        "dct:identifier": plan.code,
                        "dct:title": plan.title,
                        "dct:type": plan.kind,
                        "schema:price": {
                            "per_query": _money(plan.per_query_minor, plan.currency),
                            "per_gb_scanned": _money(plan.per_gb_minor, plan.currency),
                            "monthly_fee": _money(plan.monthly_fee_minor, plan.currency),
                        },
                    }
                    for plan in plans[product.id]
                ],
            }
        )
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "odrl": "http://www.w3.org/ns/odrl/2/",
            "schema": "http://schema.org/",
        },
        "@id": f"{base}/v1/catalogue.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": settings.platform_name,
        "dcat:service": {"@id": service_id, "@type": "dcat:DataService", "dcat:endpointURL": service_id},
        "dcat:dataset": datasets,
    }
