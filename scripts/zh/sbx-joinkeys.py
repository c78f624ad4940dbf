"""zh-CN translations of the sbx-joinkeys branch's messages: join conditions compare bare columns."""

ZH = {
    "A condition on two tables other than a comparison of two columns": "涉及两张表、但不是两列直接比较的条件",
    "join on columns as stored: one comparison of two columns per condition, joined with AND "
    "(a.x = b.y AND a.z <= b.w), and conditions on one table in WHERE; for a computed key (CASE, "
    "if, coalesce, year(), arithmetic, a cast) or an OR between tables, ask the seller for a column "
    "that holds the key.": (
        "请直接按存储的列连接：每个条件只比较两列，多个条件用 AND 连接（a.x = b.y AND a.z <= b.w），"
        "只涉及一张表的条件写在 WHERE 中；如需计算出的键（CASE、if、coalesce、year()、算术、类型转换）"
        "或跨表的 OR，请向卖方申请一个保存该键的列。"
    ),
}
