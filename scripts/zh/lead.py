"""zh-CN for strings the lead wrote while merging (see docs/i18n.md)."""

ZH = {
    "Revenue received against allowed revenue, per operator": "各授权运营主体已收收入与最高准许收入对比",
    "over the allowed revenue": "超出最高准许收入",
}
