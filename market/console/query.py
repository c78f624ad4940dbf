"""The query console: SQL editor with the schema beside it, a no-code builder, results as table and chart, history."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from market.console.access import PrivacyView, held_agreements, privacy_view
from market.console.web import Console, ConsoleDep, ReadConsoleDep, check_csrf, page
from market.deps import SettingsDep, get_database
from market.errors import MarketError, Unprocessable
from metering import agreements, service, usage
from metering.repository import products_by_id
from metering.schemas import UsageOut
from products import service as products
from products.schemas import ProductOut
from sandbox.structured import StructuredQuery, compile_query

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])

HISTORY_SIZE = 20
MAX_EPSILON = 10.0
"""The API's own upper limit on one query's epsilon (metering.schemas.QueryIn)."""
TIME_DIMENSIONS = ("year", "month", "day", "hour", "date", "week", "quarter")
"""Dimensions drawn as a line (an axis of time); anything else is drawn as bars."""


def _queryable(console: Console) -> list[ProductOut]:
    """Products the buyer holds an agreement on, as the catalogue shows them."""
    held = agreements.visible_agreements(console.session, console.buyer())
    found = products_by_id(console.session, sorted({a.product_id for a in held}))
    return products.present(console.session, sorted(found.values(), key=lambda p: p.slug), viewer=console.principal)


def _history(console: Console) -> list[tuple[UsageOut, str]]:
    buyer = console.buyer()
    where = usage.scope(console.session, buyer)
    records = usage.present(
        console.session, buyer, usage.page(console.session, buyer, where, limit=HISTORY_SIZE, before=None)
    )
    slugs = {pid: p.slug for pid, p in products_by_id(console.session, [r.product_id for r in records]).items()}
    return [(r, slugs.get(r.product_id, "")) for r in records]


def chart_of(columns: list[str], rows: list[list[Any]]) -> dict[str, Any] | None:
    """A chart for a result: the first column along the axis, each numeric column a series.

    A line when the first column is a time dimension, bars otherwise; None when nothing is numeric. Series
    under a tenth of the first series' scale are left out of the chart (not out of the table).
    """
    if not rows or len(columns) < 2:
        return None
    numeric = [
        i
        for i in range(1, len(columns))
        if all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
    ]
    if not numeric:
        return None
    # One axis: series on a scale far from the first one's (counts beside averages) would lie flat; the
    # table still shows them.
    first, *others = numeric
    peak = max(abs(float(r[first] or 0)) for r in rows)
    numeric = [first, *(i for i in others if max(abs(float(r[i] or 0)) for r in rows) * 10 >= peak)]
    kind = "line" if columns[0].lower() in TIME_DIMENSIONS else "bar"
    return {
        "type": kind,
        "x": [str(r[0]) for r in rows],
        "series": [{"name": columns[i], "data": [r[i] for r in rows]} for i in numeric],
    }


def _budget_of(console: Console, slug: str) -> PrivacyView | None:
    """The privacy budget of the buyer's newest agreement on the product (DP products), else None."""
    for agreement, _standing, held in held_agreements(console):
        if held == slug and agreement.status == "active":
            return privacy_view(agreement)
    return None


def _page(
    console: Console,
    *,
    product: str,
    sql: str,
    outcome: dict[str, Any] | None = None,
    status: int = 200,
    epsilon: str = "",
) -> Response:
    choices = _queryable(console)
    chosen = next((p for p in choices if p.slug == product), choices[0] if choices else None)
    error = (outcome or {}).get("error")
    dry_run = outcome if outcome and not error and outcome.get("dry_run") else None
    result = outcome if outcome and not error and not dry_run else None
    chart = chart_of(result["columns"], result["rows"]) if result else None
    budget = _budget_of(console, chosen.slug) if chosen else None
    return page(
        console,
        "query.html",
        title="Query",
        crumbs=(("Query", None),),
        products=choices,
        product=chosen,
        sql=sql or (_example_sql(chosen) if chosen else ""),
        result=result,
        dry_run=dry_run,
        error=error,
        epsilon=epsilon,
        budget=budget,
        chart_json=json.dumps(chart, default=str) if chart else "",
        history=_history(console),
        idempotency_key=secrets.token_urlsafe(16),
        status_code=status,
    )


def _example_sql(product: ProductOut) -> str:
    for table in product.tables:
        dims = [c.name for c in table.columns if c.role == "dimension"]
        if dims:
            return f"SELECT {dims[0]}, count(*) AS n FROM {table.name} GROUP BY {dims[0]} ORDER BY {dims[0]}"
    return ""


@router.get("/query")
def query_page(console: ConsoleDep, product: str = "", sql: str = "") -> Response:
    """The editor (prefilled from history's re-run link), the schema, the builder and my recent queries."""
    return _page(console, product=product[:100], sql=sql[:100_000])


def _built_sql(form: dict[str, str], dimensions: list[str]) -> str:
    """The structured builder's fields as a StructuredQuery, compiled to the same checked SQL."""
    measures = []
    for n in range(3):
        aggregate = form.get(f"aggregate_{n}", "")
        if aggregate:
            column = form.get(f"measure_{n}") or None
            measures.append({"aggregate": aggregate, "column": column, "as": f"{aggregate}_{column or 'rows'}"})
    filters = []
    if form.get("filter_column") and form.get("filter_op"):
        raw = form.get("filter_value", "")
        value: Any = raw
        if form["filter_op"] in ("in", "not_in"):
            value = [_scalar(v.strip()) for v in raw.split(",") if v.strip()]
        elif raw:
            value = _scalar(raw)
        filters.append({"column": form["filter_column"], "op": form["filter_op"], "value": value})
    query = StructuredQuery.model_validate(
        {"table": form.get("table", ""), "dimensions": dimensions, "measures": measures, "filters": filters}
    )
    return compile_query(query)


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


@dataclass(frozen=True)
class QueryForm:
    """The query form as sent: its text fields, and the builder's chosen dimensions."""

    fields: dict[str, str]
    dimensions: list[str]


async def query_form(request: Request) -> QueryForm:
    """Read the form here, so that the route itself is synchronous and runs in a worker thread."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return QueryForm(fields, [d for d in form.getlist("dimensions") if isinstance(d, str)])


@router.post("/query")
def run_query(
    sent: Annotated[QueryForm, Depends(query_form)], console: ReadConsoleDep, settings: SettingsDep
) -> Response:
    """Run the SQL (or the builder's query) under the buyer's agreement; one usage record per attempt.

    The form carries an idempotency key made when the page was drawn, so sending it twice charges once.
    The route is synchronous: a long query holds a worker thread, never the event loop.
    """
    buyer = console.buyer()
    fields = sent.fields
    product = fields.get("product", "")[:100]
    sql = fields.get("sql", "")[:100_000]
    if fields.get("builder"):
        try:
            sql = _built_sql(fields, sent.dimensions)
        except (ValidationError, ValueError) as error:
            detail = (
                "; ".join(str(e.get("msg", "")) for e in error.errors())
                if isinstance(error, ValidationError)
                else str(error)
            )
            outcome = {"error": {"code": "invalid_request", "message": detail}}
            return _page(console, product=product, sql=sql, outcome=outcome, status=422)
    typed_epsilon = fields.get("epsilon", "").strip()[:20]
    dry_run = fields.get("dry_run") == "1"
    # The metered path opens its own short transactions; release the page's connection while the query
    # waits for and runs in a sandbox worker (no pooled connection is held meanwhile).
    console.session.commit()
    try:
        epsilon = _epsilon(typed_epsilon)
        result = service.run_metered_query(
            get_database(console.request),
            settings,
            buyer,
            product_slug=product,
            sql=sql,
            # A dry run spends nothing and is not recorded, so it never takes the run's idempotency key.
            idempotency_key=None if dry_run else (fields.get("idempotency_key", "")[:200] or None),
            epsilon=epsilon,
            dry_run=dry_run,
        )
    except MarketError as error:
        # Raised before anything is recorded (no agreement, unknown product, a mistyped epsilon): shown next
        # to the SQL or the epsilon field.
        outcome = {"error": {"code": error.code, "message": console.message(error)}}
        return _page(
            console, product=product, sql=sql, outcome=outcome, status=error.status_code, epsilon=typed_epsilon
        )
    return _page(
        console, product=product, sql=sql, outcome=result.body, status=result.status_code, epsilon=typed_epsilon
    )


def _epsilon(text: str) -> float | None:
    """The epsilon typed for one DP query (empty: the plan's default); the service checks the plan's limits."""
    if not text:
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        value = float("nan")
    if not value > 0 or value > MAX_EPSILON:  # also refuses NaN and infinity
        raise Unprocessable("console_invalid_epsilon", value=text)
    return value


@router.post("/query/cancel")
def cancel_query(
    console: ReadConsoleDep, settings: SettingsDep, idempotency_key: Annotated[str, Form(min_length=1, max_length=200)]
) -> Response:
    """The Cancel button: stop my running query (named by the form's idempotency key) on the server.

    The query's own request then answers with the page saying it was cancelled and not charged.
    """
    console.session.commit()
    found = service.cancel_query(get_database(console.request), settings, console.user, idempotency_key)
    return JSONResponse({"state": found.state}, status_code=202 if found.state == "requested" else 200)
