"""The gettext catalogues' tooling: extract every msgid, update both .po files, check they are complete.

`make messages` runs `python -m market.catalogues update`:
1. extracts the msgids named in babel.cfg: the EN dict of market/messages.py (each with its error
   code as msgctxt), gettext calls in Python (`_`, `gettext`, `ngettext`, `pgettext`, and
   `i18n.gettext(locale, "...")`), and Jinja2 templates (`{{ _("...") }}`, `{% trans %}`);
2. merges them into market/locale/<locale>/LC_MESSAGES/messages.po for every locale: new msgids are
   added untranslated, removed ones dropped (no fuzzy guesses: a wrong guess would ship);
3. fills the en catalogue's new entries with their msgid (the msgids are English).

New zh_CN entries stay empty until a person translates them; tests/market/test_i18n_catalogues.py
fails until then. `python -m market.catalogues check` lists what is missing.
"""

from __future__ import annotations

import ast
import re
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from market.i18n import DOMAIN, LOCALES, catalogue_path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "babel.cfg"
KEYWORDS: dict[str, Any] = {
    **DEFAULT_KEYWORDS,
    # market.i18n's functions take the locale first (gettext(locale, msgid, **params)); the classic forms
    # (gettext(msgid) in templates, ngettext(singular, plural, n)) by their exact number of arguments.
    "gettext": {None: (2,), 1: (1,)},
    "pgettext": {None: ((2, "c"), 3), 2: ((1, "c"), 2)},
    "ngettext": {None: (2, 3), 3: (1, 2)},
    "Msg": None,
    "Phrase": None,
    "NP_": ((1, "c"), 2),
}
"""The functions whose string arguments are msgids (Babel's defaults, plus market.i18n's locale-first forms)."""
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]")


def extract_messages(
    fileobj: IO[bytes], keywords: object, comment_tags: object, options: object
) -> Iterator[tuple[int, str, tuple[str, str], list[str]]]:
    """Babel extractor for market/messages.py: every entry of the EN dict, as pgettext(code, text)."""
    tree = ast.parse(fileobj.read())
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign):
            continue
        if not (isinstance(node.target, ast.Name) and node.target.id == "EN" and isinstance(node.value, ast.Dict)):
            continue
        for key, value in zip(node.value.keys, node.value.values, strict=True):
            if key is None:
                continue
            code, text = ast.literal_eval(key), ast.literal_eval(value)
            yield key.lineno, "pgettext", (code, text), [f"code: {code}"]


def extract() -> Catalog:
    """Every msgid in the sources that babel.cfg names, as a template catalogue."""
    with CONFIG.open() as handle:
        method_map, options_map = parse_mapping_cfg(handle, str(CONFIG))  # type: ignore[no-untyped-call]
    template = Catalog(domain=DOMAIN, project="public-data-market", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",), strip_comment_tags=True
    ):
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def load(locale: str) -> Catalog:
    """The catalogue of `locale` as stored."""
    with catalogue_path(locale).open("rb") as handle:
        return read_po(handle, locale=locale, domain=DOMAIN)


def save(catalogue: Catalog, locale: str) -> None:
    path = catalogue_path(locale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalogue, width=120, ignore_obsolete=True, include_lineno=False, sort_output=False)


def update() -> dict[str, int]:
    """Merge the extracted msgids into every locale's catalogue; the number of untranslated entries per locale."""
    missing: dict[str, int] = {}
    for locale in LOCALES:
        template = extract()  # fresh per locale: Catalog.update adopts the template's new message objects
        path = catalogue_path(locale)
        if path.exists():
            catalogue = load(locale)
        else:
            catalogue = Catalog(locale=locale, domain=DOMAIN, project="public-data-market", charset="utf-8")
        catalogue.update(template, no_fuzzy_matching=True, update_creation_date=False)
        if locale == "en":
            for message in catalogue:
                if message.id and not message.string:
                    message.string = message.id
        save(catalogue, locale)
        missing[locale] = len(problems(catalogue, template))
    return missing


def placeholders(text: str) -> set[str]:
    """The {name} and %(name)s placeholders of a message."""
    names = {m for m in PLACEHOLDER.findall(text)}
    try:
        names |= {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError:
        names.add("<unbalanced braces>")
    return names


def problems(catalogue: Catalog, template: Catalog) -> list[str]:
    """Why `catalogue` is not complete for `template`: missing, untranslated, fuzzy or mismatched entries."""
    found = []
    for wanted in template:
        if not wanted.id:
            continue
        message = catalogue.get(wanted.id, wanted.context)
        where = f"{wanted.context + ': ' if wanted.context else ''}{wanted.id!r}"
        if message is None:
            found.append(f"missing {where}")
            continue
        strings = [
            str(text or "")
            for text in (message.string if isinstance(message.string, (list, tuple)) else [message.string])
        ]
        ids = [str(text) for text in (message.id if isinstance(message.id, (list, tuple)) else [message.id])]
        if not all(strings):
            found.append(f"untranslated {where}")
        elif message.fuzzy:
            found.append(f"fuzzy {where}")
        elif any(placeholders(text) != placeholders(ids[0]) for text in strings):
            found.append(f"placeholders differ in {where}: {sorted(placeholders(ids[0]))} vs {strings!r}")
    return found


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "update"
    if command == "update":
        for locale, count in update().items():
            print(f"{locale}: {count} entries to translate in {catalogue_path(locale).relative_to(ROOT)}")
        return 0
    if command == "check":
        template = extract()
        failed = 0
        for locale in LOCALES:
            for problem in problems(load(locale), template):
                print(f"{locale}: {problem}")
                failed += 1
        return 1 if failed else 0
    print("usage: python -m market.catalogues [update|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
