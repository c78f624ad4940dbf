"""The demo's second operator and its person-level product, built through the desensitising pipeline.

`bj-sme-tax-credits-2025`: a year of monthly tax records of 6,000 small businesses run by sole
proprietors in Beijing, generated deterministically. The raw CSV holds the owner's name, an
ID-card-like number and birth date; the recipe drops the name, pseudonymises the ID number into the
privacy unit, generalises the birth date to a decade and keeps districts, industries and amounts,
so the irreversibility audit is clean and every (district, decade, industry) group has 12 or 13 businesses.
"""

from __future__ import annotations

import csv
import random
from decimal import Decimal
from pathlib import Path

from products.pipeline.recipe import Recipe
from products.schemas import PlanIn
from sandbox.policy import DifferentialPrivacy, MeasureBounds, PrivacyUnitKind, ProtectionPolicy, TablePolicy

CREDIT_SLUG = "bj-sme-tax-credits-2025"
BUSINESSES = 6_000
DISTRICTS = {
    "110101": "Dongcheng", "110102": "Xicheng", "110105": "Chaoyang", "110106": "Fengtai",
    "110107": "Shijingshan", "110108": "Haidian", "110109": "Mentougou", "110111": "Fangshan",
    "110112": "Tongzhou", "110113": "Shunyi", "110114": "Changping", "110115": "Daxing",
    "110116": "Huairou", "110117": "Pinggu", "110118": "Miyun", "110119": "Yanqing",
}  # fmt: skip
INDUSTRIES = ["retail", "catering", "logistics", "manufacturing", "software", "services"]
DECADES = [1960, 1970, 1980, 1990, 2000]
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Qiang", "Xiu", "Hao", "Lin", "Tao", "Yu", "Jun", "Na"]
SCENARIOS = ["sme-credit-assessment", "policy-evaluation", "economic-research"]


def _check_character(body: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a mainland ID number."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def write_csv(target: Path) -> Path:
    """The synthetic raw file, identical on every run (seeded), with a few dirty rows to clean."""
    rng = random.Random(20250101)
    codes = list(DISTRICTS)
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["owner_name", "id_number", "birth_date", "district", "industry", "month", "revenue_yuan",
             "tax_credit_yuan", "employees"]
        )  # fmt: skip
        for business in range(BUSINESSES):
            code = codes[business % 16]
            industry = INDUSTRIES[business // 16 % 6]
            year = DECADES[business // 96 % 5] + rng.randrange(10)
            birth = f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
            body = f"{code}{birth.replace('-', '')}{business % 1000:03d}"
            id_number = body + _check_character(body)
            name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}{rng.choice(GIVEN).lower()}"
            district = DISTRICTS[code]
            employees = rng.randrange(1, 20)
            base = rng.randrange(20_000, 400_000)
            for month in range(1, 13):
                revenue = Decimal(base * (90 + rng.randrange(21)) // 100) + Decimal(rng.randrange(100)) / 100
                credit = (revenue * Decimal("0.03")).quantize(Decimal("0.01"))
                row = [name, id_number, birth, district, industry, month, revenue, credit, employees]
                if business % 997 == 0 and month == 1:
                    writer.writerow(
                        [name, id_number, birth, f"  {district} ", industry, month, revenue, credit, employees]
                    )
                    writer.writerow(row)  # a duplicate the recipe removes
                    continue
                writer.writerow(row)
        writer.writerow(["Test Entry", "110101199001011234", "1990-01-01", "Atlantis", "retail", 1, 10, 1, 1])
        writer.writerow(["Bad Amount", "110101199001011234", "1990-01-01", "Haidian", "retail", 2, -50, 0, 1])
    return target


RECIPE = Recipe.model_validate(
    {
        "tables": {
            "tax_credits": {
                "columns": {
                    "business": {"source": "id_number", "required": True, "transform": {"kind": "pseudonymise"}},
                    "district": {"allowed": list(DISTRICTS.values()), "on_invalid": "quarantine"},
                    "industry": {"allowed": INDUSTRIES},
                    "owner_birth_decade": {
                        "source": "birth_date",
                        "type": "date",
                        "required": True,
                        "transform": {"kind": "truncate_date", "unit": "decade"},
                    },
                    "month": {"type": "integer", "min": 1, "max": 12, "required": True},
                    "revenue_yuan": {"type": "decimal(14,2)", "min": 0, "required": True},
                    "tax_credit_yuan": {"type": "decimal(14,2)", "min": 0},
                    "employees": {"type": "integer", "min": 0, "max": 10000},
                },
                "dedupe": True,
                "quasi_identifiers": ["district", "owner_birth_decade", "industry"],
            }
        }
    }
)

POLICY = ProtectionPolicy(
    min_group_size=10,
    tables={
        "tax_credits": TablePolicy(
            privacy_unit="business",
            dimensions=["district", "industry", "owner_birth_decade", "month"],
            measures=["revenue_yuan", "tax_credit_yuan", "employees"],
            bounds={
                "revenue_yuan": MeasureBounds(min=0, max=1_000_000),
                "tax_credit_yuan": MeasureBounds(min=0, max=50_000),
                "employees": MeasureBounds(min=0, max=10_000),
            },
        )
    },
    # The unit is a person (a sole proprietor): DP mode, as DOMAIN.md requires for natural persons.
    mode="dp",
    privacy_unit_kind=PrivacyUnitKind.NATURAL_PERSON,
    dp=DifferentialPrivacy(
        max_groups_per_unit=12,
        max_rows_per_group=12,
        public_keys={"district": list(DISTRICTS.values()), "industry": INDUSTRIES, "month": list(range(1, 13))},
        delta=1e-7,
        agreement_epsilon=10.0,
        version_epsilon_cap=40.0,
        query_epsilon=1.0,
        min_query_epsilon=0.05,
        max_query_epsilon=2.0,
    ),
)

PLANS = [
    PlanIn.model_validate(
        {
            "code": "public-interest",
            "title": "Policy evaluation and research (free, supervised)",
            "kind": "public_interest",
            "monthly_query_quota": 5_000,
        }
    ),
    PlanIn.model_validate(
        {
            "code": "commercial-standard",
            "title": "Commercial: 3.00 CNY per query, capped at 3,000 CNY a month",
            "kind": "commercial",
            "per_query_minor": 300,
            "monthly_cap_minor": 300_000,
        }
    ),
]

DOCUMENTATION = """# Small-business tax credits, Beijing, 2025

Monthly revenue and tax credits of 6,000 sole-proprietor businesses (synthetic demo data).

- **Privacy unit**: `business`, a keyed pseudonym of the owner's ID number (HMAC, this product only).
- **Generalised**: the owner's birth date is kept only as a decade (`owner_birth_decade`).
- **Dropped**: the owner's name and the raw ID number never enter the product.
- Every (district, birth decade, industry) combination covers at least 10 businesses.
"""
