"""An uploaded spreadsheet (Excel .xlsx or .xls, OpenDocument .ods) as the UTF-8 CSV of its one sheet.

Government bodies keep much of their data in spreadsheets, many still in Excel 97-2003's .xls. A workbook is
converted once, when it lands (through encodings.as_utf8, at every upload route), and from then on it is a CSV like
any other: the recipe's columns and preview, the build and its types all come from DuckDB's reading of that CSV
(storage.file_kind calls a workbook "csv"). The upload keeps the SHA-256 and size of the workbook as sent.

What is read, and how:

- the workbook must hold exactly one worksheet: with several (a notes sheet before the data is common), which one
  is the table is the operator's choice, so the upload is refused naming them all (chart sheets do not count);
- the first row with any value is the header; rows with no value at all are skipped (spreadsheets keep formatted
  empty rows); every row is padded to the header's width with empty cells;
- a cell's value is what the spreadsheet last computed and saved (a formula's cached result); numbers as Python
  writes them, a whole number without its `.0` (spreadsheets store every number as a double, so DuckDB then types a
  column of whole numbers as an integer, as it does in a CSV); dates and times in ISO 8601, a date alone when its
  time is midnight; booleans as true/false; error values (#DIV/0!) as their text.

It is read with calamine (python-calamine, Rust): 17 times openpyxl's speed here (docs/benchmarks.md), and
its XML reader expands no entity a file declares and fetches nothing. calamine holds one sheet's cells in memory
while it reads them, so the declared size of every part of a zipped workbook (.xlsx, .ods) is checked before
anything is parsed, and an .xls is at most that size (MAX_PART: 256 MiB of a sheet's XML is some millions of
cells); the CSV written is capped like any decompressed text (encodings.MAX_TEXT_BYTES). Password-protected
workbooks are refused (saved without the password they are read).
"""

from __future__ import annotations

import csv
import datetime
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from python_calamine import CalamineError, CalamineWorkbook, PasswordError, SheetTypeEnum

from market.errors import Unprocessable
from market.i18n import Phrase

ZIPPED = (".xlsx", ".ods")
MAX_PART = 256 * 1024**2
"""The largest part of a zipped workbook (its declared size, uncompressed), or the largest .xls file, read."""
MAX_SHEET_NAMES = 10
MAX_EXACT = 2**53
"""Whole numbers below this in magnitude are exactly a double: written without `.0`."""
NOT_A_WORKBOOK = Phrase("it is not a spreadsheet this reads (.xlsx, .xls, .ods); save it as .xlsx or CSV")


def _refused(filename: str, detail: Phrase) -> Unprocessable:
    kind = Path(filename).suffix.lstrip(".").upper() or "XLSX"  # "could not be read as XLS: ..."
    return Unprocessable("invalid_upload", file=filename, kind=kind, detail=detail)


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_EXACT:
        return str(int(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None and value.time() == datetime.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return "" if value is None else str(value)


def _rows(values: Iterable[list[Any]]) -> Iterable[list[str]]:
    """The sheet's rows as CSV fields: from the first row with a value, rows without one skipped, each padded to
    the header's width (and its empty cells past that width dropped)."""
    width = 0
    for row in values:
        cells = [_cell(value) for value in row]
        while cells and cells[-1] == "" and len(cells) > width:
            cells.pop()
        if not any(cells):
            continue
        width = width or len(cells)
        yield cells + [""] * (width - len(cells))


def _check_size(path: Path, filename: str, max_text_bytes: int) -> None:
    """Every declared part of a zipped workbook, or an .xls file, within MAX_PART; all of them within
    `max_text_bytes`."""
    if not filename.lower().endswith(ZIPPED):
        if path.stat().st_size > MAX_PART:
            raise _refused(filename, Phrase("it is larger than {limit} MiB; save it as CSV", limit=MAX_PART // 1024**2))
        return
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
    `max_text_bytes`."""
    _check_size(path, filename, max_text_bytes)
    partial = path.with_name(path.name + ".csv")
    try:
        workbook = CalamineWorkbook.from_path(str(path))  # the format from the content (an upload's name has no suffix)
        try:
            sheets = [sheet for sheet in workbook.sheets_metadata if sheet.typ == SheetTypeEnum.WorkSheet]
            if len(sheets) != 1:
                detail = Phrase(
                    "it holds {count} sheets ({names}); save the one to upload as its own workbook or as CSV",
                    count=len(sheets),
                    names="、".join(sheet.name for sheet in sheets[:MAX_SHEET_NAMES]),
                )
                raise _refused(filename, detail)
            rows = workbook.get_sheet_by_name(sheets[0].name).iter_rows()
            written = 0
            with partial.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                for cells in _rows(rows):
                    written += sum(len(cell) for cell in cells) + len(cells)
                    if written > max_text_bytes:
                        raise Unprocessable("upload_too_large", limit_gib=max_text_bytes // 1024**3)
                    writer.writerow(cells)
        finally:
            workbook.close()
        if written == 0:
            raise _refused(filename, Phrase("its sheet holds no values"))
    except PasswordError as error:
        partial.unlink(missing_ok=True)
        raise _refused(filename, Phrase("it is protected by a password; save it without one")) from error
    except CalamineError as error:
        partial.unlink(missing_ok=True)
        raise _refused(filename, NOT_A_WORKBOOK) from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
