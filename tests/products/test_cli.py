"""`market products build` against a live server: upload with progress, build through a recipe, summary."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from market.accounts.models import Role
from market.app import create_app
from market.cli import app
from tests.conftest import Market
from tests.factories import create_product
from tests.products.pipeline_data import POLICY, RECIPE, csv_bytes


@pytest.fixture
def live(market: Market) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(market.settings, market.database), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


def test_build_uploads_and_reports_and_is_safe_to_rerun(market: Market, live: str, tmp_path: Path) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "cli-payments")
    data = tmp_path / "payments.csv"
    data.write_bytes(csv_bytes())
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(RECIPE))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    args = ["products", "build", "cli-payments", "--table", f"payments={data}", "--recipe", str(recipe)]
    args += ["--policy", str(policy), "--api", live, "--key", operator.key]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "audit clean" in result.output and "160" in result.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    uploads = market.client.get("/v1/uploads", headers=operator.headers).json()["items"]
    assert len(uploads) == 1  # the retry reused the stored upload
    versions = market.client.get("/v1/products/cli-payments/versions", headers=operator.headers).json()["items"]
    assert [v["number"] for v in versions] == [1, 2] and versions[0]["recipe_hash"] == versions[1]["recipe_hash"]
    assert versions[0]["tables"] == versions[1]["tables"]  # re-running the recipe gives the same table

    denied = CliRunner().invoke(app, [*args[:-1], "wrong-key"])
    assert denied.exit_code == 1 and "invalid_api_key" in denied.output


def test_build_checks_everything_before_uploading(market: Market, live: str, tmp_path: Path) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "cli-checked")
    data = tmp_path / "payments.csv"
    data.write_bytes(csv_bytes())
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    buyer = market.actor(Role.BUYER)

    def build(slug: str, *options: str, key: str = operator.key) -> object:
        args = ["products", "build", slug, "--table", f"payments={data}", "--policy", str(policy), *options]
        return CliRunner().invoke(app, [*args, "--api", live, "--key", key])

    refusals = {
        "unknown product": (build("no-such-product"), "product_not_found"),
        "bad key": (build("cli-checked", key="mk_never-issued"), "invalid_api_key"),
        "wrong role": (build("cli-checked", key=buyer.key), "forbidden_role"),
        "unreadable recipe": (build("cli-checked", "--recipe", str(broken)), "invalid_json_file"),
    }
    nowhere = f"payments={tmp_path / 'nope.csv'}"
    missing = CliRunner().invoke(
        app,
        [
            "products",
            "build",
            "cli-checked",
            "--table",
            nowhere,
            "--policy",
            str(policy),
            "--api",
            live,
            "--key",
            operator.key,
        ],
    )
    refusals["missing file"] = (missing, "local_file_not_found")
    for case, (result, code) in refusals.items():
        assert result.exit_code == 1, case
        assert code in result.stderr and "Traceback" not in result.output, (case, result.output)
    assert "nope.csv" in missing.stderr and "No upload" not in missing.stderr
    assert market.client.get("/v1/uploads", headers=operator.headers).json()["items"] == []  # nothing was sent
