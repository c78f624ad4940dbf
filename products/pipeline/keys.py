"""Per-product pseudonymisation secrets, kept out of the data: never in Parquet, the database or the API.

Each product gets its own random 256-bit key in `<data_dir>/keys/`, readable only by the service, so a
person's pseudonym is stable across a product's versions and differs between products.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from market.settings import Settings


def product_secret(settings: Settings, product_id: str) -> bytes:
    """The product's HMAC key, created on first use."""
    directory = settings.data_dir / "keys"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{product_id}.key"
    if not path.exists():
        partial = Path(f"{path}.{secrets.token_hex(4)}")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        try:
            os.link(partial, path)  # first writer wins if two builds race
        except FileExistsError:
            pass
        finally:
            partial.unlink(missing_ok=True)
    return path.read_bytes()
