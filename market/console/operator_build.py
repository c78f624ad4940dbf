"""Upload, recipe and build, and review preparation, for the operator's products.

The browser sends the file in parts (File.slice, never the whole file in memory) to a resumable upload
session (products.pipeline.resumable): after a network error or a reload it asks how much the server has
and sends the rest; the last part stores it with the same path as POST /v1/uploads. The build runs in the
background (products.pipeline.builds): the page shows its stage and polls a small JSON document.
The recipe editor turns per-column choices into a recipe and a protection policy; the preview runs that
recipe over the first rows only, so it shows values *after* desensitisation, never raw dropped or
pseudonymised ones.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from market import i18n
from market.accounts import signin
from market.accounts.service import Principal
from market.console.operator import operator, own_product
from market.console.web import (
    CSRF_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    Console,
    ConsoleDep,
    ReadConsoleDep,
    check_csrf,
    page,
    redirect,
)
from market.deps import get_database, get_settings_dep
from market.errors import MarketError, Unauthenticated, Unprocessable
from market.i18n import N_
from market.messages import render
from market.settings import Settings
from products import service, storage, versions
from products.pipeline import builds, resumable, uploads
from products.pipeline.audit import HINTS
from products.pipeline.keys import product_secret
from products.pipeline.models import BuildJob, Upload, UploadSession
from products.pipeline.recipe import NAME, TableRecipe, lit
from products.pipeline.run import connect, process_table, reader
from products.schemas import BuildIn, UploadOut

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

ACTIONS = ("keep", "drop", "pseudonymise", "bin", "truncate_date", "prefix", "mask")
TYPES = ("varchar", "integer", "bigint", "double", "decimal(18,2)", "date", "timestamp", "boolean")
ROLES = ("dimension", "measure", "privacy_unit", "hidden")
PREVIEW_ROWS = 10
SAMPLE_ROWS = 200
"""The preview runs the recipe over this many leading rows, then shows the first PREVIEW_ROWS of the result."""


# -- upload ----------------------------------------------------------------------------------------


def _principal(request: Request) -> Principal | None:
    """The signed-in principal, read in a short transaction (none stays open while a body arrives)."""
    with get_database(request).transaction() as session:
        principal = signin.principal_for(session, request.cookies.get(SESSION_COOKIE))
    return principal if principal is not None and request.cookies.get(CSRF_COOKIE) else None


def _session_body(settings: Settings, upload_session: UploadSession, stored: UploadOut | None = None) -> dict[str, Any]:
    return {
        "id": upload_session.id,
        "filename": upload_session.filename,
        "size": upload_session.size_bytes,
        "offset": resumable.offset(settings, upload_session),
        "upload": stored.model_dump(mode="json") if stored else None,
    }


@router.post("/uploads/sessions")
async def start_upload(
    request: Request,
    filename: Annotated[str, Query(min_length=1, max_length=300)],
    size: Annotated[int, Query(ge=0)],
) -> Response:
    """Start a resumable upload of a file of `size` bytes; answers its id and offset 0."""
    database = get_database(request)
    settings: Settings = get_settings_dep(request)
    principal = await run_in_threadpool(_principal, request)
    if principal is None:
        return _json_error(request, Unauthenticated("upload_sign_in"))

    def begin() -> dict[str, Any]:
        settings.ensure_dirs()
        with database.transaction(write=True) as session:
            return _session_body(settings, resumable.begin(session, settings, principal, filename, size))

    try:
        return JSONResponse(await run_in_threadpool(begin), status_code=201)
    except MarketError as error:
        return _json_error(request, error)


def _upload_session(request: Request, principal: Principal, session_id: str) -> tuple[UploadSession, UploadOut | None]:
    with get_database(request).transaction() as session:
        found = resumable.own_session(session, principal, session_id[:40])
        stored = session.get(Upload, found.upload_id) if found.upload_id else None
        return found, UploadOut.model_validate(stored) if stored else None


@router.get("/uploads/sessions/{session_id}")
async def upload_state(request: Request, session_id: str) -> Response:
    """How much of the file the server has (`offset`), and the stored upload once complete."""
    principal = await run_in_threadpool(_principal, request)
    if principal is None:
        return _json_error(request, Unauthenticated("upload_sign_in"))
    try:
        found, stored = await run_in_threadpool(_upload_session, request, principal, session_id)
    except MarketError as error:
        return _json_error(request, error)
    return JSONResponse(_session_body(get_settings_dep(request), found, stored))


@router.put("/uploads/sessions/{session_id}")
async def upload_part(request: Request, session_id: str) -> Response:
    """One part of the file, `Content-Range: bytes START-END/SIZE`, streamed to disk; the last part stores it.

    A part that does not start at the server's offset is refused with 409 and the offset (also in the
    `Upload-Offset` header) to resume from.
    """
    database = get_database(request)
    settings: Settings = get_settings_dep(request)
    principal = await run_in_threadpool(_principal, request)
    if principal is None:
        return _json_error(request, Unauthenticated("upload_sign_in"))
    try:
        found, stored = await run_in_threadpool(_upload_session, request, principal, session_id)
        if stored is None:
            if resumable.offset(settings, found) == found.size_bytes:
                # Every byte is here but the upload was not stored (its last part was answered 503, or the server
                # stopped): this request, whatever its range, stores it.
                reached = found.size_bytes
            else:
                start, end = resumable.parse_range(request.headers.get("content-range"), found.size_bytes)
                reached = await resumable.append(settings, found, start, end, request.stream())
            if reached == found.size_bytes:
                prepared = await run_in_threadpool(resumable.prepare, settings, found)  # no lock held: a whole pass

                def complete() -> UploadOut:
                    with database.transaction(write=True) as session:
                        again = resumable.own_session(session, principal, found.id, lock=True)
                        return UploadOut.model_validate(
                            resumable.complete(session, settings, principal, again, prepared)
                        )

                stored = await run_in_threadpool(complete)
                found.upload_id = stored.id
    except MarketError as error:
        response = _json_error(request, error)
        if isinstance(error.params.get("offset"), int):
            response.headers["Upload-Offset"] = str(error.params["offset"])
        return response
    body = _session_body(settings, found, stored)
    return JSONResponse(body, headers={"Upload-Offset": str(body["offset"])})


@router.post("/uploads")
async def upload(
    request: Request,
    filename: Annotated[str, Query(min_length=1, max_length=300)],
) -> Response:
    """The raw request body (the browser's File object), streamed to disk in chunks; JSON like POST /v1/uploads.

    The signed-in principal is read in a short transaction, so no database transaction stays open while
    a large body arrives; the upload is recorded in a second one. CSRF is checked from the header.
    """
    database = get_database(request)
    settings: Settings = get_settings_dep(request)
    with database.transaction() as session:
        principal = signin.principal_for(session, request.cookies.get(SESSION_COOKIE))
    if principal is None or not request.cookies.get(CSRF_COOKIE):
        return _json_error(request, Unauthenticated("upload_sign_in"))
    try:
        storage.file_kind(filename)
        received = await uploads.receive(settings, principal, request.stream())

        def record() -> UploadOut:
            with database.transaction(write=True) as session:
                stored, _ = uploads.register(
                    session,
                    settings,
                    principal,
                    received,
                    filename=filename,
                    idempotency_key=request.headers.get("idempotency-key"),
                )
                return UploadOut.model_validate(stored)

        out = await run_in_threadpool(record)
    except MarketError as error:
        return _json_error(request, error)
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


def _json_error(request: Request, error: MarketError) -> JSONResponse:
    """The shared error shape, in the page's language (the script shows the message beside the progress bar)."""
    locale = i18n.negotiate(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE))
    return JSONResponse(error.to_body(locale), status_code=error.status_code, headers=error.headers)


# -- the recipe editor -----------------------------------------------------------------------------


def _default_name(source: str) -> str:
    name = "".join(ch if ch.isalnum() else "_" for ch in source.lower()).strip("_") or "column"
    return name if NAME.match(name) else f"c_{name}"[:63]


def type_of(kind: str) -> str:
    """The recipe type closest to the type DuckDB detected in the upload (the editor's default)."""
    kind = kind.upper()
    if "INT" in kind:
        return "bigint"
    if any(t in kind for t in ("DOUBLE", "FLOAT", "DECIMAL", "REAL")):
        return "double"
    if kind.startswith("TIMESTAMP"):
        return "timestamp"
    if kind in ("DATE", "BOOLEAN"):
        return kind.lower()
    return "varchar"


def editor_rows(columns: list[tuple[str, str]], values: dict[str, str]) -> list[dict[str, Any]]:
    """One row per source column, with the form's values or sensible defaults (identifiers pseudonymised)."""
    rows = []
    for index, (source, kind) in enumerate(columns):
        hinted = bool(HINTS.search(source.lower()))
        typed = type_of(kind)
        numeric = typed in ("integer", "bigint", "double")

        def value(field: str, default: str, index: int = index) -> str:
            return values.get(f"{field}_{index}", default)

        rows.append(
            {
                "index": index,
                "source": source,
                "kind": kind,
                "out": value("out", _default_name(source)),
                "action": value("action", "pseudonymise" if hinted else "keep"),
                "param": value("param", ""),
                "type": value("type", typed),
                "role": value("role", "hidden" if hinted else ("measure" if numeric else "dimension")),
                "min": value("min", ""),
                "max": value("max", ""),
                "required": value("required", ""),
                "pattern": value("pattern", ""),
                "invalid": value("invalid", "reject"),
                "qi": value("qi", ""),
            }
        )
    return rows


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def recipe_and_policy(
    table: str, rows: list[dict[str, Any]], dedupe: bool, k: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe and protection policy the editor's rows describe (validated by the build service)."""
    columns: dict[str, Any] = {}
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    bounds: dict[str, Any] = {}
    quasi: list[str] = []
    for row in rows:
        if row["action"] == "drop":
            continue
        name = row["out"].strip()
        transform: dict[str, Any] = {"kind": row["action"]}
        param = row["param"].strip()
        if row["action"] == "bin":
            transform["width"] = param or "10"
        elif row["action"] == "truncate_date":
            transform["unit"] = param or "month"
        elif row["action"] == "prefix":
            transform["length"] = param or "3"
        elif row["action"] == "mask":
            first, _, last = (param or "0,4").partition(",")
            transform["keep_first"] = first.strip() or "0"
            transform["keep_last"] = last.strip() or "0"
        column: dict[str, Any] = {"source": row["source"], "type": row["type"], "transform": transform}
        if row["required"]:
            column["required"] = True
        if row["min"].strip():
            column["min"] = _number(row["min"].strip())
        if row["max"].strip():
            column["max"] = _number(row["max"].strip())
        if row["pattern"].strip():
            column["pattern"] = row["pattern"].strip()
        column["on_invalid"] = row["invalid"] if row["invalid"] in ("reject", "quarantine") else "reject"
        columns[name] = column
        role = row["role"] if row["role"] in ROLES else "hidden"
        roles[role].append(name)
        if role == "measure" and row["min"].strip() and row["max"].strip():
            bounds[name] = {"min": _number(row["min"].strip()), "max": _number(row["max"].strip())}
        if row["qi"]:
            quasi.append(name)
    units = roles["privacy_unit"]
    if len(units) != 1:
        raise Unprocessable("recipe_privacy_unit")
    recipe = {"tables": {table: {"columns": columns, "dedupe": dedupe, "quasi_identifiers": quasi}}}
    policy = {
        "min_group_size": int(k) if k.strip().isdigit() else 10,
        "tables": {
            table: {
                "privacy_unit": units[0],
                "dimensions": roles["dimension"],
                "measures": roles["measure"],
                "hidden": roles["hidden"],
                "bounds": bounds,
            }
        },
    }
    return recipe, policy


def preview(
    settings: Settings, product_id: str, source: Path, filename: str, table: str, recipe: dict[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The recipe run over the upload's first rows: only output columns, values after desensitisation."""
    kind = storage.file_kind(filename)
    table_recipe = TableRecipe.model_validate(recipe["tables"][table])
    settings.ensure_dirs()
    with tempfile.TemporaryDirectory(dir=settings.uploads_dir) as work:
        workdir = Path(work)
        sample = workdir / "sample.parquet"
        try:
            with connect(workdir / "spill") as connection:
                connection.execute(
                    f"COPY (SELECT * FROM {reader(source, kind)} LIMIT {SAMPLE_ROWS}) TO {lit(str(sample))} "
                    "(FORMAT parquet)"
                )
        except duckdb.Error as error:
            raise Unprocessable(
                "invalid_upload", file=filename, kind=kind.upper(), detail=storage.error_detail(error, filename)
            ) from error
        out = workdir / "out" / f"{table}.parquet"
        process_table(
            table, sample, "parquet", filename, table_recipe, product_secret(settings, product_id), out, workdir
        )
        with duckdb.connect(":memory:") as connection:
            result = connection.execute(f"SELECT * FROM read_parquet({lit(str(out))}) LIMIT {PREVIEW_ROWS}")
            names = [d[0] for d in result.description or []]
            return names, result.fetchall()


def _form_values(form: Any) -> dict[str, str]:
    return {k: v[:1_000] for k, v in form.items() if isinstance(v, str)}


def _build_page(
    console: Console,
    slug: str,
    upload_id: str,
    values: dict[str, str],
    *,
    error: str = "",
    shown: tuple[list[str], list[tuple[Any, ...]]] | None = None,
    status: int = 200,
) -> Response:
    user = operator(console)
    own_product(console, slug)
    settings = get_settings_dep(console.request)
    chosen = uploads.own_upload(console.session, user, upload_id) if upload_id else None
    columns: list[tuple[str, str]] = []
    if chosen is not None:
        path = uploads.stored_path(settings, chosen)
        columns = storage.source_columns(path, storage.file_kind(chosen.filename), chosen.filename)
    table = values.get("table") or (storage.table_name_from_filename(chosen.filename) if chosen else "")
    return page(
        console,
        "operator/build.html",
        title="Upload and build",
        subtitle=slug,
        crumbs=(("My products", "/console/products"), (slug, f"/console/products/{slug}"), ("Upload and build", None)),
        slug=slug,
        upload=chosen,
        recent=[UploadOut.model_validate(u) for u in uploads.of_org(console.session, user)[:10]],
        rows=editor_rows(columns, values),
        table=table,
        values=values,
        actions=ACTIONS,
        types=TYPES,
        roles=ROLES,
        error=error,
        preview=shown,
        status_code=status,
    )


@router.get("/products/{slug}/build")
def build_page(slug: str, console: ConsoleDep, upload: str = "") -> Response:
    """Drop a CSV or Parquet file (or pick a recent upload), then edit the recipe per column."""
    return _build_page(console, slug[:100], upload[:64], {})


@router.post("/products/{slug}/build")
async def build(slug: str, request: Request, console: ReadConsoleDep) -> Response:
    """`action=preview` shows the first rows after desensitisation; `action=build` makes a new version.

    The page's transaction stays a reader: the preview runs DuckDB and the build job writes in transactions
    of its own (products.pipeline.builds), so no writer lock is held meanwhile."""
    values = _form_values(await request.form())
    upload_id = values.get("upload", "")
    user = operator(console)
    settings = get_settings_dep(request)
    try:
        chosen = uploads.own_upload(console.session, user, upload_id)
        product = own_product(console, slug)
        path = uploads.stored_path(settings, chosen)
        columns = storage.source_columns(path, storage.file_kind(chosen.filename), chosen.filename)
        table = values.get("table", "").strip() or storage.table_name_from_filename(chosen.filename)
        if not storage.TABLE_NAME.match(table):
            raise Unprocessable("invalid_table_name", name=table)
        rows = editor_rows(columns, values)
        recipe, policy = recipe_and_policy(table, rows, bool(values.get("dedupe")), values.get("k", "10"))
        versions.parse_recipe(recipe)
        service.parse_policy(policy)
        if values.get("action") == "preview":
            shown = await run_in_threadpool(preview, settings, product.id, path, chosen.filename, table, recipe)
            return _build_page(console, slug, upload_id, values, shown=shown)
        body = BuildIn(tables={table: chosen.id}, recipe=recipe, policy=policy)
        job_id, _ = await run_in_threadpool(builds.start, get_database(request), settings, user, slug, body)
    except MarketError as error:
        console.session.rollback()
        return _build_page(console, slug, upload_id, values, error=console.message(error), status=error.status_code)
    return redirect(console, f"/console/products/{slug}/builds/{job_id}")


# -- build progress --------------------------------------------------------------------------------

STAGE_LABELS = {
    "queued": N_("Waiting to start"),
    "reading": N_("Reading the upload"),
    "cleaning": N_("Cleaning: types and value rules"),
    "desensitising": N_("Desensitising and writing Parquet"),
    "statistics": N_("Statistics and quality report"),
    "audit": N_("Irreversibility audit"),
    "saving": N_("Saving the version"),
    "done": N_("Done"),
}
"""The build's stages as the progress page lists them (products.pipeline.builds.STAGES)."""


def job_state(console: Console, slug: str, job: BuildJob) -> dict[str, Any]:
    """The job as the progress page and its poll see it, with texts in the page's language."""
    order = list(builds.STAGES)
    at = order.index(job.stage) if job.stage in order else 0
    known = job.rows_total is not None and job.rows_done is not None and job.rows_total > 0
    error = None
    if job.state == "failed":
        error = {
            "code": job.error_code,
            "message": render(job.error_code or "build_failed", console.locale, **(job.error_params or {})),
        }
    return {
        "id": job.id,
        "state": job.state,
        "stage": job.stage,
        "stage_label": console.translate(STAGE_LABELS.get(job.stage, job.stage)),
        "stage_index": at,
        "stages": [{"stage": s, "label": console.translate(STAGE_LABELS[s])} for s in order],
        "table": job.table_name,
        "rows_done": job.rows_done,
        "rows_total": job.rows_total,
        "percent": int(100 * (job.rows_done or 0) / (job.rows_total or 1)) if known else None,
        "version": job.version_number,
        "version_url": f"/console/products/{slug}/versions/{job.version_number}?built=1"
        if job.version_number
        else None,
        "error": error,
    }


@router.get("/products/{slug}/builds/{job_id}")
def build_progress(slug: str, job_id: str, console: ConsoleDep) -> Response:
    """The build's stages, the current one marked, rows where known; the page polls its /state."""
    job = builds.job_of(console.session, operator(console), slug[:100], job_id[:40])
    return page(
        console,
        "operator/build_job.html",
        title="Build progress",
        subtitle=slug,
        crumbs=(
            ("My products", "/console/products"),
            (slug, f"/console/products/{slug}"),
            ("Build progress", None),
        ),
        slug=slug,
        job=job_state(console, slug, job),
    )


@router.get("/products/{slug}/builds/{job_id}/state")
def build_progress_json(slug: str, job_id: str, console: ConsoleDep) -> Response:
    """The build's state as JSON, for the progress page to poll."""
    try:
        job = builds.job_of(console.session, operator(console), slug[:100], job_id[:40])
    except MarketError as error:
        return JSONResponse(error.to_body(console.locale), status_code=error.status_code)
    return JSONResponse(job_state(console, slug, job), headers={"Cache-Control": "no-store"})


# -- review preparation ----------------------------------------------------------------------------


def _version_page(console: Console, slug: str, number: int, errors: dict[str, str], status: int = 200) -> Response:
    user = operator(console)
    product, version = versions.version_of(console.session, user, slug, number)
    shown = versions.present_version(console.session, version)
    findings = (shown.audit or {}).get("findings", [])
    quality = (shown.quality or {}).get("tables", {})
    return page(
        console,
        "operator/version.html",
        title="Version",
        subtitle=f"{slug} v{number}",
        crumbs=(("My products", "/console/products"), (slug, f"/console/products/{slug}"), (f"v{number}", None)),
        slug=slug,
        number=number,
        v=shown,
        status_of_product=product.status,
        findings=findings,
        quality=quality,
        errors=errors,
        status_code=status,
    )


@router.get("/products/{slug}/versions/{number}")
def version_page(slug: str, number: int, console: ConsoleDep) -> Response:
    """The version's audit findings (resolve with a justification), its quality against the previous, submit."""
    return _version_page(console, slug[:100], number, {})


@router.get("/products/{slug}/versions/{number}/quarantine/{table}")
def quarantine(slug: str, number: int, table: str, console: ConsoleDep) -> Response:
    """The rows the recipe quarantined for one table, as Parquet, with the rules each broke."""
    settings = get_settings_dep(console.request)
    path = versions.quarantine_path(console.session, settings, operator(console), slug, number, table)
    return FileResponse(
        path, media_type="application/vnd.apache.parquet", filename=f"{slug}-v{number}-{table}-quarantine.parquet"
    )


@router.post("/products/{slug}/versions/{number}/findings/{finding_id}/resolve")
def resolve(
    slug: str,
    number: int,
    finding_id: str,
    console: ConsoleDep,
    justification: Annotated[str, Form(max_length=5_000)] = "",
) -> Response:
    """Resolve one finding with the justification the regulator reads in review."""
    try:
        if len(justification.strip()) < 10:
            raise Unprocessable("finding_justification_short")
        versions.resolve_finding(console.session, operator(console), slug, number, finding_id, justification.strip())
    except MarketError as error:
        console.session.rollback()
        return _version_page(console, slug, number, {finding_id: console.message(error)}, error.status_code)
    return redirect(console, f"/console/products/{slug}/versions/{number}?resolved=1")
