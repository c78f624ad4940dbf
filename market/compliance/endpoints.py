"""HTTP routes of the public-data rules; `public_router` needs no sign-in."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from market import i18n
from market.compliance import allowed_revenue, disclosure, fee_standards, pages, registration, report_document
from market.compliance.models import DisclosureReport
from market.compliance.schemas import (
    AllowedRevenueIn,
    AllowedRevenueOut,
    CarryForwardOut,
    DisclosureIn,
    DisclosureOut,
    DisclosureStatusOut,
    FeeStandardIn,
    FeeStandardOut,
    ObjectionIn,
    ObjectionOut,
    ObjectionResolveIn,
    PublicRegistrationOut,
    RegistrationIn,
    RegistrationOut,
)
from market.deps import PrincipalDep, SessionDep, SettingsDep
from market.errors import BadRequest
from market.pagination import CursorQuery, LimitQuery, Page, page_of
from products import service as products

Year = Annotated[int, Path(ge=2000, le=2100)]
YearQuery = Annotated[int | None, Query(ge=2000, le=2100)]
Format = Annotated[str, Query(pattern=r"^(json|html)$")]
ReportFormat = Annotated[str, Query(pattern=r"^(json|html|pdf)$")]
Lang = Annotated[str | None, Query(max_length=20)]

HTML_TOO: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {"schema": {"type": "string"}}}}}
"""Routes that answer JSON, or HTML with `?format=html`, document both."""
DOCUMENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        }
    }
}
"""Disclosure reports answer JSON, HTML or PDF."""


def _rendered(report: DisclosureReport, format: str, lang: str | None) -> Response:
    """A report as an HTML page or a PDF download, in `?lang=` (zh-CN or en) or the caller's language."""
    locale = i18n.normalize(lang) or i18n.current_locale()
    document = report_document.report_document(report, locale)
    headers = {"Content-Language": i18n.html_lang(locale)}
    if format == "pdf":
        name = f"{report.year}-{report.kind}-{report.id}-{i18n.html_lang(locale)}"
        headers["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return Response(report_document.pdf(document), media_type="application/pdf", headers=headers)
    return HTMLResponse(report_document.html(document), headers=headers)


router = APIRouter(tags=["compliance"])
public_router = APIRouter(tags=["public disclosure"])


# -- allowed revenue ------------------------------------------------------------------------------


@router.get("/v1/allowed-revenue", response_model=Page[AllowedRevenueOut])
def list_allowed_revenue(
    session: SessionDep,
    principal: PrincipalDep,
    year: YearQuery = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[AllowedRevenueOut]:
    """Allowed revenue, revenue received and headroom: all for the regulator and finance, its own for an
    operator. Oldest year first (`year`, `id`)."""
    found = allowed_revenue.visible(session, principal, year)
    rows, next_cursor = page_of(found, key=lambda r: (r.year, r.id), limit=limit, cursor=cursor)
    return Page(items=[allowed_revenue.present(session, row) for row in rows], next_cursor=next_cursor)


@router.get("/v1/allowed-revenue/{operator}/{year}", response_model=AllowedRevenueOut)
def get_allowed_revenue(operator: str, year: Year, session: SessionDep, principal: PrincipalDep) -> AllowedRevenueOut:
    """One operator's allowed revenue for a year, with the derived figure, revenue received and headroom."""
    return allowed_revenue.present(session, allowed_revenue.get_visible(session, principal, operator, year))


@router.put("/v1/allowed-revenue/{operator}/{year}", response_model=AllowedRevenueOut)
def put_allowed_revenue(
    operator: str, year: Year, body: AllowedRevenueIn, session: SessionDep, principal: PrincipalDep
) -> AllowedRevenueOut:
    """The regulator records permitted costs by category, subsidies, permitted profit and taxes."""
    return allowed_revenue.present(session, allowed_revenue.record(session, principal, operator, year, body))


@router.post("/v1/allowed-revenue/{operator}/{year}/close", response_model=CarryForwardOut)
def close_allowed_revenue(operator: str, year: Year, session: SessionDep, principal: PrincipalDep) -> CarryForwardOut:
    """Close an ended year: its excess (or 0) is recorded as a deduction from the next year's allowed revenue."""
    return CarryForwardOut.model_validate(allowed_revenue.close_for(session, principal, operator, year))


# -- fee standards --------------------------------------------------------------------------------


@router.put("/v1/products/{slug}/fee-standard", response_model=FeeStandardOut)
def put_fee_standard(slug: str, body: FeeStandardIn, session: SessionDep, principal: PrincipalDep) -> FeeStandardOut:
    """The regulator sets a product's upper fee standard at review, inside the zone's cap."""
    standard = fee_standards.set_standard(session, principal, slug, body)
    return fee_standards.present(session, products.visible_product(session, principal, slug), standard)


@router.get("/v1/products/{slug}/fees")
def product_fees(slug: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """The zone's fee cap, the product's upper fee standard and the actual prices of its plans."""
    return fee_standards.fee_view(session, principal, slug)


# -- registrations --------------------------------------------------------------------------------


@router.post("/v1/products/{slug}/registration", response_model=RegistrationOut, status_code=201)
def register_product(
    slug: str, body: RegistrationIn, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> RegistrationOut:
    """The regulator registers a product (where required); its public notice starts."""
    found = registration.register_product(session, settings, principal, slug, body.registration_code)
    return registration.present(session, found, principal)


RegistrationStatus = Annotated[str | None, Query(pattern=r"^(notice|confirmed|withdrawn)$")]


def _registrations_page(
    session: SessionDep, status: str | None, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    found = registration.listing(session, status=status)
    return page_of(found, key=lambda r: (r.created_at, r.id), limit=limit, cursor=cursor, descending=True)


@router.get("/v1/registrations", response_model=Page[RegistrationOut])
def list_registrations(
    session: SessionDep,
    principal: PrincipalDep,
    status: RegistrationStatus = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[RegistrationOut]:
    """Registrations with their notice period and the objections the caller may read; newest first
    (`created_at`, `id`)."""
    rows, next_cursor = _registrations_page(session, status, limit, cursor)
    return Page(items=[registration.present(session, r, principal) for r in rows], next_cursor=next_cursor)


@router.get("/v1/registrations/{registration_id}", response_model=RegistrationOut)
def get_registration(registration_id: str, session: SessionDep, principal: PrincipalDep) -> RegistrationOut:
    """One registration, its notice period and objections."""
    return registration.present(session, registration.get(session, registration_id), principal)


@router.post("/v1/registrations/{registration_id}/objections", response_model=ObjectionOut, status_code=201)
def file_objection(
    registration_id: str, body: ObjectionIn, session: SessionDep, principal: PrincipalDep
) -> ObjectionOut:
    """Any signed-in organisation objects to a registration during its public notice."""
    return ObjectionOut.model_validate(registration.object_to(session, principal, registration_id, body.reason))


@router.post("/v1/registrations/{registration_id}/objections/{objection_id}/resolve", response_model=ObjectionOut)
def resolve_objection(
    registration_id: str, objection_id: str, body: ObjectionResolveIn, session: SessionDep, principal: PrincipalDep
) -> ObjectionOut:
    """The regulator dismisses an objection, or upholds it (the registration is withdrawn)."""
    resolved = registration.resolve(session, principal, registration_id, objection_id, body.decision, body.resolution)
    return ObjectionOut.model_validate(resolved)


@router.post("/v1/registrations/{registration_id}/confirm", response_model=RegistrationOut)
def confirm_registration(registration_id: str, session: SessionDep, principal: PrincipalDep) -> RegistrationOut:
    """The regulator confirms a registration whose notice ended with no open objection (the upkeep job does it too)."""
    confirmed = registration.confirm_by_regulator(session, principal, registration_id)
    return registration.present(session, confirmed, principal)


# -- disclosure -----------------------------------------------------------------------------------


@router.get("/v1/disclosures", response_model=Page[DisclosureOut])
def list_disclosures(
    session: SessionDep,
    principal: PrincipalDep,
    year: YearQuery = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[DisclosureOut]:
    """Published reports, and the caller's own drafts (the regulator sees every draft); newest first
    (`generated_at`, `id`)."""
    found = disclosure.visible(session, principal, year)
    rows, next_cursor = page_of(
        found, key=lambda r: (r.generated_at, r.id), limit=limit, cursor=cursor, descending=True
    )
    return Page(items=[DisclosureOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/v1/disclosures", response_model=DisclosureOut, status_code=201)
def generate_disclosure(body: DisclosureIn, session: SessionDep, principal: PrincipalDep) -> DisclosureOut:
    """Generate (or regenerate) the draft of a year's disclosure or operating report."""
    return DisclosureOut.model_validate(disclosure.generate(session, principal, body.year, body.kind, body.operator))


@router.get("/v1/disclosures/status", response_model=DisclosureStatusOut)
def disclosure_status(
    session: SessionDep, principal: PrincipalDep, year: Annotated[int, Query(ge=2000, le=2100)]
) -> DisclosureStatusOut:
    """The 31 March deadline for a year's reports, what is published and what is still missing."""
    return disclosure.status(session, principal, year)


@router.get("/v1/disclosures/{report_id}", response_model=DisclosureOut, responses=DOCUMENTS)
def get_disclosure(
    report_id: str, session: SessionDep, principal: PrincipalDep, format: ReportFormat = "json", lang: Lang = None
) -> DisclosureOut | Response:
    """One report as JSON, or as a document: `?format=html` or `pdf`, in `?lang=` (zh-CN or en)."""
    report = disclosure.get_visible(session, principal, report_id)
    if format != "json":
        return _rendered(report, format, lang)
    return DisclosureOut.model_validate(report)


@router.post("/v1/disclosures/{report_id}/publish", response_model=DisclosureOut)
def publish_disclosure(report_id: str, session: SessionDep, principal: PrincipalDep) -> DisclosureOut:
    """Publish a draft: frozen under its content hash and shown on the public disclosure page."""
    return DisclosureOut.model_validate(disclosure.publish(session, principal, report_id))


# -- public, no sign-in ---------------------------------------------------------------------------


@public_router.get("/disclosures", response_class=HTMLResponse)
def disclosure_index(session: SessionDep, lang: Lang = None) -> HTMLResponse:
    """The public disclosure page: every published report, with its HTML, PDF (zh-CN, en) and JSON; in `?lang=`
    or the caller's language."""
    locale = i18n.normalize(lang) or i18n.current_locale()
    return HTMLResponse(pages.index_page(disclosure.published(session), locale))


@public_router.get("/disclosures/{report_id}", response_model=DisclosureOut, responses=DOCUMENTS)
def public_disclosure(
    report_id: str, session: SessionDep, format: ReportFormat = "html", lang: Lang = None
) -> DisclosureOut | Response:
    """A published report as HTML, `?format=pdf` or `?format=json` (with its content hash), in `?lang=`."""
    report = disclosure.get_published(session, report_id)
    if format == "json":
        return DisclosureOut.model_validate(report)
    return _rendered(report, format, lang)


@public_router.get("/registrations", response_model=Page[PublicRegistrationOut], responses=HTML_TOO)
def public_notices(
    session: SessionDep,
    status: RegistrationStatus = "notice",
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    format: Format = "html",
) -> Page[PublicRegistrationOut] | HTMLResponse:
    """The public notice board (公示): registrations in their notice period (or `?status=`), no sign-in;
    newest first (`created_at`, `id`)."""
    rows, next_cursor = _registrations_page(session, status, limit, cursor)
    found = [registration.present_public(session, r) for r in rows]
    if format == "json":
        return Page(items=found, next_cursor=next_cursor)
    return HTMLResponse(pages.notices_page(found))


@public_router.get("/registrations/{code}", response_model=PublicRegistrationOut, responses=HTML_TOO)
def public_registration(
    code: str, session: SessionDep, format: Format = "html"
) -> PublicRegistrationOut | HTMLResponse:
    """Look a registration up by its registration code or lookup code, without signing in."""
    if len(code) > 64:
        raise BadRequest("registration_code_too_long")
    found: PublicRegistrationOut = registration.present_public(session, registration.by_code(session, code))
    if format == "json":
        return found
    return HTMLResponse(pages.registration_page(found))
