"""Red team red22: the console's resumable upload while its last part is being read for its encoding."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from products.pipeline import encodings
from tests.conftest import Market
from tests.console.test_operator_build_jobs import put, start
from tests.console.test_operator_pages import operator_client
from tests.products.test_encodings_http import TEXT


def test_the_offset_stays_the_bytes_sent_while_the_last_part_is_converted(market: Market, monkeypatch: Any) -> None:
    # Before: the session's own file was rewritten in place as UTF-8 (half the size of UTF-16), so a browser that
    # asked for its offset meanwhile (a timed-out last part, a second tab) was told half the file was missing, and
    # the bytes it then resent were appended to the converted text that was being stored under the sent hash.
    operator, client = operator_client(market)
    data = TEXT.encode("utf-16")
    size = len(data)
    session, token = start(client, "人员.csv", size)
    seen: list[int] = []
    convert = encodings.as_utf8

    def converting_while_the_browser_resumes(path: Path, filename: str) -> str | None:
        found = convert(path, filename)
        state = client.get(f"/console/uploads/sessions/{session}")
        assert state.status_code == 200, state.text
        offset = state.json()["offset"]
        seen.append(offset)
        if offset < size:  # what the browser does: send the rest from the server's offset
            put(client, session, token, data[offset:], offset, size)
        return found

    monkeypatch.setattr(encodings, "as_utf8", converting_while_the_browser_resumes)
    last = put(client, session, token, data, 0, size)
    assert last.status_code == 200, last.text  # type: ignore[attr-defined]
    assert seen == [size]
    stored = last.json()["upload"]  # type: ignore[attr-defined]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    (path,) = (market.settings.uploads_dir / operator.principal.org_id).glob(f"{stored['sha256']}*")
    assert path.read_bytes() == TEXT.encode()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_refused_file_sent_again_in_the_same_session_is_refused_again_not_lost(market: Market) -> None:
    # Before: the refusal removed the session's file, yet the session still answered offset 0; the console's
    # Retry (same file, same session) then sent from 0 and was told "upload session not found", forever.
    operator, client = operator_client(market)
    data = TEXT.encode()[:500] + b"\x80" + TEXT.encode()[500:]
    session, token = start(client, "garbled.csv", len(data))
    for _ in range(2):
        refused = put(client, session, token, data, 0, len(data))
        assert refused.status_code == 422, refused.text  # type: ignore[attr-defined]
        assert refused.json()["error"]["code"] == "invalid_upload"  # type: ignore[attr-defined]
        state = client.get(f"/console/uploads/sessions/{session}")
        assert state.json()["offset"] == 0 and state.json()["upload"] is None
    assert [p.name for p in (market.settings.uploads_dir / operator.principal.org_id).iterdir()] == [
        f".session-{session}"
    ]
