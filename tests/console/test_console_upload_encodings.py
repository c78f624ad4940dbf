"""The console's resumable upload of a GBK CSV: stored as UTF-8 under the hash of the bytes sent; a file in no
encoding the upload reads is refused when its last part arrives, naming the line, in the operator's language."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from products.pipeline import workbooks
from tests.conftest import Market
from tests.console.test_operator_build_jobs import put, start
from tests.console.test_operator_pages import operator_client
from tests.products.test_encodings_http import TEXT
from tests.products.test_workbooks_http import _people_sheet, _workbook


def _stored_in_two_parts(market: Market, name: str, data: bytes) -> bytes:
    """`data` sent as `name` through the console's resumable upload in two parts; the bytes stored, after checking
    that the upload keeps the hash and size of what was sent."""
    operator, client = operator_client(market)
    size, cut = len(data), len(data) // 3
    session, token = start(client, name, size)
    assert put(client, session, token, data[:cut], 0, size).status_code == 200  # type: ignore[attr-defined]
    last = put(client, session, token, data[cut:], cut, size)
    assert last.status_code == 200, last.text  # type: ignore[attr-defined]
    stored = last.json()["upload"]  # type: ignore[attr-defined]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() and stored["size_bytes"] == size
    (path,) = (market.settings.uploads_dir / operator.principal.org_id).glob(f"{stored['sha256']}*")
    return path.read_bytes()


def test_a_gbk_file_sent_in_parts_is_stored_as_utf8_under_the_hash_of_what_was_sent(market: Market) -> None:
    assert _stored_in_two_parts(market, "人员.csv", TEXT.encode("gbk")) == TEXT.encode()


def test_a_file_in_no_encoding_read_here_is_refused_when_its_last_part_arrives(market: Market) -> None:
    operator, client = operator_client(market)
    sent = TEXT.encode()
    data = sent[:900] + b"\x80" + sent[900:]
    line = sent[:900].count(b"\n") + 1
    session, token = start(client, "garbled.csv", len(data))
    refused = client.put(
        f"/console/uploads/sessions/{session}",
        content=data,
        headers={
            "X-CSRF-Token": token,
            "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
            "Content-Type": "application/octet-stream",
            "Accept-Language": "zh-CN",
        },
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_upload" and f"第 {line} 行" in error["message"]
    # Only the session's own file is left, emptied: sent again, the file is refused again (red22); the upkeep job
    # sweeps it with the session.
    left = list((market.settings.uploads_dir / operator.principal.org_id).glob("*"))
    assert [(path.name, path.stat().st_size) for path in left] == [(f".session-{session}", 0)]


def test_a_workbook_sent_in_parts_is_stored_as_the_csv_of_its_sheet(market: Market) -> None:
    stored = _stored_in_two_parts(market, "人员.xlsx", _workbook({"人员": _people_sheet()}))
    assert stored.decode().splitlines() == TEXT.splitlines()


def test_a_last_part_answered_503_is_stored_by_the_next_request(market: Market, monkeypatch: Any) -> None:
    # Before: every byte was there, the session said offset = size, and no request could store it any more.
    _, client = operator_client(market)
    busy = threading.BoundedSemaphore(1)
    assert busy.acquire()
    monkeypatch.setattr(workbooks, "_reading", busy)
    monkeypatch.setattr(workbooks, "WAIT_SECONDS", 0)
    data = _workbook({"人员": _people_sheet()})
    size = len(data)
    session, token = start(client, "人员.xlsx", size)
    refused = put(client, session, token, data, 0, size)
    assert refused.status_code == 503, refused.text  # type: ignore[attr-defined]
    assert refused.json()["error"]["code"] == "spreadsheets_busy"  # type: ignore[attr-defined]
    assert int(refused.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
    assert client.get(f"/console/uploads/sessions/{session}").json()["offset"] == size
    busy.release()
    # What the console's script sends from the server's offset: an empty part at the end.
    again = put(client, session, token, b"", size, size)
    assert again.status_code == 200, again.text  # type: ignore[attr-defined]
    stored = again.json()["upload"]  # type: ignore[attr-defined]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/console/uploads/sessions/{session}").json()["upload"]["id"] == stored["id"]
