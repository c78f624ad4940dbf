"""One typed settings object, read from MARKET_* environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict

_RUN_DIRS: dict[Path, Path] = {}
"""`Settings.run_dir` of each data directory, built once: a query asks for it half a dozen times, and each
`data_dir / "run"` built a new Path (docs/benchmarks.md "lean13")."""


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to an environment variable `MARKET_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="MARKET_", extra="ignore")

    data_dir: Path = Path("./var")
    """Holds the embedded SQLite database and the immutable product files."""
    database_url: str | None = None
    """A SQLAlchemy URL; unset means SQLite at `<data_dir>/market.db`."""
    database_lock_timeout_ms: int = 10_000
    """PostgreSQL `lock_timeout`: a statement waiting longer for a lock fails (answered 503, retry)."""
    database_idle_in_transaction_ms: int = 120_000
    """PostgreSQL `idle_in_transaction_session_timeout`: a transaction left idle this long is ended."""
    currency: str = "CNY"
    platform_name: str = "Public Data Marketplace"

    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None

    sandbox_memory_limit: str = "512MB"
    sandbox_threads: int = 2
    sandbox_timeout_seconds: float = 20.0
    sandbox_max_result_rows: int = 10_000
    sandbox_workers: int | None = Field(default=None, ge=1)
    """Sandbox queries running at once on this machine, across every API process; default: the cores."""
    sandbox_org_concurrency: int | None = Field(default=None, ge=1)
    """An organisation's queries in flight at once (past it, 429); default: half the workers, at least 1."""
    sandbox_queue_size: int | None = Field(default=None, ge=0)
    """Queries that may wait for a worker, machine-wide (past it, 503); default: sixteen per worker."""
    sandbox_queue_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long a query waits for a worker before 503 `sandbox_busy`."""
    sandbox_fair_queue: bool = True
    """Waiting queries get a worker by organisation in turn (sandbox/admission.py); off: the previous
    free-for-all (the first waiter to wake wins), kept for the fairness bench's side-by-side."""
    sandbox_prestart: bool = True
    """Start the sandbox workers with the server, so that the first queries do not wait for a spawn."""
    sandbox_fixed_timing: bool = True
    """No work skipped by what hidden rows hold (docs/sandbox.md, "Timing"): the staged threshold's
    recheck always runs and no scan is pruned by statistics. Off trades that for speed (docs/benchmarks.md)."""
    sandbox_max_join_fanout: int = Field(default=1024, ge=1)
    """Rows of the joined tables one row of a join's root table may meet (the product of the joined tables'
    fan-outs on their keys); a join past it is refused before it runs, `join_fanout` (docs/sandbox.md)."""
    sandbox_result_cache_entries: int = Field(default=1024, ge=0)
    """Answers each API process keeps for identical queries on the same version (0: no result cache)."""
    sandbox_result_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """About how many bytes of answers each API process keeps at most."""

    metering_group_commit: bool | None = None
    """Batch the bookkeeping writes of concurrent metered queries into one transaction (metering.group_commit);
    unset: on (SQLite: one writer at a time; PostgreSQL: one COMMIT and a few round trips per batch, its row
    locks taken in one order; metering.group_commit)."""

    query_fast_path: bool = True
    """Well-formed `POST /v1/queries` requests are answered by a lean ASGI middleware (market.fast_path) in front
    of FastAPI, through the route's own body (metering.endpoints.answer_query); anything else goes to FastAPI."""

    scheduler_enabled: bool = True

    smtp_host: str | None = None
    """SMTP server for e-mail notifications; unset means in-app notifications only."""
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_from: str = "noreply@market.example"
    smtp_timeout_seconds: float = 10.0
    upload_session_ttl_hours: float = Field(default=24.0, gt=0)
    """A resumable upload no part has touched for this long is removed (its bytes and its session) by upkeep."""
    registration_notice_working_days: int = 5
    """Length of a registration's public notice (公示), in working days (Monday to Friday)."""
    usage_chain_key: SecretStr | None = None
    """HMAC key of the usage hash chain; unset means `<data_dir>/usage-chain.key` (created once)."""
    usage_anchor_file: Path | None = None
    """Append-only file of signed chain checkpoints; unset means `<data_dir>/usage-anchors.jsonl`."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'market.db').resolve()}"

    @property
    def workers(self) -> int:
        """Sandbox workers for the whole machine: the setting, or the cores this process may use."""
        return self.sandbox_workers or max(1, len(os.sched_getaffinity(0)))

    @property
    def org_concurrency(self) -> int:
        """One organisation's queries in flight: below the workers, so other buyers always find one free."""
        return self.sandbox_org_concurrency or max(1, self.workers // 2)

    @property
    def queue_size(self) -> int:
        return self.sandbox_queue_size if self.sandbox_queue_size is not None else 16 * self.workers

    @property
    def run_dir(self) -> Path:
        """Machine-local coordination between API processes: sandbox slots, the scheduler's lock."""
        data_dir = self.data_dir
        found = _RUN_DIRS.get(data_dir)
        if found is None:
            found = _RUN_DIRS[data_dir] = data_dir / "run"
        return found

    @property
    def products_dir(self) -> Path:
        return self.data_dir / "products"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.products_dir, self.uploads_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
