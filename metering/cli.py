"""`market usage ...`: operations commands for the usage log."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from metering import anchors, chain

usage_app = typer.Typer(help="The usage log: verify its keyed hash chains and checkpoints.", no_args_is_help=True)
console = Console(stderr=True)


@usage_app.command("verify")
def verify_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Check every buyer's keyed usage hash chain and the signed checkpoints of their heads; name the
    first broken record of each chain. Exit 1 if anything is broken."""
    from market.cli import open_database

    database = open_database()
    try:
        with database.transaction() as session:
            report = chain.verify(session)
            checkpoints, anchor_breaks = anchors.check_checkpoints(session)
    finally:
        database.dispose()
    report = chain.VerifyReport(
        report.chains,
        report.records,
        [*report.breaks, *(chain.Break(b.buyer_org_id, b.record_id, b.chain_seq, b.reason) for b in anchor_breaks)],
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "chains": report.chains,
                    "records": report.records,
                    "breaks": [b.__dict__ for b in report.breaks],
                    "checkpoints": checkpoints,
                }
            )
        )
    for broken in report.breaks:
        console.print(
            f"[red]broken[/red] chain of buyer {broken.buyer_org_id}: first bad record {broken.record_id} "
            f"(position {broken.chain_seq}): {broken.reason}"
        )
    if report.ok:
        console.print(
            f"[green]ok[/green]: {report.records} usage records in {report.chains} chains verify "
            f"against {checkpoints} checkpoints"
        )
    raise typer.Exit(0 if report.ok else 1)


@usage_app.command("checkpoint")
def checkpoint_command() -> None:
    """Append a signed checkpoint of every chain head to the anchor file (the scheduler does it hourly)."""
    from market.cli import open_database

    database = open_database()
    try:
        with database.transaction() as session:
            chains = anchors.write_checkpoint(session)
    finally:
        database.dispose()
    console.print(f"[green]checkpoint written[/green]: {chains} chain heads")
