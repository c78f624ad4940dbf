"""Abandoned resumable uploads are removed by the upkeep job (bytes and session) once no part has touched them
for MARKET_UPLOAD_SESSION_TTL_HOURS, on the market's clock; a session touched since, one whose part is arriving
at that moment, and a finished one are kept."""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import timedelta
from pathlib import Path

from market import clock
from market.compliance.jobs import run_upkeep
from tests.conftest import Market
from tests.console.test_operator_build_jobs import put, start
from tests.console.test_operator_pages import PHONES, operator_client


def _files(market: Market) -> set[str]:
    return {p.name for p in Path(market.settings.data_dir).rglob(".session-*")}


def test_upkeep_removes_only_the_sessions_untouched_for_the_ttl(market: Market) -> None:
    _, client = operator_client(market)
    data = PHONES.encode()
    size = len(data)
    clock.freeze(clock.utcnow() - timedelta(hours=25))  # back in time: the web sign-in (12 h) stays valid
    try:
        abandoned, token = start(client, "a.csv", size)
        assert put(client, abandoned, token, data[:100], 0, size).status_code == 200  # type: ignore[attr-defined]
        resumed, _ = start(client, "b.csv", size)
        busy, _ = start(client, "c.csv", size)
        finished, _ = start(client, "d.csv", size)
        stored = put(client, finished, token, data, 0, size).json()["upload"]["id"]  # type: ignore[attr-defined]
        assert {f".session-{s}" for s in (abandoned, resumed, busy)} == _files(market)

        clock.advance(timedelta(hours=23))
        assert put(client, resumed, token, data[:10], 0, size).status_code == 200  # type: ignore[attr-defined]
        clock.advance(timedelta(hours=2))  # 25 h after the start, 2 h after `resumed` was touched

        # A part of `busy` is arriving at this moment: it holds the file's lock, so the sweep keeps it.
        busy_file = next(Path(market.settings.data_dir).rglob(f".session-{busy}"))
        with busy_file.open("ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            results: list[dict[str, int]] = []
            replicas = [
                threading.Thread(target=lambda: results.append(run_upkeep(market.database, market.settings)))
                for _ in range(2)
            ]
            for replica in replicas:
                replica.start()
            for replica in replicas:
                replica.join()
        assert sorted(r["upload_sessions_removed"] for r in results) == [0, 1]  # once across replicas

        assert _files(market) == {f".session-{resumed}", f".session-{busy}"}
        gone = client.get(f"/console/uploads/sessions/{abandoned}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "upload_session_not_found"
        late = put(client, abandoned, token, data[100:], 100, size)
        assert late.status_code == 404  # type: ignore[attr-defined]
        assert client.get(f"/console/uploads/sessions/{busy}").json()["offset"] == 0
        assert client.get(f"/console/uploads/sessions/{finished}").json()["upload"]["id"] == stored

        # The one touched 2 h ago goes on to the end.
        assert client.get(f"/console/uploads/sessions/{resumed}").json()["offset"] == 10
        done = put(client, resumed, token, data[10:], 10, size)
        assert done.status_code == 200 and done.json()["upload"]["sha256"]  # type: ignore[attr-defined]

        # Unlocked, `busy` goes at the next run; a shorter TTL (the setting) takes a session 2 h old.
        shorter = market.settings.model_copy(update={"upload_session_ttl_hours": 1.0})
        assert run_upkeep(market.database, shorter)["upload_sessions_removed"] == 1
        assert _files(market) == set()
        young, _ = start(client, "e.csv", size)
        clock.advance(timedelta(minutes=59))
        assert run_upkeep(market.database, shorter)["upload_sessions_removed"] == 0
        clock.advance(timedelta(minutes=2))
        assert run_upkeep(market.database, shorter)["upload_sessions_removed"] == 1
        assert client.get(f"/console/uploads/sessions/{young}").status_code == 404

        # A file whose session never committed has no row: it goes too, once as old.
        orphan = Path(market.settings.uploads_dir) / "org_gone" / ".session-ups_orphan"
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"part")
        touched = clock.utcnow().timestamp()
        os.utime(orphan, (touched, touched))
        assert run_upkeep(market.database, shorter)["upload_sessions_removed"] == 0
        clock.advance(timedelta(hours=2))
        assert run_upkeep(market.database, shorter)["upload_sessions_removed"] == 1
        assert not orphan.exists()
    finally:
        clock.reset()
