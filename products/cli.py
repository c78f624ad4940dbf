"""`market products ...`: an operator's commands to take a CSV or Parquet file to a product version over HTTP.

The file is hashed, then streamed to POST /v1/uploads with a progress bar; the hash is the
Idempotency-Key, so running the command again after a failure never stores the file twice.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

app = typer.Typer(
    help="Operator tools: upload files and build product versions through a recipe.", no_args_is_help=True
)
console = Console(stderr=True)
CHUNK = 1 << 20

ApiOption = Annotated[str, typer.Option("--api", envvar="MARKET_API", help="Base URL of the marketplace.")]
KeyOption = Annotated[str, typer.Option("--key", envvar="MARKET_API_KEY", help="Your operator API key.")]


class _Reader:
    """A file object that advances a progress bar as http.client reads it."""

    def __init__(self, path: Path, progress: Progress, task: Any) -> None:
        self.handle = path.open("rb")
        self.progress = progress
        self.task = task

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.progress.update(self.task, advance=len(chunk))
        return chunk

    def close(self) -> None:
        self.handle.close()


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _request(
    api: str, key: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    parts = urlsplit(api)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.netloc, timeout=None, blocksize=CHUNK)
    try:
        connection.request(
            method,
            parts.path.rstrip("/") + path,
            body=body,
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
        )
        response = connection.getresponse()
        payload = json.loads(response.read() or b"null")
    finally:
        connection.close()
    if response.status >= 400:
        error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
        console.print(f"[red]{response.status} {error.get('code', '')}[/red]: {error.get('message', payload)}")
        raise typer.Exit(1)
    return payload


def upload_file(api: str, key: str, path: Path) -> dict[str, Any]:
    """Hash, then stream one file to the marketplace; returns the upload (id, sha256, size)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with _bar() as progress:
        task = progress.add_task(f"hashing {path.name}", total=size)
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                progress.update(task, advance=len(chunk))
        task = progress.add_task(f"uploading {path.name}", total=size)
        reader = _Reader(path, progress, task)
        try:
            upload: dict[str, Any] = _request(
                api,
                key,
                "POST",
                f"/v1/uploads?filename={quote(path.name)}",
                body=reader,
                headers={"Content-Length": str(size), "Idempotency-Key": f"sha256:{digest.hexdigest()}"},
            )
        finally:
            reader.close()
    return upload


def _load_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        console.print(f"[red]cannot read {path}[/red]: {error}")
        raise typer.Exit(2) from error
    if not isinstance(value, dict):
        console.print(f"[red]{path} must hold a JSON object[/red]")
        raise typer.Exit(2)
    return value


@app.command("upload")
def upload_command(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet files.")],
    api: ApiOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
) -> None:
    """Upload files (streamed, resumable by re-running) and print their upload ids."""
    for path in files:
        upload = upload_file(api, key, path)
        console.print(f"[green]{upload['id']}[/green] {upload['filename']} {upload['size_bytes']:,} bytes")


@app.command("build")
def build_command(
    slug: Annotated[str, typer.Argument(help="The product's slug.")],
    table: Annotated[
        list[str], typer.Option("--table", help="NAME=FILE or NAME=UPLOAD_ID, once per table.", show_default=False)
    ],
    policy: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The protection policy (JSON).")],
    recipe: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="The recipe (JSON).")] = None,
    api: ApiOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
) -> None:
    """Upload any files given, build a new version through the recipe, and show its quality and audit."""
    tables: dict[str, str] = {}
    for item in table:
        name, _, source = item.partition("=")
        if not name or not source:
            console.print(f"[red]--table {item!r}[/red]: write NAME=FILE or NAME=UPLOAD_ID")
            raise typer.Exit(2)
        tables[name] = upload_file(api, key, Path(source))["id"] if os.path.isfile(source) else source
    body = {"tables": tables, "policy": _load_json(policy), "recipe": _load_json(recipe) if recipe else None}
    with console.status(f"cleaning, desensitising and auditing {slug} on the server..."):
        version = _request(
            api, key, "POST", f"/v1/products/{slug}/builds", json.dumps(body), {"Content-Type": "application/json"}
        )
    summary = Table(title=f"{slug} version {version['number']}")
    for column in ("table", "rows in", "rejected", "quarantined", "duplicates", "rows out"):
        summary.add_column(column, justify="right" if column != "table" else "left")
    for name, report in (version.get("quality") or {}).get("tables", {}).items():
        summary.add_row(
            name,
            *(f"{report[k]:,}" for k in ("rows_in", "rejected", "quarantined", "duplicates_removed", "rows_out")),
        )
    console.print(summary)
    audit = version.get("audit") or {}
    for finding in audit.get("findings", []):
        style = "red" if finding["blocking"] and not finding["resolution"] else "yellow"
        console.print(f"[{style}]{finding['id']}[/{style}]: {finding['detail']}")
    if audit.get("blocking_findings"):
        console.print(
            f"[red]{audit['blocking_findings']} blocking audit finding(s)[/red]: fix the recipe or resolve them"
        )
        raise typer.Exit(3)
    console.print(f"[green]audit clean[/green]; submit it for review with POST {api}/v1/products/{slug}/submit")
