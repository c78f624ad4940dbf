"""One typed settings object, read from MARKET_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to an environment variable `MARKET_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="MARKET_", extra="ignore")

    data_dir: Path = Path("./var")
    """Holds the embedded SQLite database and the immutable product files."""
    database_url: str | None = None
    """A SQLAlchemy URL; unset means SQLite at `<data_dir>/market.db`."""
    currency: str = "CNY"
    platform_name: str = "Public Data Marketplace"

    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None

    sandbox_memory_limit: str = "512MB"
    sandbox_threads: int = 2
    sandbox_timeout_seconds: float = 20.0
    sandbox_max_result_rows: int = 10_000

    scheduler_enabled: bool = True

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
