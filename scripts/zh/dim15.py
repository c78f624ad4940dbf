"""zh-CN translations added on branch dim15 (casts of wide DECIMAL values to floating point)."""

ZH = {
    "wide_decimal_cast": (
        "查询将 {column}（{source}）转换为 {target}：把超过 15 位且带小数的 DECIMAL 转换为浮点类型时，"
        "不同取值所需的时间不同，这会暴露隐藏行的信息。请改为与小数字面量比较（{column} > 1.5，而不是 1.5e0），"
        "或按它分组、原样显示它；不要用 CAST 转换为 DOUBLE 或 FLOAT，"
        "也不要与 DOUBLE 值或函数（1e0、sqrt、ln）一起使用。"
    ),
}
