"""Public pages render operator-supplied text (titles, names, reasons): always escaped, never lost."""

from __future__ import annotations

import html
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from market.compliance.pages import render_value

text = st.text(alphabet=st.sampled_from("<>&\"'ab /=script"), max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=12,
)
OWN_TAGS = re.compile(r"</?(table|tr|th|td)>")


def _leaf_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _leaf_strings(v)]
    if isinstance(value, list):
        return [s for item in value for s in _leaf_strings(item)]
    return [value] if isinstance(value, str) and value else []


@settings(max_examples=400, derandomize=True)
@given(value=values)
def test_no_text_from_a_report_reaches_the_page_unescaped(value: Any) -> None:
    page = render_value(value)
    outside_own_tags = OWN_TAGS.sub("", page)
    assert "<" not in outside_own_tags and ">" not in outside_own_tags
    for string in _leaf_strings(value):
        assert html.escape(string) in page
