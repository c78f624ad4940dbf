# ruff: noqa: E501 - one translation per line
"""zh-CN for date_trunc()'s units (lead17)."""

ZH = {
    "truncate to 'year', 'quarter', 'month', 'week', 'day', 'hour', 'minute' or 'second'.": "请截断到 'year'、'quarter'、'month'、'week'、'day'、'hour'、'minute' 或 'second'。",
}
