# ruff: noqa: E501 - one translation per line
"""zh-CN for extract()'s fields and dayofweek() of an INTERVAL (fn17)."""

ZH = {
    "extract year, quarter, month, week, day, dow, doy, hour, minute, second or epoch.": "请提取 year、quarter、month、week、day、dow、doy、hour、minute、second 或 epoch。",
    "use year(), month() or day() on it.": "请对它使用 year()、month() 或 day()。",
}
