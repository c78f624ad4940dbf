"""HTML renderings of disclosure reports and registrations: the same content as the JSON, as a page."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from market.compliance.models import DisclosureReport
from market.compliance.schemas import PublicRegistrationOut

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2933}
h1{margin-bottom:.2rem} .muted{color:#52606d}
.card{border:1px solid #d9e2ec;border-radius:8px;padding:1rem;margin:1rem 0}
table{border-collapse:collapse;width:100%} td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eee}
code{background:#f0f4f8;padding:0 .25rem;border-radius:3px} .tag{background:#e3f8ff;border-radius:3px;padding:0 .4rem}
"""
"""The public report and registration pages' own small stylesheet (they stand outside the console)."""


def _label(key: str) -> str:
    return key.replace("_minor", " (minor units)").replace("_", " ")


def render_value(value: Any) -> str:
    """Any JSON value as HTML: objects as two-column tables, lists of objects as tables, all escaped."""
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{escape(_label(str(k)))}</th><td>{render_value(v)}</td></tr>" for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            columns: list[str] = []
            for item in value:
                columns += [k for k in item if k not in columns]
            head = "".join(f"<th>{escape(_label(c))}</th>" for c in columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{render_value(item.get(c, ''))}</td>" for c in columns) + "</tr>"
                for item in value
            )
            return f"<table><tr>{head}</tr>{body}</table>"
        return ", ".join(render_value(item) for item in value) or "-"
    if value is None:
        return "-"
    return escape(str(value))


def _page(title: str, body: str, lang: str = "en") -> str:
    return (
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def index_page(reports: Sequence[DisclosureReport], locale: str) -> str:
    """The public disclosure page, in the visitor's language: every published report, with links to its
    HTML and PDF in both languages and to its JSON record."""
    from market import i18n
    from market.compliance.report_document import TITLES

    def _(msgid: str, **params: object) -> str:
        return i18n.gettext(locale, msgid, **params)

    rows = "".join(
        f"<tr><td>{r.year}</td><td>{escape(_(TITLES.get(r.kind, r.kind)))}</td>"
        f"<td>{escape(str(r.content.get('publisher', '')))}</td>"
        f"<td>{escape(i18n.format_date(r.published_at, locale))}</td>"
        f"<td><a href='/disclosures/{escape(r.id)}'>HTML</a> · "
        f"<a href='/disclosures/{escape(r.id)}?format=pdf&amp;lang=zh-CN'>PDF（中文）</a> · "
        f"<a href='/disclosures/{escape(r.id)}?format=pdf&amp;lang=en'>PDF (English)</a> · "
        f"<a href='/disclosures/{escape(r.id)}?format=json'>JSON</a>"
        f"</td><td><code>{escape(r.content_hash[:16])}…</code></td></tr>"
        for r in reports
        if r.published_at is not None
    )
    headings = (i18n.N_("Year"), i18n.N_("Report"), i18n.N_("Publisher"), i18n.N_("Published"), i18n.N_("Formats"))
    head = "".join(f"<th>{escape(_(h))}</th>" for h in headings) + "<th>SHA-256</th>"
    nothing = _("Nothing is published yet.")
    table = f"<table><tr>{head}</tr>{rows}</table>" if rows else f"<p>{escape(nothing)}</p>"
    title = _("Public disclosures")
    intro = _(
        "Annual disclosures of the authorising body and of each authorised operator, and the operators' "
        "operating reports, due by 31 March for the previous year. A registration can be looked up by its "
        "code at /registrations/<code>."
    )
    switch = (
        "<p class='muted'><a href='/disclosures?lang=zh-CN' lang='zh-CN'>中文</a> · "
        "<a href='/disclosures?lang=en' lang='en'>English</a></p>"
    )
    return _page(
        title, f"<h1>{escape(title)}</h1><p class='muted'>{escape(intro)}</p>{switch}{table}", i18n.html_lang(locale)
    )


def notices_page(found: Sequence[PublicRegistrationOut]) -> str:
    """The public notice board: registrations open to objections, with where to object."""
    rows = render_value([r.model_dump(mode="json") for r in found]) if found else "<p>No registration is in notice.</p>"
    return _page(
        "Public notices",
        "<h1>Registrations in public notice (公示)</h1><p class='muted'>Any signed-in organisation may object "
        "during the notice: in the console, <a href='/console/notices'>/console/notices</a> (sign in first), "
        "or POST /v1/registrations/&lt;id&gt;/objections.</p>" + rows,
    )


def registration_page(found: PublicRegistrationOut) -> str:
    """A registration looked up by code; during its notice, with where to object."""
    objection = (
        f"<p><a href='/console/notices?code={quote(found.registration_code)}'>Object to this registration</a> "
        "(signed-in organisations, during the public notice).</p>"
        if found.status == "notice"
        else ""
    )
    return _page(
        f"Registration {found.registration_code}",
        f"<h1>Registration {escape(found.registration_code)}</h1>{render_value(found.model_dump(mode='json'))}"
        + objection,
    )
