"""Product versions: build one from uploads (optionally through a recipe), audit it, inspect it, resolve findings."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import begin_write_now
from market.errors import Conflict, NotFound, Unprocessable
from market.settings import Settings
from products import repository, storage
from products.models import Product, ProductVersion
from products.pipeline import uploads
from products.pipeline.assess import assess
from products.pipeline.keys import product_secret
from products.pipeline.recipe import Recipe
from products.pipeline.run import Progress, TableRun, process_table
from products.schemas import BuildIn, ColumnOut, RebuildIn, TableOut, VersionOut
from sandbox.policy import ProtectionPolicy


@dataclass(frozen=True)
class Upload:
    """An uploaded file already on local disk, and the table it becomes."""

    table: str
    path: Path
    filename: str
    upload_id: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None


def _own_product(session: Session, actor: Principal, slug: str) -> Product:
    product = repository.by_slug(session, slug)
    if product is None or product.operator_org_id != actor.org_id:
        raise NotFound("product_not_found", slug=slug)
    return product


def _roles(table_policy: Any) -> dict[str, str]:
    roles: dict[str, str] = {table_policy.privacy_unit: "privacy_unit"}
    roles.update({c: "dimension" for c in table_policy.dimensions})
    roles.update({c: "measure" for c in table_policy.measures})
    roles.update({c: "hidden" for c in table_policy.hidden})
    return roles


def add_version(
    session: Session,
    settings: Settings,
    actor: Principal,
    slug: str,
    uploads: Sequence[Upload],
    policy: ProtectionPolicy,
    recipe: Recipe | None = None,
    progress: Progress | None = None,
) -> ProductVersion:
    """Build a new immutable version from uploads, then audit it and report its quality.

    Without a recipe the columns the policy names are kept as they are; with one, each table is cleaned
    and desensitised as the recipe says (products.pipeline).
    """
    actor.require(Role.OPERATOR)
    product = _own_product(session, actor, slug)
    tables = {u.table: u for u in uploads}
    for upload in uploads:
        if not storage.TABLE_NAME.match(upload.table):
            raise Unprocessable("invalid_table_name", name=upload.table)
    for table in policy.tables:
        if table not in tables:
            raise Unprocessable("policy_table_unknown", table=table, tables=", ".join(sorted(tables)) or "none")
    for table in tables:
        if table not in policy.tables:
            raise Unprocessable("policy_table_missing", table=table)
    if recipe is not None:
        if set(recipe.tables) != set(tables):
            raise Unprocessable(
                "recipe_table_mismatch", recipe=", ".join(sorted(recipe.tables)), tables=", ".join(sorted(tables))
            )
        for name, table_recipe in recipe.tables.items():
            for column in _roles(policy.tables[name]):
                if column not in table_recipe.columns:
                    raise Unprocessable(
                        "policy_column_not_produced", column=column, table=name, columns=", ".join(table_recipe.columns)
                    )

    # Builds of one product are serialised by a row lock (PostgreSQL); files are written to a private
    # directory and renamed into place only once the version's row is written (see below), so a stored
    # version's files never change.
    repository.lock_product(session, product.id)
    number = repository.next_version_number(session, product.id)
    final_dir = settings.products_dir / product.id / f"v{number}"
    version_dir = settings.products_dir / product.id / f".building-v{number}-{secrets.token_hex(4)}"
    described: list[dict[str, Any]] = []
    paths: list[Path] = []
    runs: dict[str, TableRun] = {}
    try:
        for name, upload in sorted(tables.items()):
            roles = _roles(policy.tables[name])
            kind = storage.file_kind(upload.filename)
            if recipe is not None:
                with tempfile.TemporaryDirectory(dir=settings.uploads_dir) as workdir:
                    run = process_table(
                        name,
                        upload.path,
                        kind,
                        upload.filename,
                        recipe.tables[name],
                        product_secret(settings, product.id),
                        version_dir / f"{name}.parquet",
                        Path(workdir),
                        progress,
                    )
                runs[name] = run
                stored = run.stored
            else:
                available = [c for c, _ in storage.source_columns(upload.path, kind, upload.filename)]
                for column in roles:
                    if column not in available:
                        raise Unprocessable(
                            "policy_column_unknown", column=column, table=name, columns=", ".join(available)
                        )
                keep = [c for c in available if c in roles]
                stored = storage.write_table(upload.path, kind, upload.filename, keep, version_dir / f"{name}.parquet")
            storage.check_bounds(stored, policy.tables[name].bounds)
            storage.check_dates(stored)
            stored = storage.fast_measures(stored, policy.tables[name].measures, policy.tables[name].bounds)
            checked = {m: (float(b.min), float(b.max)) for m, b in policy.tables[name].bounds.items()}
            described.append(stored.describe(roles, checked))
            paths.append(stored.path)
        previous = session.get(ProductVersion, product.latest_version_id) if product.latest_version_id else None
        audit, quality = assess(
            version_dir, number, described, policy, recipe, runs, previous.quality if previous else None, progress
        )
        if progress:
            progress("saving")
        content_hash = storage.content_hash(paths)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise

    version = ProductVersion(
        product_id=product.id,
        number=number,
        policy=policy.model_dump(mode="json"),
        tables=described,
        content_hash=content_hash,
        recipe=recipe.model_dump(mode="json") if recipe else None,
        recipe_hash=recipe.digest() if recipe else None,
        sources={
            u.table: {
                "filename": u.filename,
                "upload_id": u.upload_id,
                "sha256": u.sha256 or storage.content_hash([u.path]),
                "size_bytes": u.size_bytes if u.size_bytes is not None else u.path.stat().st_size,
            }
            for u in uploads
        },
        audit=audit,
        quality=quality,
        created_by=actor.user_id,
    )
    # The build above ran without the SQLite writer lock (its session only read); the version's row, the
    # rename of its files and the product's pointer are written under it (the number's race is settled by
    # the unique constraint below, as before).
    session.add(version)
    try:
        begin_write_now(session)
        try:
            session.flush()
        except IntegrityError as error:
            raise Conflict("version_in_progress", slug=slug) from error
        # The row is written first, the files moved into place after: from its insert to its end this
        # transaction alone holds `number` (SQLite's write lock; on PostgreSQL the unique row, which a
        # concurrent insert waits for and then fails on). So a directory already at final_dir belongs to
        # no committed version: a build whose transaction rolled back after its rename left it. Before,
        # the files were renamed first, and the build that lost the race for the number deleted the
        # winner's committed files and put its own in their place (red team, session 5).
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.rename(version_dir, final_dir)
    except BaseException:
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    product.latest_version_id = version.id
    product.updated_at = utcnow()
    return version


def version_of(session: Session, actor: Principal, slug: str, number: int) -> tuple[Product, ProductVersion]:
    """A version the actor may inspect: the operator's own, or any for the regulator."""
    product = repository.by_slug(session, slug)
    if product is None or (actor.role != Role.REGULATOR and product.operator_org_id != actor.org_id):
        raise NotFound("product_not_found", slug=slug)
    version = repository.version_by_number(session, product.id, number)
    if version is None:
        raise NotFound("version_not_found", slug=slug, number=number)
    return product, version


def resolve_finding(
    session: Session, actor: Principal, slug: str, number: int, finding_id: str, justification: str
) -> ProductVersion:
    """The operator explains why an audit finding is not a risk; the regulator reads it in review."""
    actor.require(Role.OPERATOR)
    _, version = version_of(session, actor, slug, number)
    report = dict(version.audit or {"findings": []})
    findings = [dict(f) for f in report.get("findings", [])]
    target = next((f for f in findings if f["id"] == finding_id), None)
    if target is None:
        raise NotFound(
            "finding_not_found",
            number=number,
            finding=finding_id,
            findings=", ".join(f["id"] for f in findings) or "none",
        )
    target["resolution"] = {"by": actor.user_id, "at": utcnow().isoformat(), "justification": justification}
    report["findings"] = findings
    report["blocking_findings"] = sum(1 for f in findings if f["blocking"] and not f["resolution"])
    version.audit = report
    session.flush()
    return version


def parse_recipe(raw: dict[str, Any]) -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unprocessable("invalid_request", detail=f"recipe.{where}: {first['msg']}") from error


def build_from_uploads(
    session: Session,
    settings: Settings,
    actor: Principal,
    slug: str,
    body: BuildIn,
    progress: Progress | None = None,
) -> ProductVersion:
    """A new version from the organisation's stored uploads, through the recipe if one is given."""
    from products.service import parse_policy

    policy = parse_policy(body.policy)
    recipe = parse_recipe(body.recipe) if body.recipe is not None else None
    sources = []
    for table, upload_id in sorted(body.tables.items()):
        upload = uploads.own_upload(session, actor, upload_id)
        sources.append(
            Upload(
                table=table,
                path=uploads.stored_path(settings, upload),
                filename=upload.filename,
                upload_id=upload.id,
                sha256=upload.sha256,
                size_bytes=upload.size_bytes,
            )
        )
    settings.ensure_dirs()
    return add_version(session, settings, actor, slug, sources, policy, recipe, progress)


def rebuild(
    session: Session, settings: Settings, actor: Principal, slug: str, number: int, body: RebuildIn
) -> ProductVersion:
    """Re-run a version's recipe over the same uploads (optionally with a changed recipe or policy)."""
    actor.require(Role.OPERATOR)
    _, version = version_of(session, actor, slug, number)
    sources = version.sources or {}
    if not sources or any(not s.get("upload_id") for s in sources.values()):
        raise Unprocessable("not_rebuildable", number=number)
    recipe = body.recipe if body.recipe is not None else version.recipe
    policy = body.policy if body.policy is not None else version.policy
    tables = {table: str(source["upload_id"]) for table, source in sources.items()}
    return build_from_uploads(session, settings, actor, slug, BuildIn(tables=tables, recipe=recipe, policy=policy))


def versions_visible(session: Session, actor: Principal, slug: str) -> Sequence[ProductVersion]:
    product = repository.by_slug(session, slug)
    if product is None or (actor.role != Role.REGULATOR and product.operator_org_id != actor.org_id):
        raise NotFound("product_not_found", slug=slug)
    return repository.versions_of(session, product.id)


def present_version(session: Session, version: ProductVersion) -> VersionOut:
    product = session.get(Product, version.product_id)
    assert product is not None
    if version.id == product.listed_version_id and product.status == "listed":
        status = "listed"
    elif version.id == product.pending_version_id:
        status = "in_review"
    elif version.id == product.latest_version_id:
        status = "draft"
    else:
        status = "superseded"
    return VersionOut(
        number=version.number,
        status=status,
        content_hash=version.content_hash,
        recipe_hash=version.recipe_hash,
        recipe=version.recipe,
        sources=version.sources,
        tables=[
            TableOut(
                name=t["name"],
                row_count=t["row_count"],
                columns=[ColumnOut(name=c["name"], type=c["type"], role=c["role"]) for c in t["columns"]],
            )
            for t in version.tables
        ],
        policy=version.policy,
        audit=version.audit,
        quality=version.quality,
        created_at=version.created_at,
    )


def quarantine_path(session: Session, settings: Settings, actor: Principal, slug: str, number: int, table: str) -> Path:
    """The quarantine file of one table of an own version; 404 when nothing was quarantined."""
    actor.require(Role.OPERATOR)
    product, version = version_of(session, actor, slug, number)
    report = ((version.quality or {}).get("tables") or {}).get(table) or {}
    relative = report.get("quarantine_file")
    if not relative:
        raise NotFound("quarantine_not_found", table=table, number=number)
    return settings.products_dir / product.id / f"v{version.number}" / str(relative)
