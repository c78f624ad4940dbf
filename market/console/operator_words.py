"""Words the operator's pages translate from data or pass as titles (`{{ _(title) }}`, `{{ _(status) }}`),
marked here so Babel extracts them (see market/console/vocabulary.py)."""

from __future__ import annotations

from market.console.vocabulary import N_

TITLES = (
    N_("My products"),
    N_("New product"),
    N_("Upload and build"),
    N_("Version"),
    N_("Access requests"),
    N_("Usage and revenue"),
)
PRODUCT_STATES = (N_("submitted"), N_("returned"), N_("delisted"), N_("in_review"), N_("superseded"))
RECIPE_ACTIONS = (
    N_("keep"),
    N_("drop"),
    N_("pseudonymise"),
    N_("bin"),
    N_("truncate_date"),
    N_("prefix"),
    N_("mask"),
)
PLAN_KINDS = (N_("commercial"), N_("public_interest"))
FINDING_KINDS = (
    N_("id_card_number"),
    N_("phone_number"),
    N_("email"),
    N_("personal_name"),
    N_("identifier_name"),
    N_("k_anonymity"),
)
