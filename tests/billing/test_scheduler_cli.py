"""The scheduled billing cycle (persistent job store, replicas never bill twice) and the CLI."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

from sqlalchemy import text
from typer.testing import CliRunner

from billing.config import Period
from billing.scheduler import CHECKPOINT_JOB, CYCLE_JOB, UPKEEP_JOB, run_cycle, start_scheduler
from market import clock
from market.clock import utcnow
from market.db import Database
from tests.billing.helpers import end_period, invoices_of, scene, this_period
from tests.conftest import Market


def _next_month_start():  # type: ignore[no-untyped-def]
    return Period.containing(utcnow(), 1).end + timedelta(hours=2)


def test_replicas_bill_a_period_once(market: Market) -> None:
    s = scene(market)
    replicas = [Database.from_settings(market.settings) for _ in range(3)]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def replica(database: Database) -> None:
        try:
            results.append(run_cycle(database, now=_next_month_start()))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=replica, args=(db,)) for db in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in replicas:
        database.dispose()
    assert not errors
    assert sorted(p for r in results for p in r) == [this_period()]
    assert len(invoices_of(market, s.commercial)) == 1
    # A restart (a later run) bills nothing again.
    assert run_cycle(market.database, now=_next_month_start()) == []


def test_jobs_persist_in_the_marketplace_database(market: Market, cli_env: None) -> None:
    clock.reset()  # APScheduler runs on real time
    next_runs = []
    for _ in range(2):  # a restart finds the stored job: no second job, and its next run is not postponed
        scheduler = start_scheduler(market.database, market.settings)
        scheduler.pause()
        job = scheduler.get_job(CYCLE_JOB)
        assert job is not None
        next_runs.append(job.next_run_time)
        scheduler.shutdown(wait=False)
    assert next_runs[1] <= next_runs[0] + timedelta(hours=1)
    with market.database.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(text("SELECT id FROM apscheduler_jobs"))]
    assert sorted(ids) == sorted([CYCLE_JOB, UPKEEP_JOB, CHECKPOINT_JOB])


def test_cli_run_finalize_reconcile_close(market: Market, cli_env: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from market.cli import app

    s = scene(market)
    runner = CliRunner()
    for command in ("run", "finalize", "close"):
        early = runner.invoke(app, ["billing", command, "--period", this_period()])
        assert early.exit_code == 1 and "period_not_ended" in early.output
        future = runner.invoke(app, ["billing", command, "--period", "2099-01"])
        assert future.exit_code == 1 and "period_in_future" in future.output
    end_period()
    first = runner.invoke(app, ["billing", "run", "--period", this_period(), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["invoices_created"] == 2
    again = runner.invoke(app, ["billing", "run", "--period", this_period(), "--finalize", "--json"])
    assert json.loads(again.stdout)["invoices_created"] == 0 and json.loads(again.stdout)["finalized"] == 2
    bad = runner.invoke(app, ["billing", "run", "--period", "2026-13"])
    assert bad.exit_code == 1

    csv_path = tmp_path / "recon.csv"
    recon = runner.invoke(app, ["billing", "reconcile", "--period", this_period(), "--csv", str(csv_path), "--json"])
    assert recon.exit_code == 2  # the commercial invoice is unpaid
    report = json.loads(recon.stdout)
    assert [m["reason"] for m in report["mismatches"]] == ["unpaid"]
    assert "unpaid" in csv_path.read_text()
    invoice = invoices_of(market, s.commercial)[0]
    market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=s.finance.headers,
        json={"amount_minor": invoice["total_minor"], "reference": "BOC-1"},
    )
    assert runner.invoke(app, ["billing", "reconcile", "--period", this_period()]).exit_code == 0
    assert runner.invoke(app, ["billing", "close", "--period", this_period()]).exit_code == 0
    assert runner.invoke(app, ["billing", "run", "--period", this_period()]).exit_code == 1


def test_concurrent_finalization_numbers_without_gaps(market: Market) -> None:
    from billing import invoices
    from market.accounts.models import Role
    from tests.billing.helpers import SQL, run
    from tests.factories import grant, query

    s = scene(market)
    for _ in range(3):
        buyer = market.actor(Role.BUYER)
        grant(market, s.listed, buyer, purpose="commercial", plan="standard")
        assert query(market, buyer, s.listed.slug, SQL).status_code == 200
    run(market, s.finance)
    drafts = [i["id"] for i in invoices_of(market, s.finance, status="draft")]
    assert len(drafts) == 5
    end_period()
    numbers: list[str] = []
    errors: list[BaseException] = []

    def finalize(invoice_id: str) -> None:
        database = Database.from_settings(market.settings)
        try:
            with database.transaction() as session:
                numbers.append(str(invoices.finalize(session, s.finance.principal, invoice_id).number))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            database.dispose()

    threads = [threading.Thread(target=finalize, args=(i,)) for i in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    year = numbers[0][4:8]
    assert sorted(numbers) == [f"INV-{year}-{n:06d}" for n in range(1, 5)] + [f"STM-{year}-000001"]
