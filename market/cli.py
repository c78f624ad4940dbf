"""The `market` command: demo, serve, migrate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from market.db import Database, migrate
from market.settings import get_settings
from metering.cli import usage_app
from products.cli import app as products_app

app = typer.Typer(help="The public data marketplace.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def open_database() -> Database:
    """The configured database, migrated to the latest schema."""
    settings = get_settings()
    settings.ensure_dirs()
    database = Database.from_settings(settings)
    migrate(database)
    return database


@app.command("migrate")
def migrate_command() -> None:
    """Apply database migrations."""
    open_database().dispose()
    console.print("[green]database is up to date[/green]")


@app.command("demo")
def demo_command(
    keys_out: Annotated[Path, typer.Option("--keys-out", help="Where to write the demo users' API keys (JSON).")],
) -> None:
    """Build the demo marketplace in the data directory. Safe to run twice."""
    from market.demo import build_demo

    settings = get_settings()
    database = open_database()
    with console.status("building the demo marketplace (nyc-flights-2013)..."):
        keys = build_demo(database, settings)
    database.dispose()
    keys_out.parent.mkdir(parents=True, exist_ok=True)
    keys_out.write_text(json.dumps(keys, indent=2) + "\n")
    os.chmod(keys_out, 0o600)
    console.print(f"[green]demo ready[/green]; API keys written to {keys_out}")


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API (and the scheduler)."""
    import uvicorn

    from market.app import create_app

    settings = get_settings()
    database = open_database()
    uvicorn.run(create_app(settings, database), host=host, port=port)


@app.command("upkeep")
def upkeep_command() -> None:
    """Run the upkeep job once: expiries, reminders, invoice notices, registrations, revenue, e-mail."""
    from market.compliance.jobs import run_upkeep

    settings = get_settings()
    database = open_database()
    try:
        done = run_upkeep(database, settings)
    finally:
        database.dispose()
    print(json.dumps(done, sort_keys=True))


app.add_typer(usage_app, name="usage")
app.add_typer(products_app, name="products")


def _add_billing() -> None:
    from billing.cli import app as billing_app

    app.add_typer(billing_app, name="billing")


_add_billing()


def main() -> None:
    app()
