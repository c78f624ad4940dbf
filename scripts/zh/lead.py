"""zh-CN for strings the lead wrote while merging (see docs/i18n.md)."""

ZH = {
    "Revenue received against allowed revenue, per operator": "各授权运营主体已收收入与最高准许收入对比",
    "over the allowed revenue": "超出最高准许收入",
    "Computing on a group key of a floating-point, interval or time-with-time-zone type after aggregation (equal "
    "values of these types can be written differently, and the group would show its first row's)": (
        "在聚合之后对浮点、时间间隔或带时区时间类型的分组键进行计算（这些类型的相等值可以有不同写法，"
        "分组会显示其第一行的写法）"
    ),
    "group by the computed expression itself, or show, compare or order the key as it is.": (
        "请直接按计算后的表达式分组，或者按原样显示、比较或排序该键。"
    ),
}
