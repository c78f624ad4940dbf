"""Imports every bounded context's models so that one metadata describes the whole schema (for Alembic)."""

from billing import models as billing_models
from market.accounts import models as accounts_models
from market.compliance import models as compliance_models
from market.db import Base
from market.notifications import models as notification_models
from metering import models as metering_models
from products import models as products_models
from products.governance import models as governance_models
from products.pipeline import models as pipeline_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "billing_models",
    "compliance_models",
    "governance_models",
    "metadata",
    "metering_models",
    "notification_models",
    "pipeline_models",
    "products_models",
]
