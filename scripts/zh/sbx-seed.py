"""zh-CN translations added on branch sbx-seed (post-aggregate expressions that could fail)."""

ZH = {
    "post_aggregate_may_fail": (
        "{expression} 是对聚合值或分组键做的日期或 INTERVAL 运算，对某些取值会出错（超出范围或除以零）；"
        "请直接查询数值本身，在应用中再换算成时间单位，或用 date_trunc() 按日期分组。"
    ),
}
