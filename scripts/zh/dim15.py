"""zh-CN translations added on branch dim15 (casts of wide DECIMAL values)."""

ZH = {
    "wide_decimal_cast": (
        "查询将 {column}（{source}）转换为 {target}（通过 CAST，或通过算术运算或数值函数，沙箱以 DOUBLE 计算它们）："
        "把超过 15 位且带小数的 DECIMAL 转换为浮点类型时，不同取值所需的时间不同，这会暴露隐藏行的信息。"
        "请改为与小数字面量比较（{column} > 1.5，而不是 1.5e0），或按它分组、原样显示它；"
        "不要对它做算术运算、使用数值函数（abs、round、floor）或用 CAST 转换为 DOUBLE 或 FLOAT。"
    ),
    "wide_decimal_operation": (
        "查询将 {column}（{source}）转换为 {target}：对超过 18 位且带小数的 DECIMAL，转换为文本、整数或更少的小数位时，"
        "不同取值所需的时间不同，这会暴露隐藏行的信息。请改为与小数字面量比较（{column} > 1.5），"
        "或按它分组、原样显示它。"
    ),
}
