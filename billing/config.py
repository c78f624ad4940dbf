"""Billing settings, read from MARKET_BILLING_* environment variables, and billing periods."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from market.accounts import uscc
from market.errors import BadRequest


class BillingSettings(BaseSettings):
    """How billing runs: the period length, payment terms and what the invoice says about the seller."""

    model_config = SettingsConfigDict(env_prefix="MARKET_BILLING_", extra="ignore")

    period_months: int = 1
    """Length of a billing period in calendar months (1 = monthly, 3 = quarterly, 12 = yearly)."""
    payment_terms_days: int = 30
    # The seller (the platform) on invoices, credit notes and statements. Empty means not configured: the
    # documents say so ("not provided"), never print a placeholder.
    seller_name: str = ""
    """The platform's registered name, e.g. 北京公共数据运营有限公司."""
    seller_tax_id: str = ""
    """统一社会信用代码 (unified social credit code); checked with its GB 32100-2015 checksum at start."""
    seller_address: str = ""
    seller_phone: str = ""
    seller_bank: str = ""
    """开户行: the bank and branch that receives transfers."""
    seller_bank_account: str = ""

    @field_validator("seller_tax_id")
    @classmethod
    def _valid_uscc(cls, value: str) -> str:
        value = "".join(value.split()).upper()
        found = uscc.problem(value) if value else None
        if found is not None:
            raise ValueError(f"MARKET_BILLING_SELLER_TAX_ID is not a valid unified social credit code ({found[0]})")
        return value


@lru_cache(maxsize=1)
def billing_settings() -> BillingSettings:
    return BillingSettings()


PERIOD_PATTERN = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
FIRST_YEAR, LAST_YEAR = 1, 9998
"""Years a period may start in: those of a calendar date, less the last, so a yearly period ends on a date."""


@dataclass(frozen=True)
class Period:
    """A billing period: `months` calendar months starting at `key` (YYYY-MM), UTC."""

    key: str
    months_count: int

    @classmethod
    def parse(cls, key: str, months: int | None = None) -> Period:
        """The period starting at `key`; BadRequest unless it is YYYY-MM on a period boundary."""
        length = months or billing_settings().period_months
        match = PERIOD_PATTERN.fullmatch(key or "")
        if match is None:
            raise BadRequest("invalid_period", period=key)
        if not FIRST_YEAR <= int(match.group(1)) <= LAST_YEAR:
            raise BadRequest("period_out_of_range", period=key, first=FIRST_YEAR, last=LAST_YEAR)
        month = int(match.group(2))
        if (month - 1) % length != 0:
            raise BadRequest("period_not_aligned", period=key, months=length)
        return cls(key, length)

    @property
    def year(self) -> int:
        return int(self.key[:4])

    @property
    def months(self) -> list[str]:
        """The calendar months (YYYY-MM) inside the period."""
        year, month = self.year, int(self.key[5:7])
        out = []
        for _ in range(self.months_count):
            out.append(f"{year:04d}-{month:02d}")
            month += 1
            if month > 12:
                year, month = year + 1, 1
        return out

    @property
    def start(self) -> datetime:
        return datetime(self.year, int(self.key[5:7]), 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the period."""
        last = self.months[-1]
        year, month = int(last[:4]), int(last[5:7]) + 1
        if month > 12:
            year, month = year + 1, 1
        return datetime(year, month, 1, tzinfo=UTC)

    def next(self) -> Period:
        return Period.parse(self.end.strftime("%Y-%m"), self.months_count)

    def previous(self) -> Period:
        year, month = self.year, int(self.key[5:7]) - self.months_count
        while month < 1:
            year, month = year - 1, month + 12
        return Period.parse(f"{year:04d}-{month:02d}", self.months_count)

    @classmethod
    def containing(cls, moment: datetime, months: int | None = None) -> Period:
        length = months or billing_settings().period_months
        month = (moment.month - 1) // length * length + 1
        return cls.parse(f"{moment.year:04d}-{month:02d}", length)
