"""/docs and /redoc work offline: every asset they reference is served by the app itself."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from market.openapi import VENDOR_DIR
from tests.conftest import Market

URL_ATTRIBUTES = {"src", "href", "spec-url", "action", "data-src"}


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag in ("script", "style")
        self.urls += [value for name, value in attrs if name in URL_ATTRIBUTES and value]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def references(html: str) -> list[str]:
    """Every URL a page loads: attributes, url(...) in styles, and url: '...' in inline scripts."""
    parser = _References()
    parser.feed(html)
    inline = re.findall(r"""(?:url\s*:\s*|url\()\s*['"]?([^'")\s,]+)""", "".join(parser.scripts))
    return parser.urls + inline


def test_reference_finder_sees_other_hosts():
    page = '<link href="https://cdn.example/x.css"><script src="//cdn.example/y.js"></script><script>u({url: "http://e/z"})</script>'
    assert references(page) == ["https://cdn.example/x.css", "//cdn.example/y.js", "http://e/z"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets(market: Market, path: str):
    page = market.client.get(path)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    urls = references(page.text)
    assert any(url.endswith(".js") for url in urls), urls
    assert "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{path} loads {url} from another host"
        assert market.client.get(url).status_code == 200, url
    assert "fonts.googleapis" not in page.text and "validator.swagger.io" not in page.text


def test_vendored_files_match_the_recorded_checksums():
    recorded = dict(re.findall(r"^\| `([^`]+)` \| ([0-9a-f]{64}) \|$", (VENDOR_DIR / "VENDOR.md").read_text(), re.M))
    files = {str(p.relative_to(VENDOR_DIR)) for p in VENDOR_DIR.rglob("*") if p.is_file() and p.name != "VENDOR.md"}
    assert files == set(recorded)
    for name, digest in recorded.items():
        assert hashlib.sha256(Path(VENDOR_DIR, name).read_bytes()).hexdigest() == digest, name


def test_vendored_assets_are_served(market: Market):
    for name in ("htmx.org/htmx.min.js", "echarts/echarts.common.min.js", "codemirror/codemirror.js"):
        response = market.client.get(f"/static/vendor/{name}")
        assert response.status_code == 200, name
        assert "javascript" in response.headers["content-type"]
