"""zh-CN translations added on branch red12 (answer values JSON cannot carry)."""

ZH = {
    "answer_out_of_range": (
        "结果中的某个值超出了结果所能承载的范围（INTERVAL 超过约 270 万年，即 999,999,999 天）；"
        "请使用更小的时间间隔，或改为返回天数或月数。"
    ),
}
