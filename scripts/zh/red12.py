"""zh-CN translations added on branch red12 (answer values JSON cannot carry)."""

ZH = {
    "answer_out_of_range": (
        "查询计算出的某个值（结果中的值或常量）超出了结果所能承载的范围：INTERVAL 超过约 270 万年"
        "（999,999,999 天）；请使用更小的时间间隔，或改为返回天数或月数。"
    ),
}
