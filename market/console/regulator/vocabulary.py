"""Words the regulator's and source departments' templates translate from data, marked for Babel (see
market/console/vocabulary.py)."""

from __future__ import annotations

from market.console.vocabulary import N_
from market.i18n import NP_

STATES = (
    N_("submitted"),
    N_("returned"),
    N_("delisted"),
    N_("suspended"),
    N_("registered"),
    N_("notice"),
    N_("confirmed"),
    N_("withdrawn"),
    N_("open"),
    N_("resolved"),
    N_("approaching"),
    N_("exceeded"),
    N_("overdue"),
    N_("in_review"),
    N_("superseded"),
)
DIFF_AREAS = (N_("tables"), N_("policy"), N_("recipe"))
REVIEW_KINDS = (N_("product_review"), N_("access_request"))
MORE_STATES = (N_("closed"), N_("published"))
SUBJECTS = (N_("resource"), N_("product"), N_("dismissed"), N_("upheld"))
PAGES = (
    N_("Dashboard"),
    N_("Supervision dashboard"),
    N_("Authorisations"),
    N_("New authorisation"),
    N_("Authorisation"),
    N_("Resources"),
    N_("Resource registry"),
    N_("Resource"),
    N_("Registrations"),
    N_("Reviews"),
    N_("Product reviews"),
    N_("Product review"),
    N_("Public-interest requests"),
    N_("Public-interest access requests"),
    N_("Access request"),
    N_("Allowed revenue"),
    N_("Disclosure"),
    N_("Audit log"),
    N_("My resources"),
    N_("Register a resource"),
    N_("Answer the comments"),
    N_("Statements"),
    N_("Products and statements"),
)
"""Navigation labels, page titles and crumbs, which the routes pass as English text to `_()` in base.html."""
CATALOGUE_FIELDS = (N_("fields"), N_("update_frequency"), N_("time_span"), N_("contact"), N_("legal_basis"))
CLASSIFICATIONS = (N_("general"), N_("important"), N_("core"))
MORE_PAGES = (
    N_("Agreements"),
    N_("Agreement"),
    N_("Privacy budgets"),
    N_("Revenue shares"),
    N_("Public notices"),
    N_("Catalogue"),
    N_("Query"),
    N_("Usage"),
)
"""con-reg2's navigation labels and page titles (and three buyer labels the catalogue lacked)."""
SYSTEM_ROLE = (NP_("role", "system"),)
PARTIES = (NP_("revenue party", "operator"), NP_("revenue party", "platform"), NP_("revenue party", "source"))
