"""`market billing ...`: run, finalize, reconcile and close periods from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from billing import invoices, payments, rating, reconciliation
from billing.config import Period
from market.db import Database
from market.errors import MarketError
from market.settings import get_settings

app = typer.Typer(help="Billing and finance: periods, invoices, reconciliation.", no_args_is_help=True)
console = Console(stderr=True)

PeriodOption = Annotated[str, typer.Option("--period", help="The period's first month, YYYY-MM.")]


def _database() -> Database:
    from market.cli import open_database

    return open_database()


def _fail(error: MarketError) -> None:
    console.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(1)


@app.command("run")
def run_command(
    period: PeriodOption,
    finalize: Annotated[bool, typer.Option("--finalize", help="Finalize the drafts afterwards.")] = False,
) -> None:
    """Rate the period's usage into one invoice per buyer. Safe to run again."""
    database = _database()
    try:
        with database.transaction() as session:
            summary = rating.run_period(session, Period.parse(period))
            finalized = invoices.finalize_period(session, None, Period.parse(period)) if finalize else []
    except MarketError as error:
        _fail(error)
    finally:
        database.dispose()
    print(json.dumps({**summary.__dict__, "finalized": len(finalized)}))


@app.command("finalize")
def finalize_command(period: PeriodOption) -> None:
    """Finalize every draft invoice of the period (numbers are allocated now)."""
    database = _database()
    try:
        with database.transaction() as session:
            done = invoices.finalize_period(session, None, Period.parse(period))
            numbers = [i.number for i in done]
    except MarketError as error:
        _fail(error)
    finally:
        database.dispose()
    print(json.dumps({"period": period, "finalized": numbers}))


@app.command("reconcile")
def reconcile_command(
    period: PeriodOption,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the report as CSV here.")] = None,
    xlsx_out: Annotated[Path | None, typer.Option("--xlsx", help="Also write the report as XLSX here.")] = None,
) -> None:
    """Compare usage, invoices, payments and distributions; exit 2 when there are mismatches."""
    database = _database()
    try:
        with database.transaction() as session:
            report = reconciliation.reconcile(session, None, Period.parse(period))
    except MarketError as error:
        _fail(error)
    finally:
        database.dispose()
    if csv_out:
        csv_out.write_bytes(reconciliation.to_csv(report))
    if xlsx_out:
        xlsx_out.write_bytes(reconciliation.to_xlsx(report))
    print(json.dumps(report.as_dict(), indent=2))
    if report.mismatches:
        raise typer.Exit(2)


@app.command("close")
def close_command(period: PeriodOption) -> None:
    """Close the period: lock it against further changes."""
    database = _database()
    try:
        with database.transaction() as session:
            reconciliation.close_period(session, None, Period.parse(period))
    except MarketError as error:
        _fail(error)
    finally:
        database.dispose()
    console.print(f"[green]period {period} closed[/green]")


@app.command("acknowledge")
def acknowledge_command(
    period: PeriodOption,
    key: Annotated[str, typer.Option("--key", help="The mismatch's key, from `market billing reconcile`.")],
    note: Annotated[str, typer.Option("--note", help="Why finance accepts the mismatch.")],
) -> None:
    """Acknowledge one reconciliation mismatch with a reason, so that the period may close."""
    database = _database()
    try:
        with database.transaction() as session:
            ack = reconciliation.acknowledge(session, None, Period.parse(period), key, note)
            print(json.dumps({"period": ack.period, "mismatch_key": ack.mismatch_key, "reason": ack.reason}))
    except MarketError as error:
        _fail(error)
    finally:
        database.dispose()


@app.command("recheck-payments")
def recheck_command() -> None:
    """Ask Stripe about card payments still pending."""
    database = _database()
    try:
        with database.transaction() as session:
            changed = payments.recheck_pending(session, get_settings())
    finally:
        database.dispose()
    print(json.dumps({"changed": changed}))
