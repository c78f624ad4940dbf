"""Words the templates translate from data (`{{ _(status) }}`), marked here so Babel extracts them.

`N_` is one of Babel's default extraction keywords: it marks a string without translating it.
"""

from __future__ import annotations


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
