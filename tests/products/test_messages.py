"""Every error code the products context raises has an English message in market/messages.py."""

from __future__ import annotations

import re
from pathlib import Path

from market.messages import EN

RAISED = re.compile(r"(?:BadRequest|Forbidden|NotFound|Conflict|Unprocessable|TooManyRequests)\(\s*\"([a-z_]+)\"")


def test_every_raised_code_has_a_message() -> None:
    root = Path(__file__).resolve().parents[2] / "products"
    codes = {code for path in root.rglob("*.py") for code in RAISED.findall(path.read_text())}
    assert len(codes) > 20
    assert sorted(code for code in codes if code not in EN) == []
