"""zh-CN translations added in session 16 (narrowing casts refused, TRY_CAST included)."""

ZH = {
    "unsafe_cast": (
        "查询将 {source} 转换为 {target}，对某些值可能失败（CAST 与 TRY_CAST 相同：失败的转换耗时更长，"
        "会暴露隐藏行）；请比较同类型的值，转换为更宽的类型（BIGINT、DOUBLE、VARCHAR），"
        "或用 round()、floor()、ceil() 取整，而不要转换为更窄的数值类型。"
    ),
}
