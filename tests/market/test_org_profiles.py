"""Organisation profiles (统一社会信用代码, address, contact, bank) and the unified social credit code check."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from market.accounts import uscc
from market.accounts.models import Role
from market.messages import render
from tests.conftest import Market

KNOWN_VALID = ("91350100M000100Y43", "91110000802100433B", "91110108551385082Q")
BODY = st.text(alphabet=uscc.ALPHABET, min_size=17, max_size=17).map(lambda s: s[:2] + "110105" + s[8:])


def with_check(first17: str) -> str:
    return first17 + uscc.check_character(first17)


def test_known_codes_are_valid_and_a_typo_is_not():
    for code in KNOWN_VALID:
        assert uscc.is_valid(code), code
    assert uscc.problem("91350100M000100Y44") == ("uscc_checksum", {"code": "91350100M000100Y44"})
    assert uscc.problem("91350100M000100Y4")[0] == "uscc_length"
    assert uscc.problem("91350100M0001O0Y43")[0] == "uscc_characters"
    assert uscc.problem("91A50100M000100Y43")[0] == "uscc_division"


@given(BODY)
def test_a_code_with_its_check_character_is_valid(body: str):
    assert uscc.is_valid(with_check(body))


@given(BODY, st.integers(0, 17), st.sampled_from(uscc.ALPHABET))
def test_every_single_wrong_character_is_caught(body: str, position: int, char: str):
    code = with_check(body)
    changed = code[:position] + char + code[position + 1 :]
    assert uscc.is_valid(changed) == (changed == code) or not changed[2:8].isdigit()


@given(BODY, st.integers(0, 16))
def test_every_swap_of_neighbours_is_caught(body: str, position: int):
    code = with_check(body)
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    assert uscc.is_valid(swapped) == (swapped == code) or not swapped[2:8].isdigit()


def test_admin_edits_a_profile_and_others_read_only_their_own(market: Market):
    admin = market.actor(Role.ADMIN)
    buyer = market.actor(Role.BUYER, org="北京数据应用科技有限公司")
    other = market.actor(Role.BUYER)
    finance = market.actor(Role.FINANCE)
    org = buyer.principal.org_id

    empty = market.client.get(f"/v1/orgs/{org}", headers=buyer.headers).json()
    assert empty["name"] == "北京数据应用科技有限公司" and empty["uscc"] is None and empty["bank_account"] is None

    patch = {
        "uscc": "9111 0108 5513 8508 2q",
        "address": "北京市海淀区中关村大街1号",
        "contact_name": "张三",
        "contact_phone": "010-12345678",
        "bank_name": "中国工商银行北京中关村支行",
        "bank_account": "0200 0045 0902 0123 456",
    }
    edited = market.client.patch(f"/v1/orgs/{org}", headers=admin.headers, json=patch)
    assert edited.status_code == 200, edited.text
    assert edited.json()["uscc"] == "91110108551385082Q"
    assert edited.json()["bank_account"] == "0200 0045 0902 0123 456"
    for reader in (buyer, finance, admin):
        assert market.client.get(f"/v1/orgs/{org}", headers=reader.headers).json() == edited.json()

    cleared = market.client.patch(f"/v1/orgs/{org}", headers=admin.headers, json={"bank_account": None})
    assert cleared.json()["bank_account"] is None and cleared.json()["bank_name"] == patch["bank_name"]

    assert market.client.get(f"/v1/orgs/{org}", headers=other.headers).status_code == 404
    assert market.client.patch(f"/v1/orgs/{org}", headers=buyer.headers, json={"address": "x"}).status_code == 403
    assert market.client.patch("/v1/orgs/org_nope", headers=admin.headers, json={"address": "x"}).status_code == 404


def test_bad_details_are_refused_in_the_callers_language(market: Market):
    admin = market.actor(Role.ADMIN)
    org = market.actor(Role.BUYER).principal.org_id
    typo = market.client.patch(
        f"/v1/orgs/{org}", headers={**admin.headers, "Accept-Language": "zh-CN"}, json={"uscc": "91110108551385082R"}
    )
    assert typo.status_code == 422
    assert typo.json()["error"] == {
        "code": "uscc_checksum",
        "message": render("uscc_checksum", "zh_CN", code="91110108551385082R"),
    }
    for account in ("12345", "abcdefghijk", "1234--5678-9012", " "):
        refused = market.client.patch(f"/v1/orgs/{org}", headers=admin.headers, json={"bank_account": account})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_bank_account", account
    unknown = market.client.patch(f"/v1/orgs/{org}", headers=admin.headers, json={"tax": "1"})
    assert unknown.status_code == 422
    assert market.client.get(f"/v1/orgs/{org}", headers=admin.headers).json()["uscc"] is None
