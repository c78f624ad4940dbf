"""The OpenAPI document buyers integrate against: bearer auth and the one error shape on every route.

FastAPI documents its own validation error body ({"detail": [...]}) for 422, which this service never
sends; every error leaves as {"error": {"code", "message"}} (market.app). This module replaces that
with the real shape, documents the statuses every /v1 route can answer, and declares the API key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

VENDOR_DIR = Path(__file__).parent / "console" / "static" / "vendor"
"""Browser assets vendored by scripts/vendor_assets.sh (versions and sha256 in VENDOR.md)."""
VENDOR_URL = "/static/vendor"

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable snake_case code, e.g. product_not_found."},
                "message": {"type": "string", "description": "What went wrong and what to change."},
                "query_id": {"type": "string", "description": "POST /v1/queries only: the metered attempt."},
            },
        }
    },
}

V1_ERRORS = {
    "400": "The input is well-formed but refused, e.g. an unknown period or an unreadable body.",
    "401": "No API key, or an unknown or revoked one: send 'Authorization: Bearer <key>'.",
    "403": "The key's role or organisation may not do this.",
    "404": "No such object visible to the caller.",
    "409": "The object's state does not allow this now, or the request repeats a different one.",
    "422": "The request does not fit this operation: the message names each field and what to change.",
}
PUBLIC_PATHS = frozenset({"/v1/catalogue.jsonld"})
"""The /v1 routes that answer without an API key: the DCAT catalogue, harvested by portals."""

BODY_ERRORS = {"415": "The body was sent with a Content-Type this operation does not read."}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the real error shape and bearer authentication (built once)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key issued with POST /v1/users/{id}/keys.",
        }
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for response in responses.values():
                content = response.get("content", {})
                # FastAPI's default JSON entry, beside the media type the route really sends (JSON-LD...).
                if len(content) > 1 and not content.get("application/json", {}).get("schema", True):
                    del content["application/json"]
            if not path.startswith("/v1/") or path in PUBLIC_PATHS:
                continue
            operation["security"] = [{"apiKey": []}]
            errors = {**V1_ERRORS, **(BODY_ERRORS if "requestBody" in operation else {})}
            for status, description in errors.items():
                responses.setdefault(status, _error_response(description))
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Serve `document(app)` at /openapi.json, and Swagger UI (/docs) and ReDoc (/redoc) from the app's own
    vendored assets: the pages load nothing from another host, so they work on an intranet."""

    def openapi() -> dict[str, Any]:
        return document(app)

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(VENDOR_URL, StaticFiles(directory=VENDOR_DIR), name="vendor")
    swagger = f"{VENDOR_URL}/swagger-ui-dist"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{swagger}/swagger-ui-bundle.js",
            swagger_css_url=f"{swagger}/swagger-ui.css",
            swagger_favicon_url=f"{swagger}/favicon-32x32.png",
            oauth2_redirect_url=None,
            # No badge from the public validator service: nothing leaves the intranet.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            redoc_js_url=f"{VENDOR_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{swagger}/favicon-32x32.png",
            with_google_fonts=False,
        )
