"""HTTP routes for products: create, upload versions, submit, review, delist, and the catalogue."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from market.deps import PrincipalDep, ReadSessionDep, SessionDep, SettingsDep
from market.errors import Unprocessable
from market.pagination import CursorQuery, LimitQuery, Page, page_of
from products import catalogue, service, storage, versions
from products.models import Product
from products.pipeline import encodings
from products.schemas import (
    BuildIn,
    EventOut,
    PlanIn,
    PlanOut,
    ProductIn,
    ProductOut,
    ProductUpdate,
    ReasonIn,
    RebuildIn,
    ResolveIn,
    ReviewIn,
    VersionOut,
)

router = APIRouter(prefix="/v1/products", tags=["products"])

UPLOAD_CHUNK = 1 << 20
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version's number, from 1.")]


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise Unprocessable("invalid_request", detail=f"{field} is not valid JSON ({error.msg})") from error
    except RecursionError as error:
        raise Unprocessable("invalid_request", detail=f"{field} nests JSON too deeply") from error
    if not isinstance(value, dict):
        raise Unprocessable("invalid_request", detail=f"{field} must be a JSON object")
    return value


def _one(session: SessionDep, principal: PrincipalDep, product: Product) -> ProductOut:
    """One product in full, the same after a change as a GET answers: documentation, quality, audit."""
    return service.present(session, [product], detail=True, viewer=principal)[0]


@router.get("", response_model=Page[ProductOut])
def list_products(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    mine: bool = False,
    q: Annotated[str | None, Query(max_length=200, description="Words in title, description, docs.")] = None,
    zone: Annotated[str | None, Query(max_length=50)] = None,
    region: Annotated[str | None, Query(max_length=20, description="A region and its sub-regions.")] = None,
    scenario: Annotated[str | None, Query(max_length=80)] = None,
    pricing: Annotated[str | None, Query(pattern="^(free|paid)$", description="free or paid plans.")] = None,
) -> Page[ProductOut]:
    """The catalogue by slug: listed products, filtered. `?mine=true` shows an operator its own products in every
    state."""
    products = service.catalogue(session, principal, mine=mine)
    found = catalogue.search(session, products, text=q, zone=zone, region=region, scenario=scenario, pricing=pricing)
    page, next_cursor = page_of(found, key=lambda p: (p.slug,), limit=limit, cursor=cursor)
    return Page(items=service.present(session, page, viewer=principal), next_cursor=next_cursor)


@router.post("", response_model=ProductOut, status_code=201)
def create_product(body: ProductIn, session: SessionDep, principal: PrincipalDep) -> ProductOut:
    """Create a draft product inside the operator's authorisation (zone, region, scenarios, fee caps)."""
    product = service.create_product(session, principal, body)
    return _one(session, principal, product)


@router.get("/{slug}", response_model=ProductOut)
def get_product(slug: str, session: SessionDep, principal: PrincipalDep) -> ProductOut:
    """The detail view: schema with column roles, policy, plans, documentation, lineage and quality summary."""
    return _one(session, principal, service.visible_product(session, principal, slug))


@router.patch("/{slug}", response_model=ProductOut)
def update_product(slug: str, body: ProductUpdate, session: SessionDep, principal: PrincipalDep) -> ProductOut:
    """Change title, description, documentation, scenarios (inside the authorisation) or add lineage."""
    return _one(session, principal, service.update_product(session, principal, slug, body))


@router.put("/{slug}/plans/{code}", response_model=PlanOut)
def put_plan(slug: str, code: str, body: PlanIn, session: SessionDep, principal: PrincipalDep) -> PlanOut:
    """Add or change a price plan, at or under the authorisation's fee cap; agreements keep their terms."""
    if body.code != code:
        raise Unprocessable("invalid_request", detail=f"the body's code '{body.code}' differs from the URL's '{code}'")
    return PlanOut.model_validate(service.put_plan(session, principal, slug, body))


@router.delete("/{slug}/plans/{code}", response_model=PlanOut)
def retire_plan(slug: str, code: str, session: SessionDep, principal: PrincipalDep) -> PlanOut:
    """Stop offering a plan to new access requests."""
    return PlanOut.model_validate(service.retire_plan(session, principal, slug, code))


@router.get("/{slug}/events", response_model=Page[EventOut])
def product_events(
    slug: str, session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[EventOut]:
    """The product's history, oldest first: creation, versions, submissions, reviews and delisting."""
    found = service.history(session, principal, slug)
    page, next_cursor = page_of(found, key=lambda e: (e.at, e.id), limit=limit, cursor=cursor)
    return Page(items=[EventOut.model_validate(e) for e in page], next_cursor=next_cursor)


@router.post("/{slug}/versions", response_model=ProductOut, status_code=201)
def upload_version(
    slug: str,
    session: ReadSessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    files: Annotated[
        list[UploadFile],
        File(
            description=(
                "CSV (UTF-8, GB18030 or UTF-16), spreadsheet (.xlsx, .xls, .ods) or Parquet files, one per table."
            )
        ),
    ],
    policy: Annotated[str, Form(description="The protection policy, as JSON.")],
    table_names: Annotated[str, Form(description="Comma-separated table names, in file order.")] = "",
    recipe: Annotated[str | None, Form(description="Optional cleaning and desensitising recipe, as JSON.")] = None,
) -> ProductOut:
    """Upload one file per table plus the protection policy (and a recipe); they become a new immutable version."""
    raw_policy = _json_object(policy, "policy")
    parsed_policy = service.parse_policy(raw_policy)
    parsed_recipe = versions.parse_recipe(_json_object(recipe, "recipe")) if recipe else None
    names = [n.strip() for n in table_names.split(",") if n.strip()] if table_names else []
    settings.ensure_dirs()
    with tempfile.TemporaryDirectory(dir=settings.uploads_dir) as workdir:
        uploads: list[service.Upload] = []
        for index, upload in enumerate(files):
            filename = upload.filename or f"table{index}.csv"
            storage.file_kind(filename)
            table = names[index] if index < len(names) else storage.table_name_from_filename(filename)
            # Not the operator's name: 90 Chinese characters are past the 255 bytes a file name may have (red22).
            # DuckDB reads the compression from the suffix; the rest reads `filename`.
            target = FilePath(workdir) / f"{index}{'.gz' if filename.lower().endswith('.gz') else ''}"
            with target.open("wb") as handle:
                shutil.copyfileobj(upload.file, handle, UPLOAD_CHUNK)
            encodings.as_utf8(target, filename)  # UTF-8 CSV from GB18030, UTF-16 or a sheet, as POST /v1/uploads
            uploads.append(service.Upload(table=table, path=target, filename=filename))
        service.add_version(session, settings, principal, slug, uploads, parsed_policy, parsed_recipe)
    return _one(session, principal, service.visible_product(session, principal, slug))


@router.post("/{slug}/submit", response_model=ProductOut)
def submit_product(slug: str, session: SessionDep, principal: PrincipalDep) -> ProductOut:
    """Submit the latest version for the regulator's review."""
    return _one(session, principal, service.submit(session, principal, slug))


@router.post("/{slug}/review", response_model=ProductOut)
def review_product(slug: str, body: ReviewIn, session: SessionDep, principal: PrincipalDep) -> ProductOut:
    """The regulator approves (lists) or returns a submitted product, with a comment."""
    return _one(session, principal, service.review(session, principal, slug, body.decision, body.comment))


@router.post("/{slug}/delist", response_model=ProductOut)
def delist_product(slug: str, body: ReasonIn, session: SessionDep, principal: PrincipalDep) -> ProductOut:
    """Take a listed product off the catalogue, with the reason; agreements stop being served."""
    return _one(session, principal, service.delist(session, principal, slug, body.reason))


@router.post("/{slug}/builds", response_model=VersionOut, status_code=201)
def build_version(
    slug: str, body: BuildIn, session: ReadSessionDep, principal: PrincipalDep, settings: SettingsDep
) -> VersionOut:
    """Build a new version from stored uploads (POST /v1/uploads) through the recipe; audited on the way.

    The build reads in a deferred transaction; the new version is written at its end under the writer lock
    (products.versions.add_version), so the lock is never held while DuckDB works."""
    version = versions.build_from_uploads(session, settings, principal, slug, body)
    return versions.present_version(session, version)


@router.get("/{slug}/versions", response_model=Page[VersionOut])
def list_versions(
    slug: str, session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[VersionOut]:
    """Every version by number, with its recipe, audit and quality reports: the operator's own, or any for the
    regulator."""
    found = versions.versions_visible(session, principal, slug)
    page, next_cursor = page_of(found, key=lambda v: (v.number,), limit=limit, cursor=cursor)
    return Page(items=[versions.present_version(session, v) for v in page], next_cursor=next_cursor)


@router.get("/{slug}/versions/{number}", response_model=VersionOut)
def get_version(slug: str, number: VersionNumber, session: SessionDep, principal: PrincipalDep) -> VersionOut:
    """One version with its recipe, audit and quality reports."""
    return versions.present_version(session, versions.version_of(session, principal, slug, number)[1])


@router.post("/{slug}/versions/{number}/rebuild", response_model=VersionOut, status_code=201)
def rebuild_version(
    slug: str,
    number: VersionNumber,
    session: ReadSessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    body: RebuildIn | None = None,
) -> VersionOut:
    """Re-run a version's stored recipe over its stored uploads, as a new version (a changed recipe or policy may
    be given). The new version is audited like any other."""
    version = versions.rebuild(session, settings, principal, slug, number, body or RebuildIn())
    return versions.present_version(session, version)


@router.get(
    "/{slug}/versions/{number}/quarantine/{table}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
def quarantine_file(
    slug: str, number: VersionNumber, table: str, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> FileResponse:
    """The rows a version's recipe quarantined for one table, as Parquet, with the rules each broke (operator only)."""
    path = versions.quarantine_path(session, settings, principal, slug, number, table)
    return FileResponse(
        path, media_type="application/vnd.apache.parquet", filename=f"{slug}-v{number}-{table}-quarantine.parquet"
    )


@router.post("/{slug}/versions/{number}/findings/{finding_id}/resolve", response_model=VersionOut)
def resolve_finding(
    slug: str, number: VersionNumber, finding_id: str, body: ResolveIn, session: SessionDep, principal: PrincipalDep
) -> VersionOut:
    """Resolve an audit finding with a justification the regulator reads in review."""
    version = versions.resolve_finding(session, principal, slug, number, finding_id, body.justification)
    return versions.present_version(session, version)


catalogue_router = APIRouter(prefix="/v1", tags=["catalogue"])


@catalogue_router.get(
    "/catalogue.jsonld", responses={200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}}}
)
def catalogue_jsonld(request: Request, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """The listed products as a DCAT catalogue in JSON-LD, for CKAN and data-space harvesters. Public: no API key,
    as portals harvest it; it holds only what the public catalogue shows."""
    products = service.public_catalogue(session)
    body = catalogue.jsonld(session, settings, str(request.base_url), products)
    return JSONResponse(body, media_type="application/ld+json")
