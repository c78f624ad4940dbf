"""zh-CN translations of the sbx-join branch's messages: joins whose sides are never empty."""

ZH = {
    "RIGHT JOIN or FULL JOIN with more than two tables": "超过两张表的查询中使用 RIGHT JOIN 或 FULL JOIN",
    "write the table whose rows are all kept first, and use LEFT JOIN.": (
        "请把需保留全部行的表写在最前，并改用 LEFT JOIN。"
    ),
}
