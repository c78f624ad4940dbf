"""`market billing ...`: run, finalize, reconcile and close periods from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from billing import card_payments, invoices, rating, reconciliation
from billing.config import Period
from market.cli_support import JsonOption, cli_settings, emit, open_database, transaction, user_errors, write_output

app = typer.Typer(
    help="Billing and finance: periods, invoices, reconciliation.", no_args_is_help=True, rich_markup_mode=None
)

PeriodOption = Annotated[
    str, typer.Option("--period", metavar="YYYY-MM", help="The period's first month, e.g. 2026-11.")
]


@app.command("run")
@user_errors
def run_command(
    period: PeriodOption,
    finalize: Annotated[bool, typer.Option("--finalize", help="Finalize the drafts afterwards.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Rate the period's usage into one invoice per buyer. Safe to run again."""
    parsed = Period.parse(period)
    with transaction() as session:
        summary = rating.run_period(session, parsed)
        finalized = invoices.finalize_period(session, None, parsed) if finalize else []
    result = {**summary.__dict__, "finalized": len(finalized)}
    emit(
        as_json,
        result,
        f"{result['period']}: {result['invoices_created']} invoices and {result['lines_created']} lines created, "
        f"{result['usage_linked']} usage records linked; {result['draft_invoices']} drafts totalling "
        f"{result['draft_total_minor']} minor units; {result['finalized']} finalized",
    )


@app.command("finalize")
@user_errors
def finalize_command(period: PeriodOption, as_json: JsonOption = False) -> None:
    """Finalize every draft invoice of the period (numbers are allocated now)."""
    parsed = Period.parse(period)
    with transaction() as session:
        numbers = [i.number for i in invoices.finalize_period(session, None, parsed)]
    emit(
        as_json,
        {"period": parsed.key, "finalized": numbers},
        f"{parsed.key}: {len(numbers)} invoices finalized" + (f": {', '.join(map(str, numbers))}" if numbers else ""),
    )


@app.command("reconcile")
@user_errors
def reconcile_command(
    period: PeriodOption,
    csv_out: Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Also write the report as CSV.")] = None,
    xlsx_out: Annotated[
        Path | None, typer.Option("--xlsx", metavar="FILE", help="Also write the report as XLSX.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare usage, invoices, payments and distributions; exit 2 when there are mismatches."""
    parsed = Period.parse(period)
    with transaction() as session:
        report = reconciliation.reconcile(session, None, parsed)
    if csv_out:
        write_output(csv_out, reconciliation.to_csv(report))
    if xlsx_out:
        write_output(xlsx_out, reconciliation.to_xlsx(report))
    lines = [
        f"{report.period}: usage billable {report.usage_billable_minor}, invoiced {report.invoiced_minor}, "
        f"paid {report.paid_minor}, distributed {report.distributed_minor} (minor units)"
    ]
    lines += [
        f"mismatch {m.reason}: {m.amount_minor} minor units {m.currency}, {m.detail} "
        + ", ".join(f"{k}={v}" for k, v in m.objects.items())
        + f" key={m.key}"
        + (" (acknowledged)" if m.acknowledgement else "")
        for m in report.mismatches
    ] or ["no mismatches"]
    emit(as_json, report.as_dict(), "\n".join(lines))
    if report.mismatches:
        raise typer.Exit(2)


@app.command("close")
@user_errors
def close_command(period: PeriodOption, as_json: JsonOption = False) -> None:
    """Close the period: lock it against further changes."""
    parsed = Period.parse(period)
    with transaction() as session:
        row = reconciliation.close_period(session, None, parsed)
        status = row.status
    emit(as_json, {"period": parsed.key, "status": status}, f"period {parsed.key} {status}")


@app.command("acknowledge")
@user_errors
def acknowledge_command(
    period: PeriodOption,
    key: Annotated[str, typer.Option("--key", help="The mismatch's key, from `market billing reconcile`.")],
    note: Annotated[str, typer.Option("--note", help="Why finance accepts the mismatch.")],
    as_json: JsonOption = False,
) -> None:
    """Acknowledge one reconciliation mismatch with a reason, so that the period may close."""
    parsed = Period.parse(period)
    with transaction() as session:
        ack = reconciliation.acknowledge(session, None, parsed, key, note)
        done = {"period": ack.period, "mismatch_key": ack.mismatch_key, "reason": ack.reason}
    emit(as_json, done, f"mismatch {done['mismatch_key']} ({done['reason']}) of {parsed.key} acknowledged")


@app.command("recheck-payments")
@user_errors
def recheck_command(as_json: JsonOption = False) -> None:
    """Settle card payments still pending from what Stripe says, and find intents we never stored."""
    settings = cli_settings()
    database = open_database()
    try:
        changed = card_payments.recheck_pending(database, settings)
    finally:
        database.dispose()
    emit(as_json, {"changed": changed}, f"{changed} pending card payments changed")
