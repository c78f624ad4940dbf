"""The regulator's console pages (数据管理机构): dashboard, authorisations, resource registry, product reviews,
public-interest access requests and the audit log. Each module's routes call the same services as the API."""

from __future__ import annotations

from market.console.regulator import (
    agreements,
    audit,
    dashboard,
    disclosures,
    grants,
    notices,
    registry,
    requests,
    revenue,
    reviews,
    shares,
    vocabulary,
)

ROUTERS = (
    dashboard.router,
    grants.router,
    registry.router,
    notices.router,
    reviews.router,
    requests.router,
    revenue.router,
    disclosures.router,
    audit.router,
    agreements.router,  # con-reg2: agreements, revocation and privacy budgets
    shares.router,  # con-reg2: revenue shares (regulator and finance)
)

__all__ = ["ROUTERS", "vocabulary"]
