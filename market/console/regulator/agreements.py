"""The regulator's agreements: each agreement's terms, this month's use and privacy budget; revoking one with a
reason after a confirmation that shows what it affects; and the privacy budgets of DP products (per agreement,
and each version's cap across agreements), downloadable as CSV like the dashboard's figures."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from market.accounts.models import Role
from market.console.access import privacy_view
from market.console.regulator.dashboard import _cell
from market.console.web import Console, ConsoleDep, check_csrf, page, redirect
from market.errors import MarketError, Unprocessable
from metering import agreements
from metering.models import AgreementStatus

router = APIRouter(prefix="/console/regulator", include_in_schema=False, dependencies=[Depends(check_csrf)])

BASE = "/console/regulator/agreements"
BUDGETS = "/console/regulator/privacy-budgets"
STATES = tuple(s.value for s in AgreementStatus)


@router.get("/agreements")
def agreements_page(console: ConsoleDep, product: str = "", status: str = "") -> Response:
    """Every agreement, newest first, optionally of one product or in one state, with its privacy budget."""
    console.user.require(Role.REGULATOR)
    found = agreements.visible_agreements(console.session, console.user)
    shown = agreements.present(console.session, found)
    wanted = [
        a
        for a in shown
        if (not product or a.product == product.strip()) and (status not in STATES or a.status == status)
    ]
    wanted.sort(key=lambda a: (a.created_at, a.id), reverse=True)
    return page(
        console,
        "regulator/agreements.html",
        title="Agreements",
        crumbs=(("Agreements", None),),
        agreements=wanted,
        values={"product": product[:100], "status": status if status in STATES else ""},
        states=STATES,
        privacy=privacy_view,
    )


def _agreement_page(
    console: Console, agreement_id: str, *, confirming: bool, error: str = "", status: int = 200
) -> Response:
    console.user.require(Role.REGULATOR)
    agreement = agreements.revocable(console.session, console.user, agreement_id[:40])
    shown = agreements.present(console.session, [agreement])[0]
    return page(
        console,
        "regulator/agreement.html",
        title="Agreement",
        crumbs=(("Agreements", BASE), (shown.id, None)),
        agreement=shown,
        standing=agreements.standing(console.session, agreement),
        budget=privacy_view(shown),
        confirming=confirming and shown.status == AgreementStatus.ACTIVE.value,
        error=error,
        status_code=status,
    )


@router.get("/agreements/{agreement_id}")
def agreement_page(agreement_id: str, console: ConsoleDep) -> Response:
    """One agreement: terms, validity, this month's use, the privacy budget, and its revocation if revoked."""
    return _agreement_page(console, agreement_id, confirming=False)


@router.get("/agreements/{agreement_id}/revoke")
def revoke_confirmation(agreement_id: str, console: ConsoleDep) -> Response:
    """What revoking affects (the buyer, the product, this month's use, the budget left), and the reason form."""
    return _agreement_page(console, agreement_id, confirming=True)


@router.post("/agreements/{agreement_id}/revoke")
def revoke(agreement_id: str, console: ConsoleDep, reason: Annotated[str, Form(max_length=5_000)] = "") -> Response:
    """Revoke now, with the reason (recorded on the agreement; the buyer is notified)."""
    try:
        if not reason.strip():
            raise Unprocessable("console_reason_required")
        agreements.revoke(console.session, console.user, agreement_id[:40], reason)
    except MarketError as error:
        if error.status_code in (403, 404):
            raise
        console.session.rollback()
        return _agreement_page(
            console, agreement_id, confirming=True, error=console.message(error), status=error.status_code
        )
    return redirect(console, f"{BASE}/{agreement_id[:40]}?revoked=1")


@router.get("/privacy-budgets")
def budgets_page(console: ConsoleDep) -> Response:
    """DP budgets: per agreement (budget, spent, left) and per product version (the cap across agreements)."""
    rows, caps = agreements.privacy_overview(console.session, console.user)
    return page(
        console,
        "regulator/privacy_budgets.html",
        title="Privacy budgets",
        crumbs=(("Audit log", "/console/regulator/audit"), ("Privacy budgets", None)),
        rows=rows,
        caps=caps,
    )


@router.get("/privacy-budgets.csv")
def budgets_csv(console: ConsoleDep, figure: str = "agreements") -> Response:
    """The budgets as CSV: `agreements` (one row per agreement) or `versions` (each version's cap)."""
    if figure not in ("agreements", "versions"):
        raise Unprocessable("console_unknown_figure", figure=figure[:20], figures="agreements, versions")
    rows, caps = agreements.privacy_overview(console.session, console.user)
    table: list[list[object]]
    if figure == "agreements":
        table = [["agreement_id", "product", "version", "buyer", "purpose", "status", "delta"]]
        table[0] += ["budget_epsilon", "spent_epsilon", "left_epsilon", "capped_by_version"]
        table += [
            [
                r.agreement.id,
                r.agreement.product,
                r.agreement.product_version_number,
                r.agreement.buyer,
                r.agreement.purpose,
                r.agreement.status,
                r.delta,
                r.epsilon,
                r.spent,
                r.left,
                str(r.capped_by_version).lower(),
            ]
            for r in rows
        ]
    else:
        table = [["product", "version", "product_version_id", "agreements", "delta", "cap_epsilon"]]
        table[0] += ["spent_epsilon", "left_epsilon"]
        table += [
            [c.product, c.version, c.product_version_id, c.agreements, c.delta, c.cap, c.spent, c.left] for c in caps
        ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in table:
        writer.writerow([_cell(v) for v in row])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="privacy-budgets-{figure}.csv"',
            "Cache-Control": "no-store",
        },
    )
