"""The health check: its own database connection and thread, apart from the request path.

`GET /healthz` must answer while every request thread waits on the sandbox and the request pool is
in use, so it shares neither: it is an async route (answered on the event loop, not in the request
thread pool), its one `SELECT 1` runs on a dedicated thread over a dedicated one-connection pool,
and concurrent checks share the one in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from sqlalchemy import Engine

from market.db import make_engine
from market.errors import ServiceUnavailable
from market.settings import Settings

CHECK_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 2


class HealthCheck:
    """Answers whether the service can serve: the database answers a trivial query in time."""

    def __init__(self, settings: Settings) -> None:
        self._engine: Engine = make_engine(settings.effective_database_url, pool_size=1, max_overflow=0)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
        self._lock = threading.Lock()
        self._pending: concurrent.futures.Future[None] | None = None

    def _ping(self) -> None:
        with self._engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def _shared_ping(self) -> concurrent.futures.Future[None]:
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = self._executor.submit(self._ping)
            return self._pending

    async def check(self) -> None:
        """Return when the database answered; raise ServiceUnavailable (503, Retry-After) otherwise."""
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._shared_ping()), CHECK_TIMEOUT_SECONDS)
        except TimeoutError as error:
            raise ServiceUnavailable(
                "service_unavailable", detail="the database did not answer in time", retry_after=RETRY_AFTER_SECONDS
            ) from error
        except Exception as error:
            raise ServiceUnavailable(
                "service_unavailable", detail="the database is unreachable", retry_after=RETRY_AFTER_SECONDS
            ) from error

    def close(self) -> None:
        """Close the connection; the check still works afterwards (it reconnects), as the app may be
        served again (several lifespans, e.g. test clients). The idle thread ends with the process."""
        self._engine.dispose()
