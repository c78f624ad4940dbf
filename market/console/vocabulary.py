"""Words the templates translate from data, marked here so Babel extracts them.

`N_` is one of Babel's default extraction keywords: it marks a string without translating it. `NP_` marks
it with a context (msgctxt), for words whose translation depends on what they name: the `finance` role is
财务 but the `finance` zone is 金融; a `paid` invoice is 已付款 but a `paid` product is 付费. Templates show
them with `term("role", value)` (a context, falling back to the plain word) or `status(value, "invoice state")`.
The plain `N_` entries stay for pages that translate a data word without a context.
"""

from __future__ import annotations

from market.i18n import NP_


def N_(text: str) -> str:
    return text


ROLES = (N_("regulator"), N_("source"), N_("operator"), N_("buyer"), N_("finance"), N_("admin"))
PURPOSES = (N_("public_governance"), N_("public_welfare"), N_("industry"), N_("commercial"))
STATES = (
    N_("pending"),
    N_("approved"),
    N_("rejected"),
    N_("active"),
    N_("revoked"),
    N_("expired"),
    N_("draft"),
    N_("finalized"),
    N_("paid"),
    N_("void"),
    N_("uncollectible"),
    N_("listed"),
)
CHARGE_TYPES = (N_("free_public"), N_("trial"), N_("billable"), N_("cap_reached"), N_("rejected"))
COLUMN_ROLES = (N_("dimension"), N_("measure"), N_("privacy_unit"), N_("hidden"))
ZONES = (
    N_("transport"),
    N_("finance"),
    N_("credit"),
    N_("healthcare"),
    N_("education"),
    N_("culture_tourism"),
    N_("spatial"),
    N_("research"),
)

# -- the same words with their context ------------------------------------------------------------
ROLE_TERMS = (
    NP_("role", "regulator"),
    NP_("role", "source"),
    NP_("role", "operator"),
    NP_("role", "buyer"),
    NP_("role", "finance"),
    NP_("role", "admin"),
)
ZONE_TERMS = (
    NP_("zone", "transport"),
    NP_("zone", "finance"),
    NP_("zone", "credit"),
    NP_("zone", "healthcare"),
    NP_("zone", "education"),
    NP_("zone", "culture_tourism"),
    NP_("zone", "spatial"),
    NP_("zone", "research"),
)
PURPOSE_TERMS = (
    NP_("purpose", "public_governance"),
    NP_("purpose", "public_welfare"),
    NP_("purpose", "industry"),
    NP_("purpose", "commercial"),
)
PLAN_KIND_TERMS = (NP_("plan kind", "public_interest"), NP_("plan kind", "commercial"))
PRICE_TERMS = (NP_("price", "free"), NP_("price", "paid"))
INVOICE_STATE_TERMS = (
    NP_("invoice state", "draft"),
    NP_("invoice state", "finalized"),
    NP_("invoice state", "paid"),
    NP_("invoice state", "void"),
    NP_("invoice state", "uncollectible"),
)
REQUEST_STATE_TERMS = (
    NP_("request state", "pending"),
    NP_("request state", "approved"),
    NP_("request state", "rejected"),
)
AGREEMENT_STATE_TERMS = (
    NP_("agreement state", "active"),
    NP_("agreement state", "revoked"),
    NP_("agreement state", "expired"),
)
PAYMENT_STATE_TERMS = (
    NP_("payment state", "pending"),
    NP_("payment state", "succeeded"),
    NP_("payment state", "failed"),
)
CHARGE_TYPE_TERMS = (
    NP_("charge type", "free_public"),
    NP_("charge type", "trial"),
    NP_("charge type", "billable"),
    NP_("charge type", "cap_reached"),
    NP_("charge type", "rejected"),
)
COLUMN_ROLE_TERMS = (
    NP_("column role", "dimension"),
    NP_("column role", "measure"),
    NP_("column role", "privacy_unit"),
    NP_("column role", "hidden"),
)
AUTHORISATION_STATE_TERMS = (
    NP_("authorisation state", "active"),
    NP_("authorisation state", "suspended"),
    NP_("authorisation state", "revoked"),
    NP_("authorisation state", "expired"),
)
CLASSIFICATION_TERMS = (
    NP_("classification", "general"),
    NP_("classification", "important"),
    NP_("classification", "core"),
)
