# ruff: noqa: E501 - one translation per line
"""zh-CN for the build's check of DATE and TIMESTAMP values (branch date17)."""

ZH = {
    "date_out_of_range": "表“{table}”的列“{column}”有 {count} 个日期或时间超出数据产品可含的范围 {low} 至 {high}（infinity 也不允许）：date_trunc() 对其中一些值会出错，对另一些耗时更短。请在加工配方中为该列设置 min '{low}' 和 max '{high}'（超出的行将被拒绝或隔离），或在源数据中更正这些值。",
}
