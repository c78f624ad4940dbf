"""Fill zh_CN msgstrs from a Python file defining ZH = {msgctxt_or_msgid: translation} (a translator's aid).

A key may also be a (msgctxt, msgid) pair, for words whose context is shared by several msgids
(`("role", "finance"): "财务"`); a pair wins over a plain key.

Usage: python scripts/translate.py FILE.py  (then `make messages` and the catalogue test check the result).
"""

from __future__ import annotations

import runpy
import sys

from market.catalogues import load, save


def main(path: str) -> int:
    table: dict[str | tuple[str, str], str] = runpy.run_path(path)["ZH"]
    catalogue = load("zh_CN")
    filled = 0
    for message in catalogue:
        key = message.context or message.id
        pair = (message.context, message.id)
        if message.id and isinstance(message.id, str) and message.context and pair in table:
            message.string = table[pair]
            filled += 1
        elif message.id and isinstance(key, str) and key in table:
            message.string = table[key]
            filled += 1
    save(catalogue, "zh_CN")
    print(f"zh_CN: {filled} entries filled")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
