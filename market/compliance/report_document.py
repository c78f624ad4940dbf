"""Disclosure reports as documents a reader accepts: HTML and PDF, in zh-CN or en, from the stored JSON.

The JSON content (market/compliance/report_content.py) stays the record: it is what the content hash
covers. This module only words and lays it out: each part becomes a titled table with translated
headings, money formatted for the locale (¥1,234.56), dates in the locale's long form, zones, states
and purposes translated in their context. The PDF embeds the same CJK font as billing documents
(billing/document_render.py: a cached cut of Noto Sans CJK SC, or the full font), so Chinese prints
as searchable text on a machine without system fonts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from market import i18n
from market.compliance.models import DisclosureReport
from market.i18n import N_

TITLES = {
    "regulator_disclosure": N_("Authorising body's annual disclosure"),
    "operator_disclosure": N_("Operator's annual disclosure"),
    "operating_report": N_("Annual operating report"),
}
CATEGORIES = {"public_interest": N_("Public interest (free)"), "paid": N_("Paid (industry and commercial)")}


@dataclass
class Section:
    """One part of a report: a heading and a table (the first row of `rows` is not a heading)."""

    heading: str
    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)


@dataclass
class ReportDocument:
    """A report in one locale, ready to render."""

    locale: str
    title: str
    reference: str
    facts: list[tuple[str, str]]
    sections: list[Section]
    notes: list[str]

    def texts(self) -> set[str]:
        """Every character the document prints (to choose the font cut that covers them)."""
        parts = [self.title, self.reference, *self.notes, *(t for pair in self.facts for t in pair)]
        for section in self.sections:
            parts += [section.heading, *section.columns, *(cell for row in section.rows for cell in row)]
        return set("".join(parts)) - {"\n", "\t"}


class _Words:
    """Formatting helpers bound to one locale."""

    def __init__(self, locale: str, currency: str) -> None:
        self.locale = locale
        self.currency = currency

    def _(self, msgid: str, **params: object) -> str:
        return i18n.gettext(self.locale, msgid, **params)

    def money(self, minor: Any, currency: str | None = None) -> str:
        if minor is None or minor == "":
            return "-"
        amount = Decimal(str(minor))
        if amount == amount.to_integral_value():
            return i18n.format_money(int(amount), currency or self.currency, self.locale)
        from babel import numbers

        return numbers.format_currency(amount.scaleb(-2), currency or self.currency, locale=self.locale)

    def day(self, iso: str | None) -> str:
        if not iso:
            return "-"
        return i18n.format_date(datetime.fromisoformat(iso), self.locale)

    def number(self, value: Any) -> str:
        return i18n.format_number(int(value or 0), self.locale)

    def term(self, context: str, value: Any) -> str:
        return i18n.term(self.locale, context, str(value)) if value not in (None, "") else "-"

    def terms(self, context: str, values: list[Any]) -> str:
        return "、".join(self.term(context, v) for v in values) if values else self._("any")

    def limits(self, limits: dict[str, Any] | None, currency: str | None = None) -> str:
        """A fee cap or standard as prices: per query, per GB scanned, a month, and per 0.1 epsilon of a
        DP query (the privacy fee) when the cap or standard states one."""
        if not limits:
            return self._("none")
        prices = [
            self._("{amount} per query", amount=self.money(limits.get("per_query_minor"), currency)),
            self._("{amount} per GB", amount=self.money(limits.get("per_gb_minor"), currency)),
            self._("{amount} a month", amount=self.money(limits.get("monthly_fee_minor"), currency)),
        ]
        if limits.get("per_tenth_epsilon_minor") is not None:
            prices.append(
                self._("{amount} per 0.1 ε", amount=self.money(limits.get("per_tenth_epsilon_minor"), currency))
            )
        return "; ".join(prices)


def _authorisations(w: _Words, entries: list[dict[str, Any]]) -> Section:
    rows = []
    for a in entries:
        caps = " / ".join(
            f"{w.term('zone', c['zone'])}: "
            + w.limits(
                {
                    "per_query_minor": c["max_per_query_minor"],
                    "per_gb_minor": c["max_per_gb_minor"],
                    "monthly_fee_minor": c["max_monthly_fee_minor"],
                    "per_tenth_epsilon_minor": c.get("max_per_tenth_epsilon_minor", 0),
                },
                a.get("currency"),
            )
            for c in a.get("fee_caps", [])
        )
        rows.append(
            [
                a.get("operator", ""),
                w.terms("zone", a.get("zones", [])),
                "、".join(a.get("regions", [])) or "-",
                "、".join(a.get("scenarios", [])) or w._("any"),
                f"{w.day(a.get('valid_from'))} – {w.day(a.get('valid_until'))}",
                w.term("authorisation state", a.get("status")),
                caps or "-",
            ]
        )
    columns = [
        w._("Operator"),
        w._("Zones"),
        w._("Regions"),
        w._("Scenarios"),
        w._("Validity"),
        w._("State"),
        w._("Fee caps (government guide price)"),
    ]
    return Section(w._("Authorisations"), columns, rows)


def _prices(w: _Words, plans: list[dict[str, Any]]) -> str:
    return (
        " / ".join(
            f"{p.get('code', '')} ({w.term('plan kind', p.get('kind'))}): {w.limits(p, p.get('currency'))}"
            for p in plans
        )
        or "-"
    )


def _products(w: _Words, entries: list[dict[str, Any]], *, with_operator: bool) -> Section:
    columns = [w._("Product"), w._("Zone"), w._("Zone fee cap"), w._("Upper fee standard"), w._("Actual prices")]
    if with_operator:
        columns.insert(0, w._("Operator"))
    rows = []
    for p in entries:
        row = [
            f"{p.get('title', '')} ({p.get('product', '')})",
            w.term("zone", p.get("zone")),
            w.limits(p.get("zone_cap")),
            w.limits(p.get("fee_standard")),
            _prices(w, p.get("plans", [])),
        ]
        if with_operator:
            row.insert(0, p.get("operator", ""))
        rows.append(row)
    heading = w._("Upper fee standards") if with_operator else w._("Products and services, with actual fees")
    return Section(heading, columns, rows)


def _resources(w: _Words, entries: list[dict[str, Any]]) -> Section:
    columns = [
        w._("Public data resource"),
        w._("Registration code"),
        w._("Source department"),
        w._("Zone"),
        w._("Region"),
        w._("Classification"),
        w._("Products"),
    ]
    rows = [
        [
            r.get("title", ""),
            r.get("registration_code") or "-",
            r.get("source", ""),
            w.term("zone", r.get("zone")),
            r.get("region", ""),
            w.term("classification", r.get("classification")),
            "、".join(r.get("products", [])),
        ]
        for r in entries
    ]
    return Section(w._("Authorised public data resources"), columns, rows)


def _operating(w: _Words, content: dict[str, Any]) -> list[Section]:
    revenue = content.get("revenue", {})
    allowed = revenue.get("allowed")
    figures = [[w._("Revenue received"), w.money(revenue.get("received_minor", 0))]]
    if allowed:
        figures += [
            [w._("Permitted costs, net of subsidies"), w.money(allowed["permitted_costs_minor"])],
            [w._("Permitted profit"), w.money(allowed["profit_minor"])],
            [w._("Taxes"), w.money(allowed["taxes_minor"])],
            [w._("Deducted for last year's excess"), w.money(allowed["carried_deduction_minor"])],
            [w._("Allowed revenue"), w.money(allowed["allowed_minor"])],
            [w._("Headroom"), w.money(allowed["headroom_minor"])],
            [w._("Share of allowed revenue used"), f"{w.number(allowed['used_basis_points'] // 100)}%"],
            [w._("Excess, deducted next year"), w.money(allowed["excess_minor"])],
        ]
    else:
        figures.append([w._("Allowed revenue"), w._("not recorded by the regulator")])
    sections = [Section(w._("Revenue against allowed revenue"), [w._("Item"), w._("Amount")], figures, {1})]
    by_product = [[r["product"], w.money(r["received_minor"])] for r in content.get("revenue_by_product", [])]
    sections.append(Section(w._("Revenue per product"), [w._("Product"), w._("Revenue received")], by_product, {1}))
    usage = content.get("usage_by_category", {})
    rows = [
        [
            w._(CATEGORIES.get(category, category)),
            w.number(usage[category].get("queries")),
            w.money(usage[category].get("charged_minor")),
            w.number(usage[category].get("agreements")),
        ]
        for category in ("public_interest", "paid")
        if category in usage
    ]
    columns = [w._("Use"), w._("Queries"), w._("Charged"), w._("Agreements made")]
    sections.append(Section(w._("Queries and agreements by purpose"), columns, rows, {1, 2, 3}))
    flags = content.get("audit_flags", {})
    summary = [
        [w._("Buyers served"), w.number(content.get("buyers_served"))],
        [w._("Audit flags raised"), w.number(flags.get("raised"))],
        [w._("Audit flags resolved"), w.number(flags.get("resolved"))],
        [w._("Authorisation events"), w.number(content.get("authorisation_events"))],
    ]
    sections.append(Section(w._("Buyers and supervision"), [w._("Item"), w._("Count")], summary, {1}))
    spent = (content.get("privacy_budget_spent") or {}).get("by_agreement") or []
    if spent:
        rows = [
            [
                r["product"],
                r["agreement"],
                w.number(r["queries"]),
                f"{r['rho_nano'] / 1e9:.6f}",
                "-" if r.get("epsilon") is None else f"{r['epsilon']:.3f} / {r.get('budget_epsilon')}",
            ]
            for r in spent
        ]
        columns = [w._("Product"), w._("Agreement"), w._("DP queries"), w._("rho spent"), w._("epsilon of budget")]
        sections.append(Section(w._("Privacy budget spent"), columns, rows, {2, 3, 4}))
    return sections


def report_document(report: DisclosureReport, locale: str) -> ReportDocument:
    """The report in `locale`: its facts (year, publisher, state, hash) and one section per part."""
    content = dict(report.content)
    allowed = (content.get("revenue") or {}).get("allowed") or {}
    w = _Words(locale, str(allowed.get("currency") or "CNY"))
    title = w._(TITLES.get(report.kind, report.kind))
    if report.published_at is not None:
        state = w._("Published on {day}", day=i18n.format_date(report.published_at, locale))
    else:
        state = w._("Draft, not published")
    facts = [
        (w._("Year"), str(report.year)),
        (w._("Publisher"), str(content.get("publisher", ""))),
        (w._("State"), state),
        (w._("Due by"), w._("31 March {year}", year=report.year + 1)),
        (w._("Content hash (SHA-256)"), report.content_hash),
    ]
    sections: list[Section] = []
    if "authorisations" in content:
        sections.append(_authorisations(w, content["authorisations"]))
    if report.kind == "regulator_disclosure":
        sections.append(_products(w, content.get("fee_standards", []), with_operator=True))
    if "resources" in content:
        sections.append(_resources(w, content["resources"]))
    if "products" in content:
        sections.append(_products(w, content["products"], with_operator=False))
    if report.kind == "operating_report":
        sections += _operating(w, content)
    notes = [
        w._(
            "Figures are taken from the platform's records: revenue from the money received (the ledger's "
            "distributions), queries and charges from the usage records. The JSON form of this report is the "
            "record its content hash covers."
        )
    ]
    return ReportDocument(locale, title, f"{report.year}-{report.kind}", facts, sections, notes)


def html(document: ReportDocument) -> str:
    """A self-contained page (no external asset)."""
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in document.facts)
    parts = []
    for section in document.sections:

        def cells(row: list[str], tag: str, numeric: set[int]) -> str:
            return "".join(
                f"<{tag}{' class=n' if i in numeric else ''}>{escape(text)}</{tag}>" for i, text in enumerate(row)
            )

        head = f"<tr>{cells(section.columns, 'th', section.numeric)}</tr>"
        body = "".join(f"<tr>{cells(row, 'td', section.numeric)}</tr>" for row in section.rows)
        empty = "" if section.rows else f"<p class=muted>{escape(i18n.gettext(document.locale, 'None.'))}</p>"
        parts.append(f"<section><h2>{escape(section.heading)}</h2><table>{head}{body}</table>{empty}</section>")
    notes = "".join(f"<p class=muted>{escape(note)}</p>" for note in document.notes)
    return f"""<!doctype html>
<html lang="{i18n.html_lang(document.locale)}"><head><meta charset="utf-8">
<title>{escape(document.title)} {escape(document.reference)}</title>
<style>body{{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
margin:2em auto;max-width:72em;padding:0 1em;color:#1f2933}}table{{border-collapse:collapse;width:100%;margin:.5em 0}}
td,th{{border-bottom:1px solid #ccc;padding:.3em;text-align:left;vertical-align:top}}.n{{text-align:right}}
.muted{{color:#52606d}}h2{{font-size:1.15em;margin-top:1.5em}}</style></head>
<body>
<h1>{escape(document.title)}</h1>
<table class="facts">{facts}</table>
{"".join(parts)}
{notes}
</body></html>
"""


def _font(document: ReportDocument) -> Path:
    from billing.document_render import cjk_font, font_cut

    cut = font_cut()
    if cut is None:
        return cjk_font()
    path, covered = cut
    return path if document.texts() <= covered else cjk_font()


def pdf(document: ReportDocument) -> bytes:
    """The same document as an A4 PDF (landscape: the tables are wide), its text in an embedded CJK font."""
    from fpdf import FPDF

    from billing.document_render import pdf_table

    out = FPDF(orientation="landscape", format="A4")
    out.set_title(f"{document.title} {document.reference}")
    out.add_font("cjk", "", str(_font(document)))
    out.set_auto_page_break(auto=True, margin=15)
    out.add_page()
    out.set_font("cjk", size=16)
    out.multi_cell(0, 9, document.title, new_x="LMARGIN", new_y="NEXT")
    out.set_font("cjk", size=9)
    for label, value in document.facts:
        out.cell(50, 5, label)
        out.multi_cell(0, 5, value, new_x="LMARGIN", new_y="NEXT")
    for section in document.sections:
        out.ln(3)
        out.set_font("cjk", size=12)
        out.multi_cell(0, 7, section.heading, new_x="LMARGIN", new_y="NEXT")
        out.set_font("cjk", size=8)
        if not section.rows:
            out.multi_cell(0, 5, i18n.gettext(document.locale, "None."), new_x="LMARGIN", new_y="NEXT")
            continue
        pdf_table(out, section.columns, section.rows, section.numeric, line_height=4.5)
    out.ln(3)
    out.set_font("cjk", size=8)
    for note in document.notes:
        out.multi_cell(0, 4, note, new_x="LMARGIN", new_y="NEXT")
    return bytes(out.output())
