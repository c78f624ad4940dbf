"""Red team red22: hostile spreadsheet and CSV uploads are refused as they land, and never take the server down."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import zipfile
from typing import Any

import openpyxl

from market.accounts.models import Role
from products.pipeline import workbooks
from tests.conftest import Market
from tests.factories import PEOPLE_POLICY, create_product
from tests.market.test_hostile_input_http import assert_error
from tests.products.test_encodings_http import SENT
from tests.products.test_workbooks_http import _with_part, _workbook

SHEET = (
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    b'<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c></row>'
    b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>b</t></is></c></row>'
    b"</sheetData></worksheet>"
)


def test_a_workbook_whose_two_cells_span_the_whole_sheet_is_refused_not_fatal(market: Market) -> None:
    # Before: calamine holds a sheet as the dense rectangle its cells span, here 2**34 cells (512 GiB) from a
    # 5 KB file; the allocation failed and Rust aborted the whole server process (SIGABRT), every request with it.
    operator = market.actor(Role.OPERATOR)
    bomb = _with_part(_workbook({"Sheet1": [["a"], ["b"]]}), "xl/worksheets/sheet1.xml", SHEET)
    assert len(bomb) < 10_000
    response = market.client.post("/v1/uploads?filename=sparse.xlsx", headers=operator.headers, content=bomb)
    assert "more memory" in assert_error(response, 422, "invalid_upload")
    assert list((market.settings.uploads_dir / operator.principal.org_id).iterdir()) == []
    fine = _workbook({"Sheet1": [["a"], ["b"]]})
    ok = market.client.post("/v1/uploads?filename=fine.xlsx", headers=operator.headers, content=fine)
    assert ok.status_code == 201, ok.text


def test_a_long_chinese_file_name_on_the_multipart_route_is_read_like_any_other(market: Market) -> None:
    # Before: the file was copied under its own name, and 90 Chinese characters (270 bytes in UTF-8) are past the
    # 255 bytes a file name may have on Linux: OSError, 500.
    operator = market.actor(Role.OPERATOR)
    name = "北京市" * 30 + ".csv"
    assert create_product(market, operator, "long-name").status_code == 201
    response = market.client.post(
        "/v1/products/long-name/versions",
        headers=operator.headers,
        files=[("files", (name, SENT["people-gbk.csv"], "application/octet-stream"))],
        data={"policy": json.dumps(PEOPLE_POLICY), "table_names": "people"},
    )
    assert response.status_code == 201, response.text


def test_a_value_right_of_the_header_is_refused_naming_its_cell(market: Market) -> None:
    # Before: written as a CSV row wider than its header, which DuckDB then read as a table of ONE column ("a,b"
    # holding "1,2"): a title row above the header (common in government workbooks) or a note beside the table
    # silently turned every table into one text column.
    operator = market.actor(Role.OPERATOR)
    titled = openpyxl.Workbook()
    sheet = titled.active
    sheet["C3"], sheet["C4"], sheet["D4"], sheet["C5"], sheet["D5"] = "2023年统计", "名称", "值", "北京", 1
    noted = openpyxl.Workbook()
    for row in (["名称", "值"], ["北京", 1], ["上海", 2, "备注：估算"]):
        noted.active.append(row)
    for name, book, cell, header in (("titled.xlsx", titled, "D4", 3), ("noted.xlsx", noted, "C3", 1)):
        out = io.BytesIO()
        book.save(out)
        response = market.client.post(f"/v1/uploads?filename={name}", headers=operator.headers, content=out.getvalue())
        message = assert_error(response, 422, "invalid_upload")
        assert f"cell {cell} holds a value right of the last column of its header (row {header})" in message
    assert list((market.settings.uploads_dir / operator.principal.org_id).iterdir()) == []


def test_utf16_without_its_byte_order_mark_is_refused_as_it_lands(market: Market) -> None:
    # Before: ASCII text in UTF-16 without a mark is valid UTF-8 (every other byte NUL) and was stored as it came,
    # then built as a table of one column named "n\x00a\x00m\x00e..."; Chinese text was "read" as GB18030 garbage.
    operator = market.actor(Role.OPERATOR)
    for name, content in (
        ("ascii.csv", "name,value\nab,1\n".encode("utf-16-le")),
        ("chinese.csv", "名称,值\n北京,1\n上海,2\n".encode("utf-16-le")),
        ("late.csv", "名称,值\n北京,1\n".encode("gb18030") + b"x\x00,1\n"),
    ):
        response = market.client.post(f"/v1/uploads?filename={name}", headers=operator.headers, content=content)
        message = assert_error(response, 422, "invalid_upload")
        assert "holds a NUL byte" in message, message
    assert market.client.get("/v1/uploads", headers=operator.headers).json()["items"] == []


def test_a_zip_of_more_parts_than_a_workbook_has_is_refused_before_its_directory_is_read(
    market: Market, monkeypatch: Any
) -> None:
    # Before: the server process read the whole central directory into memory (zipfile.infolist) before checking
    # anything: 300,000 empty parts (26 MB sent) took 170 MB; the 50 GiB an upload may be, hundreds of GB.
    operator = market.actor(Role.OPERATOR)
    book = _workbook({"Sheet1": [["a"], ["b"]]})
    with zipfile.ZipFile(io.BytesIO(book)) as archive:
        count = len(archive.infolist())
    monkeypatch.setattr(workbooks, "MAX_PARTS", count - 1)
    parsed: list[str] = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append("read"))
    response = market.client.post("/v1/uploads?filename=parts.xlsx", headers=operator.headers, content=book)
    assert f"it holds {count} parts" in assert_error(response, 422, "invalid_upload")
    assert parsed == []


def test_a_duration_is_written_in_hours_as_the_spreadsheet_shows_it(market: Market) -> None:
    # Before: Python's own spelling, "1 day, 2:00:00", which nothing reads back as a duration.
    operator = market.actor(Role.OPERATOR)
    rows = [["task", "took"], ["a", datetime.timedelta(days=1, hours=2)], ["b", datetime.timedelta(minutes=90)]]
    upload = market.client.post(
        "/v1/uploads?filename=durations.xlsx", headers=operator.headers, content=_workbook({"t": rows})
    )
    assert upload.status_code == 201, upload.text
    (stored,) = (market.settings.uploads_dir / operator.principal.org_id).glob(f"{upload.json()['sha256']}*")
    assert stored.read_text(encoding="utf-8").splitlines() == ["task,took", "a,26:00:00", "b,1:30:00"]


def test_a_formula_saved_without_its_value_is_refused_naming_its_cell(market: Market) -> None:
    # Before: written as an empty cell. A workbook made by a program (openpyxl) holds formulas with no computed
    # value; the column was silently empty. A formula with its saved value is read as that value.
    operator = market.actor(Role.OPERATOR)
    book = _workbook({"Sheet1": [["a", "b"], [1, "=A2*2"]]})
    response = market.client.post("/v1/uploads?filename=formula.xlsx", headers=operator.headers, content=book)
    assert "cell B2 holds a formula with no saved value" in assert_error(response, 422, "invalid_upload")
    saved = (
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        b'<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c><c r="B1" t="inlineStr"><is><t>b</t></is></c></row>'
        b'<row r="2"><c r="A2"><v>1</v></c><c r="B2"><f>A2*2</f><v>2</v></c></row></sheetData></worksheet>'
    )
    computed = _with_part(book, "xl/worksheets/sheet1.xml", saved)
    upload = market.client.post("/v1/uploads?filename=saved.xlsx", headers=operator.headers, content=computed)
    assert upload.status_code == 201, upload.text
    (stored,) = (market.settings.uploads_dir / operator.principal.org_id).glob(f"{upload.json()['sha256']}*")
    assert stored.read_text(encoding="utf-8").splitlines() == ["a,b", "1,2"]


def test_a_gzip_stream_that_fails_its_checksum_or_ends_early_is_refused_as_it_lands(market: Market) -> None:
    # Before: kept "for the build to refuse", but DuckDB checks no gzip CRC: a byte changed in transit was built
    # as data ("row50" read as "rowX0") without a word.
    operator = market.actor(Role.OPERATOR)
    text = b"name,value\n" + b"".join(b"row%d,%d\n" % (i, i) for i in range(100))
    flipped = bytearray(gzip.compress(text, compresslevel=0))
    flipped[flipped.index(b"row50") + 3] = ord("X")
    utf16 = gzip.compress("名称,值\n北京,1\n".encode("utf-16"))
    for name, content in (
        ("flipped.csv.gz", bytes(flipped)),
        ("short.csv.gz", gzip.compress(text)[:-4]),
        ("short-utf16.tsv.gz", utf16[:-3]),
    ):
        response = market.client.post(f"/v1/uploads?filename={name}", headers=operator.headers, content=content)
        assert "is not a whole gzip stream" in assert_error(response, 422, "invalid_upload"), name
    assert list((market.settings.uploads_dir / operator.principal.org_id).iterdir()) == []
