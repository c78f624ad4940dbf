"""The upkeep step for privacy budgets near exhaustion (issue 16; docs/compliance.md "The upkeep job").

An agreement's lifetime budget (DP mode, docs/privacy.md) at 80% spent, and again when exhausted,
notifies the buyer's users, once per threshold (dedupe key `privacy-budget:<agreement>:<threshold>`).
A product version's cap across all agreements at the same thresholds notifies the regulators and the
product's operator (`privacy-cap:<version>:<threshold>`). "Exhausted" (100) is when what is left is
less than the cheapest query the policy allows (its `min_query_epsilon`): no new query fits any more,
though reservations in whole nano-rho rarely spend the last nano-unit.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Role, User
from market.notifications import service as notifications
from metering.models import Agreement, AgreementStatus, PrivacyBudget
from products.models import Product, ProductVersion
from sandbox import dp
from sandbox.policy import DifferentialPrivacy, ProtectionPolicy

WARN_SHARE = (4, 5)
"""The first threshold: 80% of the budget spent (spent * 5 >= budget * 4, in whole nano-rho)."""


def _params(policy: dict[str, Any]) -> DifferentialPrivacy | None:
    parsed = ProtectionPolicy.model_validate(policy)
    return parsed.dp if parsed.is_dp else None


def thresholds(budget: PrivacyBudget, params: DifferentialPrivacy) -> list[int]:
    """The thresholds (80, 100) a budget has reached."""
    reached = []
    if budget.spent_nano * WARN_SHARE[1] >= budget.budget_nano * WARN_SHARE[0]:
        reached.append(80)
    cheapest = dp.rho_nano(dp.rho_of(dp.decimal_of(params.min_query_epsilon), params.delta))
    if budget.budget_nano - budget.spent_nano < cheapest:
        reached.append(100)
    return reached


def _notify(
    session: Session,
    users: list[User],
    kind: str,
    key: str,
    budget: PrivacyBudget,
    params: DifferentialPrivacy,
    data: dict[str, Any],
) -> int:
    """One notice per threshold the budget reached, to `users`, under `<key>:<threshold>`."""
    sent = 0
    for threshold in thresholds(budget, params):
        spent = dp.epsilon_of(Decimal(budget.spent_nano) / dp.NANO, params.delta)
        total = dp.epsilon_of(Decimal(budget.budget_nano) / dp.NANO, params.delta)
        facts = {"threshold": threshold, "spent": f"{spent:.3f}", "budget": f"{total:.3f}"}
        sent += notifications.notify(session, users, kind, f"{key}:{threshold}", {**data, **facts})
    return sent


def watch(session: Session, now: datetime) -> dict[str, int]:
    """Notify once per threshold reached; returns how many notifications were raised."""
    counts = {"privacy_budget_notices": 0, "privacy_cap_notices": 0}
    near = session.scalars(
        select(PrivacyBudget)
        .where(PrivacyBudget.spent_nano * WARN_SHARE[1] >= PrivacyBudget.budget_nano * WARN_SHARE[0])
        .order_by(PrivacyBudget.id)
    ).all()
    for budget in near:
        if budget.agreement_id is not None:
            agreement = session.get(Agreement, budget.agreement_id)
            params = _params(agreement.policy) if agreement is not None else None
            if agreement is None or params is None or agreement.effective_status(now) != AgreementStatus.ACTIVE:
                continue
            product = session.get(Product, agreement.product_id)
            counts["privacy_budget_notices"] += _notify(
                session,
                notifications.users_of_orgs(session, [agreement.buyer_org_id]),
                "privacy_budget",
                f"privacy-budget:{agreement.id}",
                budget,
                params,
                {"agreement": agreement.id, "product": product.slug if product else ""},
            )
            continue
        version = session.get(ProductVersion, budget.product_version_id)
        params = _params(version.policy) if version is not None else None
        if version is None or params is None:
            continue
        product = session.get(Product, version.product_id)
        watchers = [
            *notifications.users_with_roles(session, Role.REGULATOR),
            *notifications.users_of_orgs(session, [product.operator_org_id] if product else []),
        ]
        counts["privacy_cap_notices"] += _notify(
            session,
            watchers,
            "privacy_cap",
            f"privacy-cap:{version.id}",
            budget,
            params,
            {"product": product.slug if product else "", "version": version.number},
        )
    return counts
