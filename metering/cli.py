"""`market usage ...`: operations commands for the usage log."""

from __future__ import annotations

import typer

from market.cli_support import JsonOption, emit, err, transaction, user_errors
from metering import anchors, chain

usage_app = typer.Typer(
    help="The usage log: verify its keyed hash chains and checkpoints.", no_args_is_help=True, rich_markup_mode=None
)


@usage_app.command("verify")
@user_errors
def verify_command(as_json: JsonOption = False) -> None:
    """Check every buyer's keyed usage hash chain and the signed checkpoints of their heads; name the
    first broken record of each chain. Exit 1 if anything is broken."""
    with transaction(write=False) as session:  # reads only: never holds the writer lock
        report = chain.verify(session)
        checkpoints, anchor_breaks = anchors.check_checkpoints(session)
    report = chain.VerifyReport(
        report.chains,
        report.records,
        [*report.breaks, *(chain.Break(b.buyer_org_id, b.record_id, b.chain_seq, b.reason) for b in anchor_breaks)],
    )
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
            "checkpoints": checkpoints,
        },
        f"ok: {summary} verify against {checkpoints} checkpoints"
        if report.ok
        else "\n".join([*breaks, f"FAILED: {summary}"]),
    )
    if not report.ok:
        err.print(f"[red]{len(report.breaks)} broken chain(s)[/red]", highlight=False)
    raise typer.Exit(0 if report.ok else 1)


@usage_app.command("checkpoint")
@user_errors
def checkpoint_command(as_json: JsonOption = False) -> None:
    """Append a signed checkpoint of every chain head to the anchor file (the scheduler does it hourly)."""
    with transaction() as session:
        chains = anchors.write_checkpoint(session)
    emit(as_json, {"chains": chains}, f"checkpoint written: {chains} chain heads")
