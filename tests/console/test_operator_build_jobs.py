"""The operator's resumable upload and background build over HTTP: parts at the server's offset, a resume after a
lost part, the stored upload; one build per product at a time, and a build whose process died is swept."""

from __future__ import annotations

import hashlib
import os
import signal
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from market import clock
from products import repository
from products.pipeline.builds import LEASE
from products.pipeline.models import BuildJob
from tests.conftest import Market
from tests.console.helpers import csrf_of, post_form
from tests.console.test_operator_pages import PHONES, finished_build, operator_client
from tests.factories import create_product
from tests.served import served

RECIPE = {
    "table": "contacts",
    "k": "5",
    "action_0": "pseudonymise",
    "role_0": "privacy_unit",
    "action_1": "drop",
    "action_2": "drop",
    "role_3": "dimension",
    "type_4": "integer",
    "role_4": "measure",
}


def start(client: TestClient, filename: str, size: int) -> tuple[str, str]:
    token = csrf_of(client.get("/console/products").text)
    started = client.post(
        "/console/uploads/sessions", params={"filename": filename, "size": size}, headers={"X-CSRF-Token": token}
    )
    assert started.status_code == 201, started.text
    assert started.json()["offset"] == 0 and started.json()["upload"] is None
    return str(started.json()["id"]), token


def put(client: TestClient, session: str, token: str, data: bytes, start: int, size: int) -> object:
    return client.put(
        f"/console/uploads/sessions/{session}",
        content=data,
        headers={
            "X-CSRF-Token": token,
            "Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}",
            "Content-Type": "application/octet-stream",
        },
    )


def test_a_resumable_upload_goes_on_from_the_servers_offset_and_is_stored_like_any_upload(market: Market) -> None:
    _, client = operator_client(market)
    data = PHONES.encode()
    size = len(data)
    session, token = start(client, "contacts.csv", size)

    first = put(client, session, token, data[:1000], 0, size)
    assert first.status_code == 200 and first.json()["offset"] == 1000  # type: ignore[attr-defined]
    assert first.headers["Upload-Offset"] == "1000"  # type: ignore[attr-defined]

    # The browser lost the answer to its next part and sends it again from 0: refused, with the offset to use.
    again = put(client, session, token, data[:1000], 0, size)
    assert again.status_code == 409, again.text  # type: ignore[attr-defined]
    assert again.json()["error"]["code"] == "upload_offset_mismatch"  # type: ignore[attr-defined]
    assert again.headers["Upload-Offset"] == "1000"  # type: ignore[attr-defined]
    # A part reaching past the announced size, or without a range, is refused and changes nothing.
    beyond = put(client, session, token, data[1000:] + b"extra", 1000, size)
    assert beyond.status_code == 422  # type: ignore[attr-defined]
    bare = client.put(f"/console/uploads/sessions/{session}", content=b"x", headers={"X-CSRF-Token": token})
    assert bare.status_code == 422 and bare.json()["error"]["code"] == "upload_range_invalid"
    # After a reload the page asks how much the server has, and sends the rest.
    state = client.get(f"/console/uploads/sessions/{session}").json()
    assert state["offset"] == 1000 and state["size"] == size and state["upload"] is None

    last = put(client, session, token, data[1000:], 1000, size)
    assert last.status_code == 200, last.text  # type: ignore[attr-defined]
    stored = last.json()["upload"]  # type: ignore[attr-defined]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() and stored["size_bytes"] == size
    assert client.get(f"/console/uploads/sessions/{session}").json()["upload"]["id"] == stored["id"]
    # Another operator neither sees the session nor can add to it.
    other = operator_client(market)[1]
    assert other.get(f"/console/uploads/sessions/{session}").status_code == 404


def test_starting_a_resumable_upload_checks_the_name_size_role_and_csrf(market: Market) -> None:
    _, client = operator_client(market)
    token = csrf_of(client.get("/console/products").text)
    for params, code in (
        ({"filename": "notes.txt", "size": 10}, "unsupported_file"),
        ({"filename": "a.csv", "size": 0}, "upload_size_invalid"),
    ):
        refused = client.post("/console/uploads/sessions", params=params, headers={"X-CSRF-Token": token})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == code
    assert client.post("/console/uploads/sessions", params={"filename": "a.csv", "size": 5}).status_code == 403
    unknown = client.get("/console/uploads/sessions/ups_nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "upload_session_not_found"


def test_one_build_per_product_at_a_time_and_a_dead_build_is_swept(market: Market) -> None:
    operator, client = operator_client(market)
    assert create_product(market, operator, "phone-book").status_code == 201
    data = PHONES.encode()
    session, token = start(client, "contacts.csv", len(data))
    upload = put(client, session, token, data, 0, len(data)).json()["upload"]["id"]  # type: ignore[attr-defined]
    page = f"/console/products/phone-book/build?upload={upload}"

    # Another API process is building this product (its job holds the product's slot and beats its heart).
    with market.database.transaction() as db:
        product = repository.by_slug(db, "phone-book")
        assert product is not None
        other = BuildJob(
            product_id=product.id,
            org_id=product.operator_org_id,
            active=product.id,
            created_by=operator.principal.user_id,
        )
        db.add(other)
        db.flush()
        running = other.id
    second = post_form(
        client, page, "/console/products/phone-book/build", {**RECIPE, "upload": upload, "action": "build"}
    )
    assert second.status_code == 303  # type: ignore[attr-defined]
    assert second.headers["location"] == f"/console/products/phone-book/builds/{running}"  # type: ignore[attr-defined]
    state = client.get(f"/console/products/phone-book/builds/{running}/state").json()
    assert state["state"] == "running" and state["stage"] == "queued"
    with market.database.transaction() as db:
        assert db.query(BuildJob).count() == 1, "the second click started another build"

    # That process was killed (kill -9): its heartbeat stops; once the lease has passed the job is failed.
    with clock.travel_to(clock.utcnow() + LEASE + timedelta(seconds=1)):
        state = client.get(f"/console/products/phone-book/builds/{running}/state").json()
        assert state["state"] == "failed" and state["error"]["code"] == "build_interrupted"
        assert "start the build again" in state["error"]["message"]
        shown = client.get(f"/console/products/phone-book/builds/{running}")
        assert "start the build again" in shown.text and 'id="build-again"' in shown.text
        zh = client.get(f"/console/products/phone-book/builds/{running}/state", headers={"Accept-Language": "zh-CN"})
        assert zh.json()["error"]["message"] != state["error"]["message"]

        # The slot is free: the next click builds, and the version appears.
        third = post_form(
            client, page, "/console/products/phone-book/build", {**RECIPE, "upload": upload, "action": "build"}
        )
        assert third.status_code == 303  # type: ignore[attr-defined]
        location = third.headers["location"]  # type: ignore[attr-defined]
        assert location != f"/console/products/phone-book/builds/{running}"
        assert finished_build(client, location) == "/console/products/phone-book/versions/1"


def test_a_build_whose_server_is_killed_is_not_left_running_for_ever(market: Market, tmp_path: Path) -> None:
    """`kill -9` of the API process in the middle of a build: the job stops beating; after the lease it is failed,
    no version was stored, and the next build goes through."""
    operator, client = operator_client(market)
    assert create_product(market, operator, "phone-book").status_code == 201
    data = (PHONES.split("\n", 1)[0] + "\n").encode() + b"".join(
        f"P{i:07d},Person {i},138{i:08d},{['north', 'south'][i % 2]},{i % 50}\n".encode() for i in range(300_000)
    )
    session, token = start(client, "contacts.csv", len(data))
    upload = put(client, session, token, data, 0, len(data)).json()["upload"]["id"]  # type: ignore[attr-defined]
    with served(market, tmp_path) as server:
        other = httpx.Client(base_url=server.url, cookies=dict(client.cookies), follow_redirects=False, timeout=60)
        form = {**RECIPE, "upload": upload, "action": "build", "csrf_token": token}
        started = other.post("/console/products/phone-book/build", data=form, headers={"Accept-Language": "en"})
        assert started.status_code == 303, started.text
        job = started.headers["location"]
        state = other.get(f"{job}/state").json()
        while state["state"] == "running" and state["stage"] == "queued":
            state = other.get(f"{job}/state").json()
        assert state["state"] == "running", "the build ended before the server could be killed"
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
    assert client.get(f"{job}/state").json()["state"] == "running"  # its lease has not run out yet
    with clock.travel_to(clock.utcnow() + LEASE + timedelta(seconds=1)):
        state = client.get(f"{job}/state").json()
        assert state["state"] == "failed" and state["error"]["code"] == "build_interrupted"
        assert client.get("/console/products/phone-book/versions/1").status_code == 404
        again = post_form(
            client,
            f"/console/products/phone-book/build?upload={upload}",
            "/console/products/phone-book/build",
            {**RECIPE, "upload": upload, "action": "build"},
        )
        assert again.status_code == 303  # type: ignore[attr-defined]
        assert finished_build(client, again.headers["location"]) == "/console/products/phone-book/versions/1"  # type: ignore[attr-defined]
