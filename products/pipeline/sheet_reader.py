"""The child process that reads a workbook with calamine and writes the CSV of its one worksheet (workbooks.as_csv).

calamine is native code that holds a sheet as the dense rectangle its cells span: two cells at A1 and XFD1048576
(a 5 KB .xlsx) ask for 2**34 cells, and a failed allocation aborts the process (Rust's out-of-memory handler), not
a Python exception. So the reading runs here, in a process of its own under an address-space and CPU-time limit set
before calamine is loaded; the server only learns the outcome. Standard library and calamine only: it starts in
tens of milliseconds.

    python -m products.pipeline.sheet_reader WORKBOOK CSV MAX_TEXT_BYTES MAX_MEMORY MAX_CPU_SECONDS

prints one JSON object: {"ok": true}, or {"refused": "sheets", "names": [...]}, "password", "unreadable", "empty",
"too_large", "memory", or {"refused": "wider", "cell": "F6", "header": 4}, {"refused": "formula", "cell": "B2"}.
"""

from __future__ import annotations

import csv
import datetime
import json
import re
import resource
import sys
import zipfile
from collections.abc import Iterable
from typing import Any

MAX_EXACT = 2**53
"""Whole numbers below this in magnitude are exactly a double: written without `.0`."""


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
    if isinstance(value, datetime.timedelta):  # a duration as Excel's [h]:mm:ss shows it, not "1 day, 2:00:00"
        sign = "-" if value < datetime.timedelta(0) else ""
        minutes, seconds = divmod(abs(value), datetime.timedelta(minutes=1))
        hours, minutes = divmod(minutes, 60)
        fraction = f".{seconds.microseconds:06d}".rstrip("0") if seconds.microseconds else ""
        return f"{sign}{hours}:{minutes:02d}:{seconds.seconds:02d}{fraction}"
    return "" if value is None else str(value)


class Wider(Exception):
    """A row with a value right of its header's last cell: (row, column) from 0."""

    def __init__(self, row: int, column: int, header: int) -> None:
        super().__init__(row, column, header)
        self.row, self.column, self.header = row, column, header


def _rows(values: Iterable[list[Any]]) -> Iterable[list[str]]:
    """The sheet's rows as CSV fields: from the first row with a value, rows without one skipped, each padded to
    the header's width (its empty cells past that width dropped). A value past the header's width raises Wider: the
    CSV's reader would take such a row, or a title row above a wider header, for a table of one column (red22)."""
    width = 0
    header = 0
    for index, row in enumerate(values):
        cells = [_cell(value) for value in row]
        while cells and cells[-1] == "" and len(cells) > width:
            cells.pop()
        if not any(cells):
            continue
        if not width:
            width, header = len(cells), index
        elif len(cells) > width:
            raise Wider(index, len(cells) - 1, header)
        yield cells + [""] * (width - len(cells))


def _column(index: int) -> str:
    """The spreadsheet's name of column `index` (from 0): A, Z, AA."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


_NO_VALUE = re.compile(
    rb"<(?:\w+:)?c\b([^>]*)>\s*"  # the cell, its attributes in group 1
    rb"<(?:\w+:)?f\b[^>]*?(?:/>|>[^<]*</(?:\w+:)?f>)"  # its formula (a cell's first child)
    rb"\s*(?:<(?:\w+:)?v\s*/>|<(?:\w+:)?v>\s*</(?:\w+:)?v>)?"  # no value, or an empty one (openpyxl's <v />)
    rb"\s*</(?:\w+:)?c>"
)
"""A cell holding a formula and no value the spreadsheet computed and saved."""
_REF = re.compile(rb'\br="([A-Z]{1,3}[0-9]{1,7})"')
_TEXT_RESULT = re.compile(rb'\bt="str"')
"""A formula whose saved result is text: its empty value is the empty text it computed."""
_OVERLAP = 1 << 16
"""Bytes of the previous chunk searched again with the next: a formula is at most 8,192 characters."""


def formula_without_value(source: str) -> str | None:
    """The first cell of an .xlsx's worksheets holding a formula saved without its value (a workbook written by a
    program, never opened in a spreadsheet), which calamine reads as an empty cell; "" when its reference is not
    found, None when there is none (or the file is no .xlsx)."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        return None
    with archive:
        for name in archive.namelist():
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            with archive.open(name) as part:
                window = b""
                while chunk := part.read(1 << 20):
                    window = window[-_OVERLAP:] + chunk
                    for found in _NO_VALUE.finditer(window):
                        if _TEXT_RESULT.search(found.group(1)):
                            continue
                        ref = _REF.search(found.group(1))
                        return ref.group(1).decode() if ref else ""
    return None


def convert(source: str, target: str, max_text_bytes: int) -> dict[str, Any]:
    from python_calamine import CalamineWorkbook, PasswordError, SheetTypeEnum

    try:
        workbook = CalamineWorkbook.from_path(source)  # the format from the content (an upload's name has no suffix)
        try:
            sheets = [sheet.name for sheet in workbook.sheets_metadata if sheet.typ == SheetTypeEnum.WorkSheet]
            if len(sheets) != 1:
                return {"refused": "sheets", "names": sheets}
            if (cell := formula_without_value(source)) is not None:
                return {"refused": "formula", "cell": cell}
            sheet = workbook.get_sheet_by_name(sheets[0])
            first_column = sheet.start[1] if sheet.start else 0  # rows are the sheet's from its first; columns not
            written = 0
            with open(target, "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                try:
                    for cells in _rows(sheet.iter_rows()):
                        written += sum(len(cell) for cell in cells) + len(cells)
                        if written > max_text_bytes:
                            return {"refused": "too_large"}
                        writer.writerow(cells)
                except Wider as wider:
                    cell = f"{_column(first_column + wider.column)}{wider.row + 1}"
                    return {"refused": "wider", "cell": cell, "header": wider.header + 1}
        finally:
            workbook.close()
    except PasswordError:
        return {"refused": "password"}
    except MemoryError:
        return {"refused": "memory"}
    except BaseException:  # CalamineError, or a panic in calamine (pyo3's PanicException is a BaseException)
        return {"refused": "unreadable"}
    return {"ok": True} if written else {"refused": "empty"}


def main(argv: list[str]) -> None:
    source, target, max_text_bytes, max_memory, max_cpu_seconds = argv
    resource.setrlimit(resource.RLIMIT_AS, (int(max_memory), int(max_memory)))
    resource.setrlimit(resource.RLIMIT_CPU, (int(max_cpu_seconds), int(max_cpu_seconds)))
    print(json.dumps(convert(source, target, int(max_text_bytes))))


if __name__ == "__main__":
    main(sys.argv[1:])
