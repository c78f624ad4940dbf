"""Amounts in Chinese capitals (大写金额), as written on invoices and payment documents.

The rules of the People's Bank of China for filling in bills and settlement vouchers:
- digits 零壹贰叁肆伍陆柒捌玖, units 拾佰仟 within a group of four, groups 万 and 亿;
- "壹拾" is always written with its digit (壹拾伍元, never 拾伍元);
- one 零 stands for any run of zeros inside the number (壹仟零伍元, 壹佰万零壹佰元, 壹亿零壹元), and none
  at the end of the yuan or before 元;
- 元 closes the yuan, then 角 and 分; an amount without 分 ends with 整 (壹佰元整, 壹佰元伍角整);
  when yuan is written, 角 is 0 and 分 is not, 零 marks the missing 角 (壹拾元零伍分);
- less than one yuan is written without 零元 (伍角陆分); zero is 零元整; a negative amount starts with 负.
"""

from __future__ import annotations

DIGITS = "零壹贰叁肆伍陆柒捌玖"
UNITS = ("", "拾", "佰", "仟")
GROUPS = ("", "万", "亿", "万亿")


def _group(value: int) -> str:
    """0 < value < 10000 in capitals, with 零 for inner zeros only."""
    out: list[str] = []
    pending_zero = False
    for position in range(3, -1, -1):
        digit = value // 10**position % 10
        if digit == 0:
            pending_zero = bool(out)
            continue
        if pending_zero:
            out.append(DIGITS[0])
            pending_zero = False
        out.append(DIGITS[digit] + UNITS[position])
    return "".join(out)


def _integer(value: int) -> str:
    """A positive integer in capitals."""
    groups: list[int] = []
    while value:
        groups.append(value % 10_000)
        value //= 10_000
    if len(groups) > len(GROUPS):
        raise ValueError("amount too large for Chinese capitals")
    out: list[str] = []
    zero_before = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            zero_before = bool(out)
            continue
        if out and (zero_before or group < 1000):
            out.append(DIGITS[0])
        out.append(_group(group) + GROUPS[index])
        zero_before = False
    return "".join(out)


def chinese_capitals(amount_minor: int) -> str:
    """An amount of fen (CNY minor units) in Chinese capitals: 123456 -> 壹仟贰佰叁拾肆元伍角陆分."""
    if amount_minor < 0:
        return "负" + chinese_capitals(-amount_minor)
    yuan, fen_part = divmod(amount_minor, 100)
    jiao, fen = divmod(fen_part, 10)
    if yuan == 0 and fen_part == 0:
        return "零元整"
    out = _integer(yuan) + "元" if yuan else ""
    if jiao:
        out += DIGITS[jiao] + "角"
    elif yuan and fen:
        out += DIGITS[0]
    if fen:
        out += DIGITS[fen] + "分"
    else:
        out += "整"
    return out
