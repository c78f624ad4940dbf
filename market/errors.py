"""One base error type. Every expected failure is a MarketError, turned into JSON in one handler."""

from __future__ import annotations

from typing import Any

from market.messages import render


class MarketError(Exception):
    """A failure the caller can act on: a stable code, an HTTP status and a message."""

    status_code = 400

    def __init__(
        self, code: str, /, *, status_code: int | None = None, retry_after: int | None = None, **params: Any
    ) -> None:
        self.code = code
        self.params = params
        if status_code is not None:
            self.status_code = status_code
        self.retry_after = retry_after
        """Seconds to wait before retrying (overload), sent as the Retry-After header."""
        self.message = render(code, None, **params)
        super().__init__(f"{code}: {self.message}")

    def to_body(self, locale: str | None = None) -> dict[str, Any]:
        """The error shape, with the message in `locale` (default: the locale it was raised in)."""
        message = self.message if locale is None else render(self.code, locale, **self.params)
        return {"error": {"code": self.code, "message": message}}

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the error needs: Retry-After for overload."""
        return {} if self.retry_after is None else {"Retry-After": str(max(1, self.retry_after))}


class BadRequest(MarketError):
    status_code = 400


class Unauthenticated(MarketError):
    status_code = 401


class Forbidden(MarketError):
    status_code = 403


class NotFound(MarketError):
    status_code = 404


class Conflict(MarketError):
    status_code = 409


class Unprocessable(MarketError):
    status_code = 422


class TooManyRequests(MarketError):
    status_code = 429


class ServiceUnavailable(MarketError):
    """Overload or a dependency down: the caller should retry after Retry-After."""

    status_code = 503
