"""zh-CN translations added on branch sbx-null (the per-aggregate threshold)."""

ZH = {
    "groups_under_k_omitted": (
        "不同隐私单位少于 {k} 个的分组不会出现在任何结果中；某个聚合值若其参数非空的隐私单位少于 {k} 个，"
        "则该聚合值为空（NULL）；被省略的数量不予报告，因为它取决于您无权查看的数据行。"
    ),
}
