"""An uploaded spreadsheet (Excel .xlsx or .xls, OpenDocument .ods) as the UTF-8 CSV of its one sheet.

Government bodies keep much of their data in spreadsheets, many still in Excel 97-2003's .xls. A workbook is
converted once, when it lands (through encodings.as_utf8, at every upload route), and from then on it is a CSV like
any other: the recipe's columns and preview, the build and its types all come from DuckDB's reading of that CSV
(storage.file_kind calls a workbook "csv"). The upload keeps the SHA-256 and size of the workbook as sent.

What is read, and how:

- the workbook must hold exactly one worksheet: with several (a notes sheet before the data is common), which one
  is the table is the operator's choice, so the upload is refused naming them all (chart sheets do not count);
- the first row with any value is the header; rows with no value at all are skipped (spreadsheets keep formatted
  empty rows); every row is padded to the header's width with empty cells, and a value right of the header's last
  cell (a title row above a wider header, a note beside the table) is refused naming its cell;
- a cell's value is what the spreadsheet last computed and saved (a formula's cached result; an .xlsx formula
  saved without one, as programs write them, is refused naming its cell, where calamine reads an empty cell);
  numbers as Python writes them, a whole number without its `.0` (spreadsheets store every number as a double, so
  DuckDB then types a column of whole numbers as an integer, as it does in a CSV); dates and times in ISO 8601, a
  date alone when its time is midnight; durations as [h]:mm:ss; booleans as true/false; error values (#DIV/0!) as
  their text.

It is read with calamine (python-calamine, Rust): 17 times openpyxl's speed here (docs/benchmarks.md), and
its XML reader expands no entity a file declares and fetches nothing. calamine holds one sheet's cells in memory
while it reads them, so the declared size of every part of a zipped workbook (.xlsx, .ods) is checked before
anything is parsed, and an .xls is at most that size (MAX_PART: 256 MiB of a sheet's XML is some millions of
cells); the CSV written is capped like any decompressed text (encodings.MAX_TEXT_BYTES). Password-protected
workbooks are refused (saved without the password they are read). calamine holds a sheet as the dense rectangle
its cells span whatever the file's size, and aborts its process when an allocation fails, so it runs in a child
process under an address-space and CPU limit (sheet_reader; red22): such a workbook is refused, the server lives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

from market.errors import ServiceUnavailable, Unprocessable
from market.i18n import Phrase

ZIPPED = (".xlsx", ".ods")
MAX_PART = 256 * 1024**2
"""The largest part of a zipped workbook (its declared size, uncompressed), or the largest .xls file, read."""
MAX_SHEET_NAMES = 10
MAX_PARTS = 10_000
"""The most parts a zipped workbook may hold (a workbook has tens; one with images, hundreds), counted from its end
of central directory record before the directory is read: zipfile holds each part's entry in memory (about 600
bytes; red22: 26 MB of empty parts took 170 MB of the server's memory)."""
MAX_MEMORY = 4 * 1024**3
"""The address space the child reading a workbook may use (sheet_reader): MAX_PART of a sheet's XML, some millions
of cells, takes well under it; a sheet whose cells span more (two cells at A1 and XFD1048576) is refused."""
MAX_CPU_SECONDS = 600
"""The CPU time the child reading a workbook may use."""
NOT_A_WORKBOOK = Phrase("it is not a spreadsheet this reads (.xlsx, .xls, .ods); save it as .xlsx or CSV")
MAX_READERS = 2
"""Spreadsheets read at once by one server process: each child may take MAX_MEMORY, so a process takes at most this
many times it (8 GiB), however many operators upload at once (red22 left N uploads taking N x MAX_MEMORY)."""
WAIT_SECONDS = 30
"""How long an upload waits for a reader before it is answered 503 `spreadsheets_busy` with Retry-After."""
_reading = threading.BoundedSemaphore(MAX_READERS)
_REFUSALS = {
    "password": Phrase("it is protected by a password; save it without one"),
    "empty": Phrase("its sheet holds no values"),
    "memory": Phrase("it needs more memory or time to read than a spreadsheet may use; save it as CSV"),
}
_EOCD_SEARCH = 22 + 0xFFFF
"""The end of central directory record (22 bytes) is within the last 22 bytes plus its longest comment."""
_ROOT = str(Path(__file__).resolve().parents[2])
"""The directory that holds the `products` package, for the child process."""


def _refused(filename: str, detail: Phrase) -> Unprocessable:
    kind = Path(filename).suffix.lstrip(".").upper() or "XLSX"  # "could not be read as XLS: ..."
    return Unprocessable("invalid_upload", file=filename, kind=kind, detail=detail)


def _part_count(path: Path) -> int | None:
    """The number of parts a zip's end of central directory record declares (0xFFFF: more, in a Zip64 record),
    or None when there is no such record (zipfile then refuses the file)."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _EOCD_SEARCH))
        tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    return int.from_bytes(tail[at + 10 : at + 12], "little")


def _check_size(path: Path, filename: str, max_text_bytes: int) -> None:
    """Every declared part of a zipped workbook, or an .xls file, within MAX_PART; all of them within
    `max_text_bytes`."""
    if not filename.lower().endswith(ZIPPED):
        if path.stat().st_size > MAX_PART:
            raise _refused(filename, Phrase("it is larger than {limit} MiB; save it as CSV", limit=MAX_PART // 1024**2))
        return
    count = _part_count(path)
    if count is not None and count > MAX_PARTS:
        raise _refused(
            filename, Phrase("it holds {count} parts, more than a spreadsheet has; save it as CSV", count=count)
        )
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise _refused(filename, NOT_A_WORKBOOK) from error
    for part in parts:
        if part.file_size > MAX_PART:
            detail = Phrase(
                "its part {part} is larger than {limit} MiB; save it as CSV",
                part=part.filename[:100],
                limit=MAX_PART // 1024**2,
            )
            raise _refused(filename, detail)
    if sum(part.file_size for part in parts) > max_text_bytes:
        raise Unprocessable("upload_too_large", limit_gib=max_text_bytes // 1024**3)


def as_csv(path: Path, filename: str, max_text_bytes: int) -> None:
    """Replace the workbook at `path` by the UTF-8 CSV of its one worksheet, atomically; `invalid_upload` (kind: the
    file's suffix) naming what to change when it is not a workbook this reads, `upload_too_large` past
    `max_text_bytes`. calamine runs in a child process under MAX_MEMORY and MAX_CPU_SECONDS (sheet_reader): a
    workbook whose cells span a huge area makes it abort, which must not take the server down."""
    _check_size(path, filename, max_text_bytes)
    partial = path.with_name(path.name + ".csv")
    try:
        command = [sys.executable, "-m", "products.pipeline.sheet_reader", str(path), str(partial)]
        command += [str(max_text_bytes), str(MAX_MEMORY), str(MAX_CPU_SECONDS)]
        search_path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        environment = {**os.environ, "PYTHONPATH": search_path}
        if not _reading.acquire(timeout=WAIT_SECONDS):
            raise ServiceUnavailable("spreadsheets_busy", seconds=WAIT_SECONDS, retry_after=WAIT_SECONDS)
        try:
            child = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
        finally:
            _reading.release()
        if child.returncode < 0:  # killed by a signal: calamine aborted (memory), or SIGXCPU (time)
            outcome: dict[str, Any] = {"refused": "memory"}
        else:
            try:
                outcome = json.loads(child.stdout) if child.returncode == 0 else {}
            except ValueError:
                outcome = {}
            if not outcome:  # the reader itself failed (it answers every file it reads): the server's fault, a 500
                raise RuntimeError(f"sheet_reader exited {child.returncode}: {child.stderr[-2000:]}")
        refused = outcome.get("refused")
        if refused == "sheets":
            names = outcome["names"]
            detail = Phrase(
                "it holds {count} sheets ({names}); save the one to upload as its own workbook or as CSV",
                count=len(names),
                names="、".join(names[:MAX_SHEET_NAMES]),
            )
            raise _refused(filename, detail)
        if refused == "wider":
            detail = Phrase(
                "its cell {cell} holds a value right of the last column of its header (row {header}); delete the "
                "title rows above the header and the notes beside the table, or give that column a header",
                cell=str(outcome["cell"])[:20],
                header=int(outcome["header"]),
            )
            raise _refused(filename, detail)
        if refused == "formula":
            detail = Phrase(
                "its cell {cell} holds a formula with no saved value (written by a program, never calculated); open "
                "it in a spreadsheet and save it again",
                cell=str(outcome["cell"])[:20],
            )
            raise _refused(filename, detail)
        if refused == "too_large":
            raise Unprocessable("upload_too_large", limit_gib=max_text_bytes // 1024**3)
        if refused is not None:
            raise _refused(filename, _REFUSALS.get(refused, NOT_A_WORKBOOK))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
