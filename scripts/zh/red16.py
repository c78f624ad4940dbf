"""zh-CN translations added by red team red16 (a row-level % costs the same for every value)."""

ZH = {
    "A remainder (%) of data by data, or of another remainder": "以数据为除数的取余（%），或对另一取余结果再取余",
    "divide by a constant, e.g. month % 3, once per expression.": (
        "请以常数为除数，例如 month % 3，且每个表达式只取余一次。"
    ),
}
