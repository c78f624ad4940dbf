"""The unified social credit code (统一社会信用代码) of GB 32100-2015: 18 characters, the last a checksum.

Layout: 1 registration authority, 2 organisation type, 3-8 administrative division code (digits),
9-17 the organisation's identifier, 18 the check character. Characters come from 31 symbols (the
digits and the capital letters without I, O, S, V and Z). The check character is
31 - (sum of value x weight over the first 17, mod 31), where the weight of position i (from 0) is
3**i mod 31, and 31 maps to 0. Every single wrong character and every swap of two different
characters changes the checksum, as 31 is prime and the weights are distinct.
"""

from __future__ import annotations

from typing import Any

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
VALUE = {char: index for index, char in enumerate(ALPHABET)}
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
LENGTH = 18


def check_character(first17: str) -> str:
    """The check character (position 18) for the first 17 characters of a code."""
    total = sum(VALUE[char] * weight for char, weight in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: str) -> tuple[str, dict[str, Any]] | None:
    """Why `code` is not a valid unified social credit code (a message code of market/messages.py and its
    parameters), or None if it is valid."""
    if len(code) != LENGTH:
        return "uscc_length", {"code": code, "length": len(code)}
    wrong = sorted({char for char in code if char not in VALUE})
    if wrong:
        return "uscc_characters", {"code": code, "characters": " ".join(wrong), "alphabet": ALPHABET}
    if not code[2:8].isdigit():
        return "uscc_division", {"code": code}
    if check_character(code[:17]) != code[17]:
        return "uscc_checksum", {"code": code}
    return None


def is_valid(code: str) -> bool:
    """True if `code` is a well-formed unified social credit code with a correct check character."""
    return problem(code) is None
