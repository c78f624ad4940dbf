"""The OpenAPI document buyers integrate against: bearer auth and the one error shape on every route.

FastAPI documents its own validation error body ({"detail": [...]}) for 422, which this service never
sends; every error leaves as {"error": {"code", "message"}} (market.app). This module replaces that
with the real shape, documents the statuses every /v1 route can answer, and declares the API key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
    """Serve `document(app)` at /openapi.json."""

    def openapi() -> dict[str, Any]:
        return document(app)

    app.openapi = openapi  # type: ignore[method-assign]
