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


def _write_secret_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    os.chmod(path, 0o600)


@app.command("demo")
def demo_command(
    keys_out: Annotated[Path, typer.Option("--keys-out", help="Where to write the demo users' API keys (JSON).")],
    logins_out: Annotated[
        Path | None, typer.Option("--logins-out", help="Where to write the demo users' web sign-ins (JSON).")
    ] = None,
) -> None:
    """Build the demo marketplace in the data directory. Safe to run twice."""
    from market.demo import build_demo, demo_logins

    settings = get_settings()
    database = open_database()
    with console.status("building the demo marketplace (nyc-flights-2013)..."):
        keys = build_demo(database, settings)
        logins = demo_logins(database) if logins_out is not None else None
    database.dispose()
    _write_secret_json(keys_out, keys)
    console.print(f"[green]demo ready[/green]; API keys written to {keys_out}")
    if logins_out is not None:
        _write_secret_json(logins_out, logins)
        console.print(f"web sign-ins (e-mail and password) written to {logins_out}")


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API, the web console (http://HOST:PORT/) and the scheduler."""
    import uvicorn

    from market.app import create_app

    settings = get_settings()
    database = open_database()
    uvicorn.run(create_app(settings, database), host=host, port=port)


app.add_typer(usage_app, name="usage")
app.add_typer(products_app, name="products")


def _add_billing() -> None:
    from billing.cli import app as billing_app

    app.add_typer(billing_app, name="billing")


_add_billing()


def main() -> None:
    app()
