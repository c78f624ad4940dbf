"""A signed-in buyer opens its invoice pages and downloads its documents; no other buyer can reach any of them
(detail, usage records of a line, HTML and PDF documents, the pay action), nor finance's pages of them."""

from __future__ import annotations

import re

import pytest

from market.accounts.models import Role
from tests.billing.helpers import invoices_of, run, scene
from tests.conftest import Market
from tests.console.helpers import csrf_of, sign_in

pytestmark = pytest.mark.usefixtures("billed_period_clock")


def test_only_the_owning_buyer_reaches_its_invoice_pages_and_documents(market: Market) -> None:
    s = scene(market, commercial_queries=1, public_queries=0)
    run(market, s.finance, finalize=True)
    invoice = invoices_of(market, s.commercial)[0]
    owner = sign_in(market, s.commercial)
    detail = owner.get(f"/console/invoices/{invoice['id']}")
    assert detail.status_code == 200
    line = re.search(r'href="(/console/invoices/[^"]+/lines/[^"]+)"', detail.text)
    assert line
    paths = (
        f"/console/invoices/{invoice['id']}",
        line.group(1),
        f"/console/invoices/{invoice['id']}/document",
        f"/console/invoices/{invoice['id']}/document?format=pdf",
    )
    for path in paths:
        assert owner.get(path).status_code == 200, path
    assert owner.get(paths[3]).content.startswith(b"%PDF")

    intruder = sign_in(market, market.actor(Role.BUYER))
    for path in paths:
        response = intruder.get(path)
        assert response.status_code == 404 and "invoice_not_found" in response.text, path
    token = csrf_of(intruder.get("/console/invoices").text)
    paid = intruder.post(f"/console/invoices/{invoice['id']}/pay", data={"payment_method": "pm_x", "csrf_token": token})
    assert paid.status_code == 404
    for path in (f"/console/finance/invoices/{invoice['id']}", "/console/finance/invoices"):
        assert intruder.get(path).status_code == 403, path
    assert invoice["number"] not in intruder.get("/console/invoices").text
