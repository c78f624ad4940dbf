"""An agreement as an ODRL 2.2 policy in JSON-LD (https://www.w3.org/TR/odrl-model/).

The agreement is an `odrl:Agreement` whose single permission lets the buyer (assignee) `use` the
product version (target) granted by the operator (assigner), under constraints:
- `purpose` equals the agreement's purpose category, and `market:scenario` its scenario;
- `spatial` equals the product's region;
- `dateTime` from `valid_from` (inclusive) to `valid_until` (exclusive);
- `count` of queries per month, when a query quota applies (and `market:rowsScanned` /
  `market:bytesScanned` for volume quotas);
- `market:privacyEpsilon` at most the agreement's lifetime privacy budget, with its `market:delta`,
  and `market:privacyDelta` at most its total delta (selections through noisy thresholds included),
  on products in differential-privacy mode (docs/privacy.md).
Paid plans carry `compensate` duties, one per price component, each refined by `payAmount` in the
plan's currency (major units, exact decimals), with `market:per` saying what it is paid for.
A prohibition states the aggregate-only rule: no record-level access (`market:readRecord`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from market.money import MINOR_UNITS
from metering.models import Agreement, Purpose
from metering.pricing import PlanTerms


def privacy_budget(policy: dict[str, Any]) -> dict[str, Any] | None:
    """The DP budget an agreement's policy snapshot states (metering.privacy), or None."""
    from metering.privacy import budget_statement

    return budget_statement(policy)


MARKET_NS = "https://public-data-market.example/ns/odrl#"
ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
CURRENCY_IRI = {
    "CNY": "http://dbpedia.org/resource/Renminbi",
    "USD": "http://dbpedia.org/resource/United_States_dollar",
}


def _major(minor: Decimal | int, currency: str) -> str:
    digits = MINOR_UNITS.get(currency, 2)
    value = Decimal(minor).scaleb(-digits)
    cents = value.quantize(Decimal(1).scaleb(-digits))
    # Exact: a per-GB rate may carry fractions of a minor unit, which must not be rounded away here.
    return str(cents if cents == value else value.normalize())


def _pay(amount_minor: Decimal | int, currency: str, per: str, **extra: Any) -> dict[str, Any]:
    refinement: dict[str, Any] = {
        "leftOperand": "payAmount",
        "operator": "eq",
        "rightOperand": {"@value": _major(amount_minor, currency), "@type": "xsd:decimal"},
        "unit": CURRENCY_IRI.get(currency, f"urn:iso:std:iso:4217:{currency}"),
    }
    duty: dict[str, Any] = {
        "action": [{"rdf:value": {"@id": "odrl:compensate"}, "refinement": [refinement]}],
        "market:per": per,
    }
    duty.update(extra)
    return duty


def _datetime(value: Any) -> dict[str, str]:
    return {"@value": value.isoformat(), "@type": "xsd:dateTime"}


def _duties(agreement: Agreement, operator: str) -> list[dict[str, Any]]:
    if Purpose(agreement.purpose).is_public_interest:
        return []
    terms = PlanTerms.from_snapshot(agreement.plan)
    currency = terms.currency
    duties = []
    if terms.monthly_fee_minor:
        duties.append(_pay(terms.monthly_fee_minor, currency, "month"))
    if terms.tiers:
        for index, tier in enumerate(terms.tiers, start=1):
            bounds = {"market:tier": index, "market:upToQuery": tier.up_to}
            if tier.per_query_minor:
                duties.append(_pay(tier.per_query_minor, currency, "query", **bounds))
            if tier.per_gb_minor:
                duties.append(_pay(tier.per_gb_minor, currency, "GB scanned", **bounds))
    else:
        if terms.per_query_minor:
            duties.append(_pay(terms.per_query_minor, currency, "query"))
        if terms.per_gb_minor:
            duties.append(_pay(terms.per_gb_minor, currency, "GB scanned"))
    for duty in duties:
        duty["compensatedParty"] = operator
        if terms.trial_queries:
            duty["market:freeQueriesPerMonth"] = terms.trial_queries
        if terms.monthly_cap_minor is not None:
            duty["market:monthlyMaximum"] = {
                "@value": _major(terms.monthly_cap_minor, currency),
                "@type": "xsd:decimal",
            }
    return duties


def export(agreement: Agreement, *, product_slug: str, operator_org_id: str, status: str) -> dict[str, Any]:
    """The agreement as an ODRL JSON-LD document."""
    assigner = f"urn:market:org:{operator_org_id}"
    assignee = f"urn:market:org:{agreement.buyer_org_id}"
    target = (
        f"urn:market:product:{product_slug}:version:{agreement.product_version_number or agreement.product_version_id}"
    )
    constraints: list[dict[str, Any]] = [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": f"market:{agreement.purpose}"},
        {"leftOperand": "market:scenario", "operator": "eq", "rightOperand": agreement.scenario},
        {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": _datetime(agreement.valid_from)},
        {"leftOperand": "dateTime", "operator": "lt", "rightOperand": _datetime(agreement.valid_until)},
    ]
    if agreement.region:
        constraints.append({"leftOperand": "spatial", "operator": "eq", "rightOperand": agreement.region})
    if agreement.monthly_query_quota is not None:
        constraints.append(
            {
                "leftOperand": "count",
                "operator": "lteq",
                "rightOperand": agreement.monthly_query_quota,
                "unit": "market:queriesPerMonth",
            }
        )
    if agreement.monthly_row_quota is not None:
        constraints.append(
            {
                "leftOperand": "market:rowsScanned",
                "operator": "lteq",
                "rightOperand": agreement.monthly_row_quota,
                "unit": "market:perMonth",
            }
        )
    if agreement.monthly_byte_quota is not None:
        constraints.append(
            {
                "leftOperand": "market:bytesScanned",
                "operator": "lteq",
                "rightOperand": agreement.monthly_byte_quota,
                "unit": "market:perMonth",
            }
        )
    budget = privacy_budget(agreement.policy)
    if budget is not None:
        constraints.append(
            {
                "leftOperand": "market:privacyEpsilon",
                "operator": "lteq",
                "rightOperand": budget["epsilon"],
                "market:delta": budget["delta"],
                "unit": "market:agreementLifetime",
            }
        )
        if budget.get("total_delta") is not None:
            constraints.append(
                {
                    "leftOperand": "market:privacyDelta",
                    "operator": "lteq",
                    "rightOperand": budget["total_delta"],
                    "unit": "market:agreementLifetime",
                }
            )
    permission: dict[str, Any] = {
        "target": target,
        "assigner": assigner,
        "assignee": assignee,
        "action": "use",
        "constraint": constraints,
    }
    duties = _duties(agreement, assigner)
    if duties:
        permission["duty"] = duties
    return {
        "@context": [ODRL_CONTEXT, {"market": MARKET_NS, "xsd": "http://www.w3.org/2001/XMLSchema#"}],
        "@type": "Agreement",
        "uid": f"urn:market:agreement:{agreement.id}",
        "profile": MARKET_NS.rstrip("#"),
        "assigner": assigner,
        "assignee": assignee,
        "target": target,
        "market:status": status,
        "market:minGroupSize": agreement.policy.get("min_group_size"),
        "permission": [permission],
        "prohibition": [{"target": target, "assigner": assigner, "assignee": assignee, "action": "market:readRecord"}],
    }
