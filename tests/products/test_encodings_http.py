"""Uploads in the encodings Chinese offices save CSV in (GB18030, GBK, UTF-16) build the same version as UTF-8.

Before: DuckDB's CSV reader takes UTF-8 only, and refused a GBK file at build time ("Invalid unicode (byte
sequence mismatch) detected"), the file an operator's spreadsheet writes by default on a Chinese Windows.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.accounts.models import Role
from products.pipeline import encodings
from tests.conftest import Actor, Market
from tests.factories import PEOPLE_POLICY, create_product, csv_bytes, people_rows
from tests.market.test_hostile_input_http import assert_error

REGIONS = {"north": "华北", "south": "华南", "east": "华东", "west": "西部·新疆"}
CATEGORIES = {"common": "常见", "rare": "罕见", "tiny": "极少"}


def _chinese_rows() -> list[dict[str, Any]]:
    return [
        {
            **row,
            "name": f"张{row['person_id'][1:]}（测试）",
            "region": REGIONS[row["region"]],
            "category": CATEGORIES[row["category"]],
        }
        for row in people_rows()
    ]


TEXT = csv_bytes(_chinese_rows()).decode()

SENT: dict[str, bytes] = {
    "people.csv": TEXT.encode(),
    "people-bom.csv": codecs.BOM_UTF8 + TEXT.encode(),
    "people-gb18030.csv": TEXT.encode("gb18030"),
    "people-gbk.csv": TEXT.encode("gbk"),
    "people-utf16.csv": TEXT.encode("utf-16"),
    "people-utf16be.csv": codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    "people-gb18030.csv.gz": gzip.compress(TEXT.encode("gb18030")),
    # Excel's "Unicode text": tab-separated UTF-16 with a byte order mark.
    "people-excel.tsv": TEXT.replace(",", "\t").encode("utf-16"),
}


def _upload(market: Market, operator: Actor, name: str, content: bytes) -> dict[str, Any]:
    response = market.client.post(f"/v1/uploads?filename={name}", headers=operator.headers, content=content)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _build(market: Market, operator: Actor, slug: str, upload_id: str) -> Any:
    return market.client.post(
        f"/v1/products/{slug}/builds",
        headers=operator.headers,
        json={"tables": {"people": upload_id}, "policy": PEOPLE_POLICY},
    )


def _stored_rows(market: Market) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored people table's rows (sorted), by its product's directory."""
    with duckdb.connect() as connection:  # its own: the module's default connection is shared by the whole run
        return {
            path.parent.parent.name: sorted(connection.execute(f"SELECT * FROM read_parquet('{path}')").fetchall())
            for path in market.settings.products_dir.glob("*/v*/people.parquet")
        }


def test_a_csv_in_gb18030_gbk_or_utf16_builds_the_same_version_as_in_utf8(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    for index, (name, content) in enumerate(SENT.items()):
        slug = f"people-{index}"
        assert create_product(market, operator, slug).status_code == 201
        upload = _upload(market, operator, name, content)
        # The upload's hash is the operator's own hash of the bytes sent, whatever is stored.
        assert upload["sha256"] == hashlib.sha256(content).hexdigest()
        built = _build(market, operator, slug, upload["id"])
        assert built.status_code == 201, f"{name}: {built.text}"
    stored = _stored_rows(market)
    assert len(stored) == len(SENT)
    expected = next(iter(stored.values()))
    assert all(rows == expected for rows in stored.values())
    values = {value for row in expected for value in row if isinstance(value, str)}
    assert set(REGIONS.values()) | set(CATEGORIES.values()) <= values
    assert "张0001（测试）" in values


def post_version(market: Market, operator: Actor, slug: str, name: str, content: bytes) -> Any:
    """A new product `slug`, and its version from `content` through the multipart route, as file `name`."""
    assert create_product(market, operator, slug).status_code == 201
    return market.client.post(
        f"/v1/products/{slug}/versions",
        headers=operator.headers,
        files=[("files", (name, content, "application/octet-stream"))],
        data={"policy": json.dumps(PEOPLE_POLICY)},
    )


def test_the_multipart_version_route_reads_gbk_too(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    response = post_version(market, operator, "gbk-direct", "people.csv", SENT["people-gbk.csv"])
    assert response.status_code == 201, response.text
    (rows,) = _stored_rows(market).values()
    assert set(REGIONS.values()) <= {value for row in rows for value in row if isinstance(value, str)}


def test_a_csv_in_no_encoding_read_here_is_refused_as_it_lands_naming_the_line(market: Market) -> None:
    # 0x80 begins no UTF-8 character and no GB18030 one. Before: stored, then the build said only "CSV Error on
    # Line: 2" (DuckDB's first line) after the operator had chosen tables and policy.
    operator = market.actor(Role.OPERATOR)
    sent = TEXT.encode()
    content = sent[:1000] + b"\x80\x80" + sent[1000:]
    line = sent[:1000].count(b"\n") + 1
    english = market.client.post("/v1/uploads?filename=garbled.csv", headers=operator.headers, content=content)
    message = assert_error(english, 422, "invalid_upload")
    assert "garbled.csv" in message and f"line {line} is not UTF-8, GB18030 or UTF-16 text" in message
    chinese = market.client.post(
        "/v1/uploads?filename=garbled.csv",
        headers={**operator.headers, "Accept-Language": "zh-CN"},
        content=content,
    )
    translated = assert_error(chinese, 422, "invalid_upload")
    assert "garbled.csv" in translated and f"第 {line} 行" in translated and "UTF-8" in translated
    assert market.client.get("/v1/uploads", headers=operator.headers).json()["items"] == []
    # The same bytes sent to the multipart version route: the same refusal.
    direct = post_version(market, operator, "garbled", "garbled.csv", content)
    assert f"line {line} is not UTF-8" in assert_error(direct, 422, "invalid_upload")


def test_a_byte_order_mark_over_other_bytes_is_refused(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    content = codecs.BOM_UTF16_LE + b"a\x00,\x00b\x00\n\x00" + b"\x00\xd8" + b"1\x00"  # an unpaired surrogate
    response = market.client.post("/v1/uploads?filename=odd.csv", headers=operator.headers, content=content)
    message = assert_error(response, 422, "invalid_upload")
    assert "begins with a UTF-16 byte order mark but is not UTF-16 text" in message


_TEXTS = st.text(
    # Every scalar value (GB18030 and UTF-16 carry them all) but NUL, which no stored text may hold: a UTF-16 file
    # beginning with one begins with UTF-32's mark, and is kept as sent.
    st.characters(codec="utf-8", blacklist_characters="\x00"),
    min_size=1,
    max_size=300,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXTS, compressed=st.booleans())
def test_every_text_reads_back_exactly(tmp_path: Path, text: str, compressed: bool) -> None:
    """A UTF-8 file is kept byte for byte; a GB18030 or UTF-16 one is rewritten as UTF-8 holding the very same text
    (but the one ambiguity: GB18030 bytes that are valid UTF-8 as they are, kept as UTF-8)."""
    name = "t.csv.gz" if compressed else "t.csv"
    for encoding in ("utf-8", "gb18030", "utf-16"):
        sent = text.encode(encoding)
        path = tmp_path / f"{encoding}-{name}"
        path.write_bytes(gzip.compress(sent) if compressed else sent)
        found = encodings.as_utf8(path, name)
        stored = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
        try:
            sent.decode("utf-8")
            already_utf8 = encoding != "utf-16"  # a UTF-16 mark is never valid UTF-8
        except UnicodeDecodeError:
            already_utf8 = False
        if already_utf8:
            assert found is None and stored == sent
        else:
            assert found == encoding and stored.decode("utf-8") == text


def test_a_gzip_stream_holding_more_text_than_an_upload_may_is_refused(market: Market, monkeypatch: Any) -> None:
    # A small gzip stream can hold terabytes: before, every pass over it (and the build) read all of them.
    monkeypatch.setattr(encodings, "MAX_TEXT_BYTES", 3 * encodings.CHUNK)
    operator = market.actor(Role.OPERATOR)
    bomb = gzip.compress(b"a,b\n" + b"1,2\n" * encodings.CHUNK)  # 4 MiB of text in about 8 KiB
    assert len(bomb) < 64 * 1024
    response = market.client.post("/v1/uploads?filename=bomb.csv.gz", headers=operator.headers, content=bomb)
    assert_error(response, 422, "upload_too_large")
    fits = gzip.compress(b"a,b\n" + b"1,2\n" * (encodings.CHUNK // 2))
    assert (
        market.client.post("/v1/uploads?filename=fits.csv.gz", headers=operator.headers, content=fits).status_code
        == 201
    )
