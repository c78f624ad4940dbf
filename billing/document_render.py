"""Render a billing `Document` as self-contained HTML or as PDF with an embedded CJK font.

The PDF embeds a subset of Noto Sans CJK SC (from the `mplfonts` package, a dependency installed by
`make install`), so Chinese names, addresses and 大写金额 print as text that can be searched and
copied, on a fresh machine, without system fonts. MARKET_BILLING_DOCUMENT_FONT may point at another
OpenType/TrueType font with CJK coverage.

Reading the full font (65,000 glyphs) costs about 3 s per PDF. So the first PDF also writes a cut of
the font to the user's cache directory (GB 2312's 7,445 characters, Latin and CJK punctuation; about
20 s, once per machine: `make install` does it ahead); later PDFs read the cut (about 0.4 s). A
document with a character outside the cut (a rare name) uses the full font.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Container, Iterable, Sequence
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse, Response

from billing.documents import Document
from market import i18n
from market.errors import Unprocessable

FONT_FILE = "NotoSansCJKsc-Regular.otf"
CUT_VERSION = "gb2312-1"
log = logging.getLogger("market.documents")


def cjk_font() -> Path:
    """The font the PDFs embed: MARKET_BILLING_DOCUMENT_FONT, else Noto Sans CJK SC shipped by mplfonts."""
    configured = os.environ.get("MARKET_BILLING_DOCUMENT_FONT")
    if configured:
        return Path(configured)
    return _packaged_font()


@lru_cache(maxsize=1)
def _packaged_font() -> Path:
    spec = importlib.util.find_spec("mplfonts")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "fonts" / FONT_FILE
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"{FONT_FILE} not found: install the project (`make install`) or set MARKET_BILLING_DOCUMENT_FONT"
    )


def _cut_characters() -> set[str]:
    """GB 2312 (every simplified character in common use), Latin, general and CJK punctuation, full-width forms."""
    chars = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    for first, last in ((0x20, 0x250), (0x2000, 0x2070), (0x20A0, 0x20C0), (0x3000, 0x3040), (0xFF00, 0xFFF0)):
        chars.update(chr(code) for code in range(first, last))
    return chars


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "public-data-market" / "fonts"


@lru_cache(maxsize=1)
def font_cut() -> tuple[Path, frozenset[str]] | None:
    """The cached cut of the CJK font and the characters it covers (made on first use), or None if it cannot be made."""
    from fontTools import subset

    source = cjk_font()
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{CUT_VERSION}".encode()).hexdigest()
    target = _cache_dir() / f"cut-{key[:16]}{source.suffix}"
    chars = _cut_characters()
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            options = subset.Options()
            options.name_IDs = ["*"]
            options.notdef_outline = True
            options.layout_features = []
            options.hinting = False
            font = subset.load_font(str(source), options)
            subsetter = subset.Subsetter(options)
            subsetter.populate(unicodes=[ord(char) for char in chars])
            subsetter.subset(font)
            with tempfile.NamedTemporaryFile(dir=target.parent, suffix=source.suffix, delete=False) as handle:
                subset.save_font(font, handle.name, options)
            os.replace(handle.name, target)
        except OSError as error:
            log.warning("cannot cache a cut of %s (%s); PDFs read the full font", source, error)
            return None
    return target, frozenset(chars)


def font_for(document: Document) -> Path:
    """The cut of the CJK font if it covers every character of `document`, else the full font."""
    cut = font_cut()
    if cut is None:
        return cjk_font()
    path, covered = cut
    return path if _characters(document) <= covered else cjk_font()


def _characters(document: Document) -> set[str]:
    texts = [document.title, document.reference, document.missing, *document.columns, *document.notes]
    texts += [text for pair in document.facts for text in pair if text]
    for party in document.parties:
        texts += [party.heading, party.name or "", *(text for pair in party.details for text in pair if text)]
    texts += [text for row in document.rows for text in row]
    texts += [text for label, value, _ in document.totals for text in (label, value)]
    texts += list(document.capitals or ())
    return set("".join(texts)) - {"\n", "\t"}


def _value(document: Document, value: str | None) -> str:
    if value is None:
        return f'<span class="missing">{escape(document.missing)}</span>'
    return escape(value)


def html(document: Document) -> str:
    """A printable, self-contained HTML page (no external asset)."""
    parties = "\n".join(
        "<section class=party><h2>{}</h2><p class=name>{}</p><dl>{}</dl></section>".format(
            escape(party.heading),
            _value(document, party.name),
            "".join(f"<dt>{escape(label)}</dt><dd>{_value(document, value)}</dd>" for label, value in party.details),
        )
        for party in document.parties
    )
    facts = "".join(
        f"<tr><th>{escape(label)}</th><td>{_value(document, value)}</td></tr>" for label, value in document.facts
    )

    def cells(row: list[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=n' if index in document.numeric else ''}>{escape(text)}</{tag}>"
            for index, text in enumerate(row)
        )

    head = f"<tr>{cells(document.columns, 'th')}</tr>"
    body = "\n".join(f"<tr>{cells(row, 'td')}</tr>" for row in document.rows)
    span = len(document.columns) - 1
    totals = "\n".join(
        f"<tr class={'strong' if strong else 'plain'}><th colspan={span}>{escape(label)}</th>"
        f"<td class=n>{escape(value)}</td></tr>"
        for label, value, strong in document.totals
    )
    capitals = (
        f'<p class="capitals"><strong>{escape(i18n.gettext(document.locale, "{label}:", label=document.capitals[0]))}'
        f"</strong> {escape(document.capitals[1])}</p>"
        if document.capitals
        else ""
    )
    notes = "".join(f"<p>{escape(note)}</p>" for note in document.notes)
    return f"""<!doctype html>
<html lang="{i18n.html_lang(document.locale)}"><head><meta charset="utf-8">
<title>{escape(document.title)} {escape(document.reference)}</title>
<style>body{{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
margin:2em;max-width:64em}}table{{border-collapse:collapse;width:100%;margin:.5em 0}}
td,th{{border-bottom:1px solid #ccc;padding:.3em;text-align:left}}.n{{text-align:right}}
.parties{{display:flex;gap:2em;margin:1em 0}}.party{{flex:1}}.party h2{{font-size:1em;margin:0}}
.name{{font-weight:bold}}dl{{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:0}}
dd{{margin:0}}.missing{{color:#a40000;font-style:italic}}tr.strong th,tr.strong td{{font-weight:bold}}
.capitals{{font-size:1.1em}}</style></head>
<body>
<h1>{escape(document.title)}</h1>
<div class="parties">
{parties}
</div>
<table class="facts">{facts}</table>
<table class="lines">
{head}
{body}
{totals}
</table>
{capitals}
{notes}
</body></html>
"""


def pdf(document: Document) -> bytes:
    """The same document as a PDF (A4), its text in an embedded subset of a CJK font."""
    from fpdf import FPDF

    out = FPDF(format="A4")
    out.set_title(f"{document.title} {document.reference}")
    out.add_font("cjk", "", str(font_for(document)))
    out.set_auto_page_break(auto=True, margin=15)
    out.add_page()
    out.set_font("cjk", size=16)
    out.cell(0, 10, document.title, new_x="LMARGIN", new_y="NEXT")
    width = (out.w - out.l_margin - out.r_margin) / max(len(document.parties), 1)
    top = out.get_y() + 2
    bottom = top
    for index, party in enumerate(document.parties):
        out.set_xy(out.l_margin + index * width, top)
        out.set_font("cjk", size=10)
        out.multi_cell(width - 4, 5, party.heading, new_x="LEFT", new_y="NEXT")
        _text(out, document, party.name, width - 4, size=11)
        for label, value in party.details:
            out.set_font("cjk", size=8)
            out.set_text_color(0)
            out.multi_cell(
                width - 4, 4, i18n.gettext(document.locale, "{label}:", label=label), new_x="LEFT", new_y="NEXT"
            )
            _text(out, document, value, width - 4, size=8)
        bottom = max(bottom, out.get_y())
    out.set_xy(out.l_margin, bottom + 3)
    out.set_font("cjk", size=9)
    for label, value in document.facts:
        out.cell(40, 5, label)
        _text(out, document, value, 0, size=9)
    out.ln(2)
    pdf_table(out, document.columns, document.rows, document.numeric, line_height=5)
    out.ln(2)
    for label, value, strong in document.totals:
        out.set_font("cjk", size=10 if strong else 9)
        out.cell(out.w - out.l_margin - out.r_margin - 45, 6, label, align="R")
        out.cell(45, 6, value, align="R", new_x="LMARGIN", new_y="NEXT")
    if document.capitals:
        out.ln(2)
        out.set_font("cjk", size=11)
        label = i18n.gettext(document.locale, "{label}:", label=document.capitals[0])
        out.multi_cell(0, 6, f"{label} {document.capitals[1]}", new_x="LMARGIN", new_y="NEXT")
    out.ln(2)
    out.set_font("cjk", size=8)
    for note in document.notes:
        out.multi_cell(0, 4, note, new_x="LMARGIN", new_y="NEXT")
    return bytes(out.output())


def pdf_table(
    out: Any, columns: Sequence[str], rows: Iterable[Sequence[str]], numeric: Container[int], *, line_height: float
) -> None:
    """A table on an FPDF page: a grey heading row, lines between rows, numeric columns aligned right."""
    from fpdf.fonts import FontFace

    with out.table(
        text_align=tuple("RIGHT" if index in numeric else "LEFT" for index in range(len(columns))),
        line_height=line_height,
        headings_style=FontFace(emphasis=None, fill_color=(235, 235, 235)),
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        table.row(columns)
        for row in rows:
            table.row(row)


def _text(out: object, document: Document, value: str | None, width: float, *, size: int) -> None:
    """A value, or the missing mark in red."""
    from fpdf import FPDF

    assert isinstance(out, FPDF)
    out.set_font("cjk", size=size)
    if value is None:
        out.set_text_color(164, 0, 0)
        out.multi_cell(width, size * 0.5, f"({document.missing})", new_x="LEFT" if width else "LMARGIN", new_y="NEXT")
        out.set_text_color(0)
    else:
        out.multi_cell(width, size * 0.5, value, new_x="LEFT" if width else "LMARGIN", new_y="NEXT")


FORMATS = ("html", "pdf")


def document_locale(lang: str | None) -> str:
    """The locale of a document: `?lang=` if given (zh-CN or en), else the request's (cookie, Accept-Language)."""
    return i18n.normalize(lang) or i18n.current_locale()


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise Unprocessable("invalid_document_format", format=format)


def respond(document: Document, format: str) -> Response:
    """The document as an HTML page or a PDF download, in its locale."""
    headers = {"Content-Language": i18n.html_lang(document.locale)}
    if format == "pdf":
        name = "".join(char if char.isalnum() or char in "-_" else "-" for char in document.reference)
        headers["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return Response(pdf(document), media_type="application/pdf", headers=headers)
    return HTMLResponse(html(document), headers=headers)
