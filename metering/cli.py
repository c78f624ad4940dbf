"""`market usage ...`: operations commands for the usage log."""

from __future__ import annotations

import typer

from market.cli_support import JsonOption, emit, err, open_database, user_errors
from metering import chain

usage_app = typer.Typer(help="The usage log: verify its hash chains.", no_args_is_help=True, rich_markup_mode=None)


@usage_app.command("verify")
@user_errors
def verify_command(as_json: JsonOption = False) -> None:
    """Check every buyer's usage hash chain; name the first broken record of each. Exit 1 if any is broken."""
    database = open_database()
    try:
        with database.transaction() as session:
            report = chain.verify(session)
    finally:
        database.dispose()
    breaks = [
        f"broken chain of buyer {b.buyer_org_id}: first bad record {b.record_id} (position {b.chain_seq}): {b.reason}"
        for b in report.breaks
    ]
    summary = f"{report.records} usage records in {report.chains} chains"
    emit(
        as_json,
        {
            "ok": report.ok,
            "chains": report.chains,
            "records": report.records,
            "breaks": [b.__dict__ for b in report.breaks],
        },
        f"ok: {summary} verify" if report.ok else "\n".join([*breaks, f"FAILED: {summary}"]),
    )
    if not report.ok:
        err.print(f"[red]{len(report.breaks)} broken chain(s)[/red]", highlight=False)
    raise typer.Exit(0 if report.ok else 1)
