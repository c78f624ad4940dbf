"""Annual disclosure (信息披露): the year's deadline and what is missing, the reports generated so far, and the
regulator generating drafts (its own disclosure, or an operator's disclosure or operating report) and publishing
its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response

from market.accounts import service as accounts
from market.accounts.models import OrgKind
from market.clock import utcnow
from market.compliance import disclosure, report_document
from market.console.web import ConsoleDep, check_csrf, page, redirect
from market.errors import Unprocessable
from market.i18n import N_

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/disclosures"
KINDS = (N_("regulator_disclosure"), N_("operator_disclosure"), N_("operating_report"))


def _year(text: str) -> int:
    if not text:
        return utcnow().year - 1
    if not text.isdigit() or not 2000 <= int(text) <= 2100:
        raise Unprocessable("console_invalid_year", value=text[:10])
    return int(text)


@router.get("/disclosures")
def disclosures_page(console: ConsoleDep, year: str = "") -> Response:
    """The year's deadline, published and missing reports, every report generated, and the generate form."""
    chosen = _year(year[:10])
    due = disclosure.status(console.session, console.user, chosen)
    reports = disclosure.visible(console.session, console.user, chosen)
    names = {o.id: o.name for o in accounts.list_orgs(console.session, console.user)}
    operators = [(o, n) for o, n in names.items() if o in _operator_ids(console)]
    return page(
        console,
        "regulator/disclosures.html",
        title="Disclosure",
        crumbs=(("Disclosure", None),),
        year=chosen,
        due=due,
        reports=sorted(reports, key=lambda r: (r.kind, names.get(r.org_id, ""))),
        names=names,
        operators=operators,
        kinds=KINDS,
    )


def _operator_ids(console: ConsoleDep) -> set[str]:
    return {o.id for o in accounts.list_orgs(console.session, console.user) if o.kind == OrgKind.OPERATOR.value}


@router.post("/disclosures")
def generate(
    console: ConsoleDep,
    year: Annotated[str, Form(max_length=10)],
    kind: Annotated[str, Form(max_length=40)],
    operator: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Generate (or regenerate) a draft for the year."""
    chosen = _year(year)
    if kind not in KINDS:
        raise Unprocessable("console_unknown_action", action=kind[:40])
    disclosure.generate(console.session, console.user, chosen, kind, operator or None)
    return redirect(console, f"{BASE}?year={chosen}&generated=1")


@router.get("/disclosures/{report_id}")
def report(report_id: str, console: ConsoleDep) -> Response:
    """A report as its HTML page, draft or published (the same rendering as the public page)."""
    found = disclosure.get_visible(console.session, console.user, report_id[:40])
    document = report_document.report_document(found, console.locale)
    return HTMLResponse(report_document.html(document), headers={"Cache-Control": "no-store"})


@router.post("/disclosures/{report_id}/publish")
def publish(report_id: str, console: ConsoleDep) -> Response:
    """Publish a draft: frozen under its content hash and shown on the public disclosure page."""
    published = disclosure.publish(console.session, console.user, report_id[:40])
    return redirect(console, f"{BASE}?year={published.year}&published=1")
