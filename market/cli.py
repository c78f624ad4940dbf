"""The `market` command: init, demo, serve, migrate, and the usage, products and billing groups.

Where the marketplace lives, the output streams and user errors are market.cli_support's.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from market.cli_support import JsonOption, cli_settings, emit, err, open_database, user_errors
from metering.cli import usage_app
from products.cli import app as products_app

app = typer.Typer(
    help="The public data marketplace.", no_args_is_help=True, add_completion=False, rich_markup_mode=None
)


def _version() -> str:
    try:
        return version("public-data-market")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"market {_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """The public data marketplace. The data directory comes from MARKET_DATA_DIR or the configuration file
    (MARKET_CONFIG, default ~/.config/market/config.toml: data_dir = "..."); only `init` and `demo` create one."""


@app.command("init")
@user_errors
def init_command(as_json: JsonOption = False) -> None:
    """Create an empty marketplace in the data directory (or bring an existing one's schema up to date)."""
    settings = cli_settings()
    open_database(create=True).dispose()
    emit(as_json, {"data_dir": str(settings.data_dir)}, f"marketplace ready in {settings.data_dir}")


@app.command("migrate")
@user_errors
def migrate_command(as_json: JsonOption = False) -> None:
    """Apply database migrations to an existing marketplace."""
    open_database().dispose()
    emit(as_json, {"status": "up to date"}, "database is up to date")


def _write_secret_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    os.chmod(path, 0o600)


@app.command("demo")
@user_errors
def demo_command(
    keys_out: Annotated[
        Path, typer.Option("--keys-out", metavar="FILE", help="Where to write the demo users' API keys (JSON).")
    ],
    logins_out: Annotated[
        Path | None,
        typer.Option("--logins-out", metavar="FILE", help="Where to write the demo users' web sign-ins (JSON)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build the demo marketplace in the data directory, creating it if needed. Safe to run twice.

    A new demo dates from the first day of last month, and its buyers ran a few queries on the 15th: last
    month is a finished billing period with usage (market/demo_history.py)."""
    from market.clock import travel_to
    from market.demo import build_demo, demo_logins
    from market.demo_history import add_history, is_fresh, previous_month_start

    settings = cli_settings()
    keys_out.parent.mkdir(parents=True, exist_ok=True)
    keys_out.touch(mode=0o600)  # a bad path fails now, not after the build
    database = open_database(create=True)
    try:
        with err.status("building the demo marketplace (nyc-flights-2013)..."):
            if is_fresh(database):
                with travel_to(previous_month_start(), frozen=False):
                    keys = build_demo(database, settings)
            else:
                keys = build_demo(database, settings)
            history = add_history(database, settings)
            logins = demo_logins(database) if logins_out is not None else None
    finally:
        database.dispose()
    _write_secret_json(keys_out, keys)
    if logins_out is not None:
        _write_secret_json(logins_out, logins)
    emit(
        as_json,
        {"data_dir": str(settings.data_dir), "keys_out": str(keys_out), "roles": sorted(keys), "history": history},
        f"demo ready in {settings.data_dir} ({history} queries last month); API keys written to {keys_out}",
    )


@app.command("serve")
@user_errors
def serve_command(
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="API processes (uvicorn workers); default: the machine's cores."),
    ] = None,
) -> None:
    """Serve the HTTP API and the web console (and the scheduler, in one process) for an existing marketplace.

    Every process shares the machine-wide sandbox limits (MARKET_SANDBOX_WORKERS and the others, see
    docs/sandbox.md), so adding API processes never adds sandbox workers running at once.
    """
    import uvicorn

    from market.app import create_app

    settings = cli_settings()
    open_database().dispose()
    processes = workers or max(1, len(os.sched_getaffinity(0)))
    if processes == 1:
        uvicorn.run(create_app(settings), host=host, port=port)
        return
    # Each worker process builds its app from the environment: hand it the marketplace found here
    # (possibly from the configuration file).
    os.environ["MARKET_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["MARKET_DATABASE_URL"] = settings.database_url
    from market.serving import WORKER_HEALTHCHECK_SECONDS, serve_processes, supports_reuse_port

    if not supports_reuse_port():  # pragma: no cover - Linux and the BSDs have it
        uvicorn.run(
            "market.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=processes,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
        return
    # A listening socket per process: the kernel spreads connections over them (market.serving).
    serve_processes("market.app:create_app", host=host, port=port, workers=processes)


@app.command("upkeep")
@user_errors
def upkeep_command(as_json: JsonOption = False) -> None:
    """Run the upkeep job once: expiries, reminders, invoice notices, registrations, revenue, e-mail."""
    from market.compliance.jobs import run_upkeep

    settings = cli_settings()
    database = open_database()
    try:
        done = run_upkeep(database, settings)
    finally:
        database.dispose()
    changed = ", ".join(f"{name} {count}" for name, count in sorted(done.items()) if count) or "nothing to do"
    emit(as_json, done, f"upkeep: {changed}")


app.add_typer(usage_app, name="usage")
app.add_typer(products_app, name="products")


def _add_billing() -> None:
    from billing.cli import app as billing_app

    app.add_typer(billing_app, name="billing")


_add_billing()


def main() -> None:
    app()
