"""`market` fixtures on a marketplace with settings of its own, for test modules that need other settings than
tests/conftest.py's `market` (a busy sandbox, group commit forced on, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Market, running_market


def market_fixture(*, params: list[dict[str, Any]] | None = None, **settings: Any) -> Any:
    """A `market` fixture (as tests/conftest.py's) on a market with these `settings`; each of `params` (a
    dict of further settings) makes the fixture parametrised. In a test module: `market = market_fixture(...)`."""

    @pytest.fixture(name="market", params=params, ids=str if params else None)
    def market(request: pytest.FixtureRequest, database_factory: Any, tmp_path: Path) -> Iterator[Market]:
        more = getattr(request, "param", {})
        with running_market(database_factory, tmp_path / "data", **settings, **more) as running:
            yield running

    return market
