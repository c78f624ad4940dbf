"""`market products ...`: an operator's commands to take a CSV or Parquet file to a product version over HTTP.

The file is hashed, then streamed to POST /v1/uploads with a progress bar; the hash is the
Idempotency-Key, so running the command again after a failure never stores the file twice.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from market.cli_support import JsonOption, err, out, user_errors
from market.errors import MarketError

app = typer.Typer(
    help="Operator tools: upload files and build product versions through a recipe.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
console: Console = err
CHUNK = 1 << 20
UPLOAD_ID_PREFIX = "upl_"

ApiOption = Annotated[
    str, typer.Option("--api", envvar="MARKET_API", metavar="URL", help="Base URL of the marketplace.")
]
KeyOption = Annotated[str, typer.Option("--key", envvar="MARKET_API_KEY", metavar="KEY", help="Your operator API key.")]


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
    except (OSError, http.client.HTTPException) as error:
        raise MarketError("api_unreachable", api=api, detail=str(error) or type(error).__name__) from error
    except ValueError as bad_json:
        raise MarketError("api_unreachable", api=api, detail="the answer is not JSON") from bad_json
    finally:
        connection.close()
    if response.status >= 400:
        refusal = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
        console.print(
            f"[red]{response.status} {refusal.get('code', '')}[/red]: {refusal.get('message', payload)}",
            highlight=False,
        )
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
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MarketError("invalid_json_file", path=str(path), detail=str(error)) from error
    if not isinstance(value, dict):
        raise MarketError("invalid_json_file", path=str(path), detail=f"it holds a {type(value).__name__}")
    return value


def _check_operator(api: str, key: str, slug: str | None) -> None:
    """Before any upload: the key is valid and an operator's, and the product (if any) is visible to it."""
    me = _request(api, key, "GET", "/v1/me")
    if me.get("role") != "operator":
        raise MarketError("forbidden_role", needed="operator", role=me.get("role"))
    if slug is not None:
        _request(api, key, "GET", f"/v1/products/{quote(slug, safe='')}")


@app.command("upload")
@user_errors
def upload_command(
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, metavar="FILE...", help="CSV, spreadsheet or Parquet files."),
    ],
    api: ApiOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Upload files (streamed, resumable by re-running) and print their upload ids."""
    _check_operator(api, key, None)
    uploads = [upload_file(api, key, path) for path in files]
    text = "\n".join(f"{u['id']} {u['filename']} {u['size_bytes']:,} bytes" for u in uploads)
    if as_json:
        typer.echo(json.dumps(uploads))
    else:
        out.print(text, highlight=False)


@app.command("build")
@user_errors
def build_command(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="The product's slug.")],
    table: Annotated[
        list[str],
        typer.Option(
            "--table", metavar="NAME=FILE", help="NAME=FILE or NAME=UPLOAD_ID, once per table.", show_default=False
        ),
    ],
    policy: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, metavar="FILE", help="The protection policy (JSON).")
    ],
    recipe: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, metavar="FILE", help="The recipe (JSON).")
    ] = None,
    api: ApiOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Upload any files given, build a new version through the recipe, and show its quality and audit.

    Everything that can be checked is checked before the first byte is sent: the --table options and their
    files, the JSON of the policy and recipe, the key, its role and the product."""
    sources: dict[str, str | Path] = {}
    for item in table:
        name, _, source = item.partition("=")
        if not name or not source:
            raise MarketError("invalid_table_option", value=item)
        if Path(source).is_file():
            sources[name] = Path(source)
        elif source.startswith(UPLOAD_ID_PREFIX) and "/" not in source:
            sources[name] = source
        else:
            raise MarketError("local_file_not_found", path=source, table=name)
    body: dict[str, Any] = {"policy": _load_json(policy), "recipe": _load_json(recipe) if recipe else None}
    _check_operator(api, key, slug)
    body["tables"] = {
        name: upload_file(api, key, source)["id"] if isinstance(source, Path) else source
        for name, source in sources.items()
    }
    with console.status(f"cleaning, desensitising and auditing {slug} on the server..."):
        version = _request(
            api,
            key,
            "POST",
            f"/v1/products/{quote(slug, safe='')}/builds",
            json.dumps(body),
            {"Content-Type": "application/json"},
        )
    if as_json:
        typer.echo(json.dumps(version))
        raise typer.Exit(3 if (version.get("audit") or {}).get("blocking_findings") else 0)
    summary = Table(title=f"{slug} version {version['number']}")
    for column in ("table", "rows in", "rejected", "quarantined", "duplicates", "rows out"):
        summary.add_column(column, justify="right" if column != "table" else "left")
    for name, report in (version.get("quality") or {}).get("tables", {}).items():
        summary.add_row(
            name,
            *(f"{report[k]:,}" for k in ("rows_in", "rejected", "quarantined", "duplicates_removed", "rows_out")),
        )
    out.print(summary)
    audit = version.get("audit") or {}
    for finding in audit.get("findings", []):
        style = "red" if finding["blocking"] and not finding["resolution"] else "yellow"
        out.print(f"[{style}]{finding['id']}[/{style}]: {finding['detail']}", highlight=False)
    if audit.get("blocking_findings"):
        console.print(
            f"[red]{audit['blocking_findings']} blocking audit finding(s)[/red]: fix the recipe or resolve them"
        )
        raise typer.Exit(3)
    console.print(f"[green]audit clean[/green]; submit it for review with POST {api}/v1/products/{slug}/submit")
