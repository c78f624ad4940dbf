"""Amounts in Chinese capitals (大写金额): read back to the same amount, written by the PBoC rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.capitals import chinese_capitals
from market.money import MAX_AMOUNT_MINOR

DIGIT = {c: i for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")}
UNIT = {"拾": 10, "佰": 100, "仟": 1000}


def read_integer(text: str) -> int:
    """An independent reader of capitals: 亿 and 万 split groups, 拾佰仟 scale the digit before them."""
    total, section, digit = 0, 0, 0
    for char in text:
        if char in DIGIT:
            digit = DIGIT[char]
        elif char in UNIT:
            assert digit, f"{char} without its digit in {text}"
            section += digit * UNIT[char]
            digit = 0
        elif char == "万":
            total += (section + digit) * 10_000
            section, digit = 0, 0
        elif char == "亿":
            total = (total + section + digit) * 10**8
            section, digit = 0, 0
        else:
            raise AssertionError(f"unexpected {char!r} in {text}")
    return total + section + digit


def read(text: str) -> int:
    """Fen from capitals."""
    sign = -1 if text.startswith("负") else 1
    text = text.removeprefix("负")
    if text == "零元整":
        return 0
    yuan_text, _, rest = text.rpartition("元") if "元" in text else ("", "", text)
    fen = 0
    match = re.fullmatch(r"零?(?:([壹贰叁肆伍陆柒捌玖])角)?(?:([壹贰叁肆伍陆柒捌玖])分)?(整)?", rest)
    assert match, text
    if match.group(1):
        fen += DIGIT[match.group(1)] * 10
    if match.group(2):
        fen += DIGIT[match.group(2)]
    return sign * (read_integer(yuan_text) * 100 + fen)


AMOUNTS = st.integers(-MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR)


@pytest.mark.parametrize(
    ("fen", "capitals"),
    [
        (0, "零元整"),
        (5, "伍分"),
        (56, "伍角陆分"),
        (1000, "壹拾元整"),
        (1005, "壹拾元零伍分"),
        (100500, "壹仟零伍元整"),
        (123456, "壹仟贰佰叁拾肆元伍角陆分"),
        (100000100, "壹佰万零壹元整"),
        (1000000, "壹万元整"),
        (168032, "壹仟陆佰捌拾元叁角贰分"),
        (10000000001, "壹亿元零壹分"),
        (-250, "负贰元伍角整"),
    ],
)
def test_examples(fen: int, capitals: str):
    assert chinese_capitals(fen) == capitals


@given(AMOUNTS)
def test_capitals_read_back_to_the_amount(fen: int):
    assert read(chinese_capitals(fen)) == fen


@given(AMOUNTS)
def test_capitals_follow_the_writing_rules(fen: int):
    text = chinese_capitals(fen).removeprefix("负")
    if fen == 0:
        assert text == "零元整"
        return
    assert "零零" not in text
    assert not re.search(r"零[元万亿]|零$", text), text
    assert re.search(r"(?<![壹贰叁肆伍陆柒捌玖])拾", text) is None, text
    assert text.endswith("整") == (abs(fen) % 10 == 0)
    assert ("元" in text) == (abs(fen) >= 100)
    assert set(text) <= set("零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整")
