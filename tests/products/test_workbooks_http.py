"""Spreadsheets (.xlsx, .xls, .ods) upload like CSV: the one sheet becomes the table; what cannot be read is refused
naming what to change, before anything is stored; nothing in a workbook can make the server expand entities or
hold a declared-huge part in memory."""

from __future__ import annotations

import datetime
import io
import threading
import zipfile
from typing import Any

import openpyxl
import xlwt
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

from market.accounts.models import Role
from products.pipeline import workbooks
from tests.conftest import Market
from tests.factories import create_product
from tests.market.test_hostile_input_http import assert_error
from tests.products.test_encodings_http import SENT, TEXT, _build, _stored_rows, _upload, post_version


def _workbook(sheets: dict[str, list[list[Any]]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _xls(rows: list[list[Any]]) -> bytes:
    book = xlwt.Workbook()
    sheet = book.add_sheet("人员")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.write(r, c, value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _ods(rows: list[list[Any]]) -> bytes:
    document = OpenDocumentSpreadsheet()
    table = Table(name="人员")
    for row in rows:
        line = TableRow()
        for value in row:
            if isinstance(value, int):
                cell = TableCell(valuetype="float", value=value)
            else:
                cell = TableCell(valuetype="string")
            if value is not None:
                cell.addElement(P(text=str(value)))
            line.addElement(cell)
        table.addElement(line)
    document.spreadsheet.addElement(table)
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


def _people_sheet() -> list[list[Any]]:
    """The Chinese people table as a spreadsheet holds it: numbers as numbers, a leading empty row, formatted
    empty rows after the data."""
    lines = [line.split(",") for line in TEXT.splitlines()]
    header, body = lines[0], lines[1:]
    numeric = {header.index(name) for name in ("month", "amount", "trips")}
    rows: list[list[Any]] = [[], header]
    rows += [[int(value) if i in numeric else value for i, value in enumerate(line)] for line in body]
    return [*rows, [None, None], [None]]


def test_a_spreadsheet_in_each_format_builds_the_same_version_as_its_csv(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    for slug, name, content in (
        ("from-csv", "people.csv", SENT["people.csv"]),
        ("from-xlsx", "人员名单.xlsx", _workbook({"人员": _people_sheet()})),
        ("from-xls", "人员名单.xls", _xls(_people_sheet())),
        ("from-ods", "人员名单.ods", _ods(_people_sheet())),
    ):
        assert create_product(market, operator, slug).status_code == 201
        built = _build(market, operator, slug, _upload(market, operator, name, content)["id"])
        assert built.status_code == 201, f"{name}: {built.text}"
    stored = list(_stored_rows(market).values())
    assert len(stored) == 4 and all(rows == stored[0] for rows in stored)
    assert len(stored[0]) == len(TEXT.splitlines()) - 1


def test_the_multipart_route_reads_a_workbook_too(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    response = post_version(market, operator, "direct", "people.xlsx", _workbook({"Sheet1": _people_sheet()}))
    assert response.status_code == 201, response.text
    (rows,) = _stored_rows(market).values()
    assert len(rows) == len(TEXT.splitlines()) - 1 and "华北" in {value for row in rows for value in row}


def test_cell_values_are_written_as_duckdb_reads_them(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    rows = [
        ["id", "day", "at", "flag", "rate", "note"],
        ["A", datetime.datetime(2024, 1, 5), datetime.datetime(2024, 1, 5, 8, 30), True, 1.5, "含,逗号"],
        ["B", datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 23, 59, 59), False, 2, None],
    ]
    upload = _upload(market, operator, "cells.xlsx", _workbook({"cells": rows}))
    (stored,) = (market.settings.uploads_dir / operator.principal.org_id).glob(f"{upload['sha256']}*")
    assert stored.read_text(encoding="utf-8").splitlines() == [
        "id,day,at,flag,rate,note",
        'A,2024-01-05,2024-01-05 08:30:00,true,1.5,"含,逗号"',
        "B,2024-02-29,2024-02-29 23:59:59,false,2,",
    ]


def test_what_a_workbook_cannot_be_is_refused_naming_what_to_change(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    zh = {**operator.headers, "Accept-Language": "zh-CN"}
    several = _workbook({"说明": [["本表说明"]], "数据": _people_sheet(), "附表": [["x"]]})
    response = market.client.post("/v1/uploads?filename=book.xlsx", headers=operator.headers, content=several)
    message = assert_error(response, 422, "invalid_upload")
    assert "holds 3 sheets (说明、数据、附表)" in message and "book.xlsx" in message
    chinese = market.client.post("/v1/uploads?filename=book.xlsx", headers=zh, content=several)
    assert "包含 3 个工作表（说明、数据、附表）" in assert_error(chinese, 422, "invalid_upload")
    for name, content in (("fake.xlsx", b"PK\x03\x04 not really"), ("fake.xls", TEXT.encode()), ("f.ods", b"")):
        refused = market.client.post(f"/v1/uploads?filename={name}", headers=operator.headers, content=content + b"x")
        message = assert_error(refused, 422, "invalid_upload")
        assert f"read as {name.rsplit('.', 1)[1].upper()}: it is not a spreadsheet this reads" in message
    empty = _workbook({"空": [[None], []]})
    refused = market.client.post("/v1/uploads?filename=empty.xlsx", headers=operator.headers, content=empty)
    assert "holds no values" in assert_error(refused, 422, "invalid_upload")
    assert market.client.get("/v1/uploads", headers=operator.headers).json()["items"] == []


def _with_part(content: bytes, name: str, data: bytes) -> bytes:
    """The workbook `content` with its part `name` replaced by `data` (or added)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for part in source.infolist():
            target.writestr(part, data if part.filename == name else source.read(part.filename))
        if name not in source.namelist():
            target.writestr(name, data)
    return out.getvalue()


def test_entities_in_a_workbook_are_never_expanded(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">'
        b'<c r="A1" t="inlineStr"><is><t>&lol3;</t></is></c></row></sheetData></worksheet>'
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">'
        b'<c r="A1" t="inlineStr"><is><t>&secret;</t></is></c></row></sheetData></worksheet>'
    )
    book = _workbook({"Sheet1": [["a"], ["b"]]})
    for sheet in (laughs, external):
        hostile = _with_part(book, "xl/worksheets/sheet1.xml", sheet)
        response = market.client.post("/v1/uploads?filename=hostile.xlsx", headers=operator.headers, content=hostile)
        if response.status_code == 201:  # read, but with no entity expanded: stored as the CSV it then is
            (stored,) = (market.settings.uploads_dir / operator.principal.org_id).glob(f"{response.json()['sha256']}*")
            text = stored.read_text(encoding="utf-8")
            assert "lollol" not in text and "root:" not in text, text
            stored.unlink()
        else:
            assert "not a spreadsheet this reads" in assert_error(response, 422, "invalid_upload")


def test_a_part_declared_larger_than_its_limit_is_refused_unread(market: Market, monkeypatch: Any) -> None:
    operator = market.actor(Role.OPERATOR)
    book = _workbook({"Sheet1": [["name"], *[[f"名字{i}"] for i in range(2_000)]]})
    with zipfile.ZipFile(io.BytesIO(book)) as archive:
        largest = max(part.file_size for part in archive.infolist())
    monkeypatch.setattr(workbooks, "MAX_PART", largest - 1)
    response = market.client.post("/v1/uploads?filename=big.xlsx", headers=operator.headers, content=book)
    assert "is larger than" in assert_error(response, 422, "invalid_upload")
    old = _xls([["name"], *[[f"名字{i}"] for i in range(2_000)]])
    monkeypatch.setattr(workbooks, "MAX_PART", len(old) - 1)
    response = market.client.post("/v1/uploads?filename=big.xls", headers=operator.headers, content=old)
    assert "is larger than" in assert_error(response, 422, "invalid_upload")
    monkeypatch.setattr(workbooks, "MAX_PART", max(largest, len(old)))
    for name, content in (("big.xlsx", book), ("big.xls", old)):
        assert (
            market.client.post(f"/v1/uploads?filename={name}", headers=operator.headers, content=content).status_code
            == 201
        )


def test_spreadsheets_past_the_readers_wait_are_answered_503_with_retry_after(market: Market, monkeypatch: Any) -> None:
    # Each reader (a child process) may take workbooks.MAX_MEMORY: a process reads MAX_READERS at once, not N.
    busy = threading.BoundedSemaphore(1)
    assert busy.acquire()  # every reader in use
    monkeypatch.setattr(workbooks, "_reading", busy)
    monkeypatch.setattr(workbooks, "WAIT_SECONDS", 0)
    operator = market.actor(Role.OPERATOR)
    book = _workbook({"Sheet1": [["a"], ["1"]]})
    refused = market.client.post(
        "/v1/uploads?filename=wait.xlsx", headers={**operator.headers, "Accept-Language": "zh-CN"}, content=book
    )
    assert "电子表格正在读取中" in assert_error(refused, 503, "spreadsheets_busy")
    assert int(refused.headers["Retry-After"]) >= 1
    assert market.client.get("/v1/uploads", headers=operator.headers).json()["items"] == []
    busy.release()
    assert (
        market.client.post("/v1/uploads?filename=wait.xlsx", headers=operator.headers, content=book).status_code == 201
    )
