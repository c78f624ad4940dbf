"""zh-CN translations added on branch sbx-fanout (the join fan-out bound)."""

ZH = {
    "join_fanout": (
        "按 {column} 连接 {table} 时，一行最多可匹配 {table} 的 {fanout} 行（向上取整到 2 的幂）；"
        "查询的全部连接合计，一行最多会遇到 {product} 行，超过上限 {limit}。"
        "请改用选择性更高的连接键（每个取值对应的行更少），或先按连接键汇总 {table}"
        "（请卖方提供每个键一行的表）后再连接。"
    ),
    "no equality of columns (every row)": "没有列之间的等值条件（每一行都会匹配）",
}
