"""Upload and process a large CSV with bounded memory: prints the server's peak RSS beside the file size.

    .venv/bin/python -m bench.upload_memory --size-gb 2
    .venv/bin/python -m bench.upload_memory --size-gb 1 --console   # the browser's path through the console

Generates a person-level CSV (names, ID-card-like numbers, birth dates, districts, amounts) with DuckDB,
starts `market` in a child process, streams the file to POST /v1/uploads with the operator CLI's client,
builds a version through a recipe (drop, pseudonymise, generalise, dedupe, value rules) with POST
/v1/products/{slug}/builds, then reads the server's peak resident memory (VmHWM) from /proc.

With --console the file takes the operator console's path instead, the one its drag-and-drop page uses: a web
sign-in, then a resumable upload session and the file in 8 MiB parts (PUT /console/uploads/sessions/{id} with
Content-Range, session cookie and X-CSRF-Token header), then the recipe editor's form (POST
/console/products/{slug}/build) with the same recipe as fields per column, which starts the build in the
background; its state is polled as the progress page does, sampling the server's RSS per build stage.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PART_BYTES = 8 * 1024 * 1024
"""The console page's upload part size (market/console/static/operator.js)."""
ROW_BYTES = 62
"""Average bytes per generated CSV row, to size the file."""

RECIPE = {
    "tables": {
        "payments": {
            "columns": {
                "person": {"source": "id_number", "required": True, "transform": {"kind": "pseudonymise"}},
                "birth_decade": {
                    "source": "birth_date",
                    "type": "date",
                    "transform": {"kind": "truncate_date", "unit": "decade"},
                },
                "district": {"on_invalid": "quarantine", "pattern": "D[0-9]{2}"},
                "month": {"type": "integer", "min": 1, "max": 12},
                "amount": {"type": "decimal(12,2)", "min": 0, "required": True},
            },
            "dedupe": True,
            "quasi_identifiers": ["district", "birth_decade"],
        }
    }
}
POLICY = {
    "min_group_size": 10,
    "tables": {
        "payments": {
            "privacy_unit": "person",
            "dimensions": ["district", "birth_decade", "month"],
            "measures": ["amount"],
        }
    },
}


WEB_PASSWORD = "bench operator web password"
CONSOLE_FORM = {
    "table": "payments",
    "k": "10",
    "dedupe": "on",
    "action_0": "drop",
    "action_1": "pseudonymise",
    "out_1": "person",
    "role_1": "privacy_unit",
    "required_1": "on",
    "action_2": "truncate_date",
    "param_2": "decade",
    "out_2": "birth_decade",
    "type_2": "date",
    "role_2": "dimension",
    "qi_2": "on",
    "action_3": "keep",
    "out_3": "district",
    "role_3": "dimension",
    "pattern_3": "D[0-9]{2}",
    "invalid_3": "quarantine",
    "qi_3": "on",
    "action_4": "keep",
    "out_4": "month",
    "type_4": "integer",
    "role_4": "dimension",
    "min_4": "1",
    "max_4": "12",
    "action_5": "keep",
    "out_5": "amount",
    "type_5": "decimal(18,2)",
    "role_5": "measure",
    "min_5": "0",
    "required_5": "on",
}
"""RECIPE and POLICY as the console's recipe editor sends them (columns by position in the generated CSV)."""


class ConsoleClient:
    """The operator's browser, reduced to its requests: web sign-in, the streamed upload, the recipe form."""

    def __init__(self, api: str) -> None:
        import re

        import httpx

        self.csrf = re.compile(r'name="csrf_token" value="([^"]+)"')
        self.client = httpx.Client(base_url=api, timeout=None, follow_redirects=False)
        form = self.client.get("/login")
        data = {"email": "operator@bench", "password": WEB_PASSWORD, "csrf_token": self._token(form.text)}
        signed = self.client.post("/login", data=data)
        assert signed.status_code == 303, signed.text
        self.token = self._token(self.client.get("/console/products").text)

    def _token(self, html: str) -> str:
        found = self.csrf.search(html)
        assert found, "no CSRF field"
        return found.group(1)

    def upload(self, path: Path) -> str:
        """The file as the drag-and-drop page sends it: a resumable session, then 8 MiB parts (PUT with
        Content-Range), each read from disk as the browser reads a File.slice."""
        size = path.stat().st_size
        headers = {"X-CSRF-Token": self.token}
        started = self.client.post(
            "/console/uploads/sessions", params={"filename": path.name, "size": size}, headers=headers
        )
        assert started.status_code == 201, started.text
        session = started.json()["id"]
        offset = 0
        with path.open("rb") as handle:
            while offset < size:
                part = handle.read(PART_BYTES)
                sent = self.client.put(
                    f"/console/uploads/sessions/{session}",
                    content=part,
                    headers={
                        **headers,
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {offset}-{offset + len(part) - 1}/{size}",
                    },
                )
                assert sent.status_code == 200, sent.text
                offset = sent.json()["offset"]
        upload = sent.json()["upload"]
        assert upload is not None
        return str(upload["id"])

    def build(self, upload_id: str, pid: int, stages: dict[str, float]) -> str:
        """The recipe editor's Build button, then the progress page's polling until the build ends; the server's
        resident memory is sampled at each poll and the highest per stage kept in `stages`. Returns the version."""
        built = self.client.post(
            "/console/products/bench-payments/build",
            data={**CONSOLE_FORM, "upload": upload_id, "action": "build", "csrf_token": self.token},
        )
        assert built.status_code == 303, built.text[-2000:]
        job = str(built.headers["location"])
        while True:
            state = self.client.get(f"{job}/state").json()
            rss, _ = peak_rss_mb(pid)
            stages[state["stage"]] = max(stages.get(state["stage"], 0.0), rss)
            if state["state"] != "running":
                break
            time.sleep(0.2)
        assert state["state"] == "done", state
        return str(state["version"])


def generate(path: Path, rows: int) -> None:
    import duckdb

    with duckdb.connect(config={"threads": 2, "memory_limit": "512MB", "preserve_insertion_order": False}) as con:
        con.execute(
            f"""COPY (
              SELECT 'Name ' || (p % 1000003)::VARCHAR || ' Surname' AS full_name,
                     '1101' || lpad((p % 16)::VARCHAR, 2, '0') || strftime(born, '%Y%m%d')
                       || lpad((p // 18000 % 1000)::VARCHAR, 3, '0') || 'X' AS id_number,
                     strftime(born, '%Y-%m-%d') AS birth_date,
                     'D' || lpad((p % 16)::VARCHAR, 2, '0') AS district,
                     (i % 12 + 1) AS month,
                     round(((i * 7919) % 1000003) / 100.0, 2) AS amount
              FROM (SELECT i, i // 12 AS p, DATE '1950-01-01' + ((i // 12) % 18000)::INTEGER AS born
                    FROM range({rows}) t(i))
            ) TO '{path}' (HEADER, DELIMITER ',')"""
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def serve(data_dir: Path, port: int, keyfile: Path) -> None:
    """The child: a migrated marketplace with one authorised operator and a draft product, served by uvicorn."""
    from datetime import timedelta
    from decimal import Decimal

    import uvicorn

    from market.accounts import service as accounts
    from market.accounts import signin
    from market.accounts.models import OrgKind, Role
    from market.accounts.service import Principal
    from market.app import create_app
    from market.clock import utcnow
    from market.db import Database, migrate
    from market.settings import Settings
    from products import service as products
    from products.governance import authorisations
    from products.governance.schemas import AuthorisationIn, FeeCapIn
    from products.schemas import ProductIn

    settings = Settings(data_dir=data_dir, scheduler_enabled=False)
    settings.ensure_dirs()
    database = Database.from_settings(settings)
    migrate(database)
    with database.transaction() as session:
        orgs = {kind: accounts.create_org(session, None, name=f"bench {kind.value}", kind=kind) for kind in OrgKind}
        people = {}
        for role, kind in ((Role.REGULATOR, OrgKind.AUTHORITY), (Role.OPERATOR, OrgKind.OPERATOR)):
            user = accounts.create_user(
                session, None, org=orgs[kind], name=role.value, email=f"{role.value}@bench", role=role
            )
            people[role] = (Principal(user.id, orgs[kind].id, orgs[kind].name, role), user)
        now = utcnow()
        authorisations.grant(
            session,
            people[Role.REGULATOR][0],
            AuthorisationIn(
                operator=orgs[OrgKind.OPERATOR].id,
                zones=["finance"],
                regions=["CN-11"],
                valid_until=now + timedelta(days=30),
                fee_caps=[
                    FeeCapIn(
                        zone="finance", max_per_query_minor=100, max_per_gb_minor=Decimal(0), max_monthly_fee_minor=0
                    )
                ],
            ),
        )
        products.create_product(
            session,
            people[Role.OPERATOR][0],
            ProductIn(slug="bench-payments", title="Bench payments", zone="finance", region="CN-11"),
        )
        _, key = accounts.issue_key(session, None, user=people[Role.OPERATOR][1])
        signin.set_password(session, None, people[Role.OPERATOR][1].id, WEB_PASSWORD)
    keyfile.write_text(key)
    uvicorn.run(create_app(settings, database), host="127.0.0.1", port=port, log_level="warning")


def run_once(size_gb: float, console: bool = False) -> dict[str, float]:
    """Generate, upload and build one file of `size_gb`; the server's memory is measured from /proc."""
    from products.cli import upload_file

    with tempfile.TemporaryDirectory(prefix="upload-bench-") as tmp:
        work = Path(tmp)
        csv_path = work / "payments.csv"
        started = time.perf_counter()
        generate(csv_path, int(size_gb * 1e9 / ROW_BYTES))
        size = csv_path.stat().st_size
        print(f"generated {size / 1e9:.2f} GB CSV in {time.perf_counter() - started:.1f} s", flush=True)

        port = free_port()
        keyfile = work / "key"
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.upload_memory", "--serve", str(work / "data"), str(port), str(keyfile)],
            env={**os.environ, "MARKET_DATA_DIR": str(work / "data")},
        )
        try:
            api = f"http://127.0.0.1:{port}"
            for _ in range(3000):  # a loaded machine may take minutes to import the app
                try:
                    urllib.request.urlopen(f"{api}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            browser = ConsoleClient(api) if console else None  # signed in, pages rendered once: then idle
            idle_rss, _ = peak_rss_mb(child.pid)
            key = keyfile.read_text()

            started = time.perf_counter()
            upload_id = browser.upload(csv_path) if browser else upload_file(api, key, csv_path)["id"]
            upload_s = time.perf_counter() - started
            _, upload_peak = peak_rss_mb(child.pid)

            started = time.perf_counter()
            stages: dict[str, float] = {}
            if browser:
                number = browser.build(upload_id, child.pid, stages)
                request = urllib.request.Request(
                    f"{api}/v1/products/bench-payments/versions/{number}", headers={"Authorization": f"Bearer {key}"}
                )
            else:
                body = json.dumps({"tables": {"payments": upload_id}, "recipe": RECIPE, "policy": POLICY}).encode()
                request = urllib.request.Request(
                    f"{api}/v1/products/bench-payments/builds",
                    data=body,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
            with urllib.request.urlopen(request, timeout=None) as response:
                version = json.loads(response.read())
            build_s = time.perf_counter() - started
            _, build_peak = peak_rss_mb(child.pid)
        finally:
            child.terminate()
            child.wait(timeout=30)
    quality = version["quality"]["tables"]["payments"]
    return {
        "size_mib": size / 2**20,
        "rows": quality["rows_in"],
        "rows_out": quality["rows_out"],
        "upload_s": upload_s,
        "build_s": build_s,
        "idle_mib": idle_rss,
        "upload_peak_mib": upload_peak,
        "build_peak_mib": build_peak,
        "clean": float(version["audit"]["clean"]),
        **{f"stage:{name}": rss for name, rss in stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-gb", type=float, nargs="+", default=[0.25, 2.0], help="sizes of the generated CSVs, in GB (10^9 B)"
    )
    parser.add_argument(
        "--console", action="store_true", help="upload and build through the operator console's browser path"
    )
    parser.add_argument("--serve", nargs=3, metavar=("DATA_DIR", "PORT", "KEYFILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), Path(args.serve[2]))
        return
    results = [run_once(size, args.console) for size in args.size_gb]
    print()
    print(f"{'file MiB':>9} {'rows':>12} {'upload s':>9} {'MiB/s':>6} {'build s':>8} {'MiB/s':>6} "
          f"{'idle RSS':>9} {'peak RSS upload':>16} {'peak RSS build':>15} {'peak/file':>10} {'audit':>6}")  # fmt: skip
    for r in results:
        print(
            f"{r['size_mib']:9,.0f} {r['rows']:12,.0f} {r['upload_s']:9.1f} {r['size_mib'] / r['upload_s']:6.0f} "
            f"{r['build_s']:8.1f} {r['size_mib'] / r['build_s']:6.0f} {r['idle_mib']:9.0f} "
            f"{r['upload_peak_mib']:16.0f} {r['build_peak_mib']:15.0f} {r['build_peak_mib'] / r['size_mib']:10.3f} "
            f"{'clean' if r['clean'] else 'FOUND':>6}"
        )
    for r in results:
        by_stage = {k.split(":", 1)[1]: v for k, v in r.items() if k.startswith("stage:")}
        if by_stage:
            print(f"{r['size_mib']:,.0f} MiB, highest RSS sampled per build stage (MiB): "
                  + ", ".join(f"{name} {rss:,.0f}" for name, rss in by_stage.items()))  # fmt: skip
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"file grew {last['size_mib'] / first['size_mib']:.1f}x; server peak RSS grew "
            f"{last['build_peak_mib'] / first['build_peak_mib']:.2f}x"
        )


if __name__ == "__main__":
    main()
