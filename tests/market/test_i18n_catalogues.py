"""The gettext catalogues are complete: every msgid in the sources is translated in zh_CN and en."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from market import catalogues, i18n
from market.messages import EN


@pytest.fixture(scope="module")
def template() -> Catalog:
    return catalogues.extract()


def test_every_message_of_messages_py_is_extracted_with_its_code(template: Catalog):
    for code, english in EN.items():
        assert template.get(english, code) is not None, code


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_catalogue_translates_every_msgid_with_the_same_placeholders(locale: str, template: Catalog):
    problems = catalogues.problems(catalogues.load(locale), template)
    assert problems == [], "run `make messages` and translate:\n" + "\n".join(problems)


def test_template_strings_are_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A string in a console template or a gettext call in Python is a msgid the catalogues must carry."""
    root = tmp_path / "repo"
    (root / "market" / "console" / "templates").mkdir(parents=True)
    (root / "market" / "console" / "templates" / "page.html").write_text(
        "<h1>{{ _('Sign in') }}</h1>{% trans n=3 %}{{ n }} queries{% endtrans %}", encoding="utf-8"
    )
    (root / "billing").mkdir()
    (root / "billing" / "doc.py").write_text(
        "from market import i18n\nTITLE = i18n.gettext(locale, 'Invoice', n=1)\nHINT = i18n.Msg('Wait.')\n",
        encoding="utf-8",
    )
    (root / "market" / "messages.py").write_text('EN: dict[str, str] = {"x_code": "X {a}."}\n', encoding="utf-8")
    monkeypatch.setattr(catalogues, "ROOT", root)
    found = {(message.context, message.id) for message in catalogues.extract() if message.id}
    assert found == {
        (None, "Sign in"),
        (None, "%(n)s queries"),
        (None, "Invoice"),
        (None, "Wait."),
        ("x_code", "X {a}."),
    }
    untranslated = Catalog(locale="zh_CN")
    untranslated.add("Sign in", "登录")
    untranslated.add("%(n)s queries", "%(num)s 次查询")
    problems = catalogues.problems(untranslated, catalogues.extract())
    assert sorted(p.split(" ")[0] for p in problems) == ["missing", "missing", "missing", "placeholders"]
    # A msgid merged in by `make messages` and not yet translated (string None) is untranslated, not "None".
    untranslated.add("Wait.", None)
    assert any(
        p.startswith("untranslated") and "Wait." in p for p in catalogues.problems(untranslated, catalogues.extract())
    )


def test_placeholders_are_read_in_both_styles():
    assert catalogues.placeholders("No plan '{plan}' on {slug}") == {"plan", "slug"}
    assert catalogues.placeholders("%(n)s queries, {x}") == {"n", "x"}
    assert catalogues.placeholders("unbalanced {") == {"<unbalanced braces>"}
