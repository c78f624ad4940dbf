"""`market usage ...`: operations commands for the usage log."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from metering import chain

usage_app = typer.Typer(help="The usage log: verify its hash chains.", no_args_is_help=True)
console = Console(stderr=True)


@usage_app.command("verify")
def verify_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Check every buyer's usage hash chain; name the first broken record of each. Exit 1 if any is broken."""
    from market.cli import open_database

    database = open_database()
    try:
        with database.transaction() as session:
            report = chain.verify(session)
    finally:
        database.dispose()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "chains": report.chains,
                    "records": report.records,
                    "breaks": [b.__dict__ for b in report.breaks],
                }
            )
        )
    for broken in report.breaks:
        console.print(
            f"[red]broken[/red] chain of buyer {broken.buyer_org_id}: first bad record {broken.record_id} "
            f"(position {broken.chain_seq}): {broken.reason}"
        )
    if report.ok:
        console.print(f"[green]ok[/green]: {report.records} usage records in {report.chains} chains verify")
    raise typer.Exit(0 if report.ok else 1)
