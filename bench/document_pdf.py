"""A zh-CN invoice PDF with the whole CJK font against the cached cut of it, side by side in one run.

    .venv/bin/python -m bench.document_pdf --rounds 5

Both render the same document (Chinese buyer, address, bank, 大写金额, ten lines); the cut covers
GB 2312, Latin and CJK punctuation (billing/document_render.py). Prints the median seconds of each
and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from unittest import mock

from billing import document_render
from billing.documents import Document, Party
from market.capitals import chinese_capitals


def sample() -> Document:
    rows = [[f"城市出行数据 {i}", f"agr_{i:04d}", "查询", "120", "¥1.50", "0.250", "¥180.00"] for i in range(10)]
    return Document(
        locale="zh_CN",
        title="账单",
        reference="INV-2026-000001",
        facts=[("账单编号", "INV-2026-000001"), ("账期", "2026-11"), ("开具日期", "2026年12月1日")],
        parties=[
            Party("销售方", "北京公共数据运营有限公司", [("统一社会信用代码", "91350100M000100Y43")]),
            Party("购买方", "北京数据应用科技有限公司", [("地址", "北京市海淀区中关村大街1号"), ("银行账号", None)]),
        ],
        columns=["数据产品", "授权使用协议", "项目", "数量", "单价", "扫描量（GB）", "金额"],
        numeric={3, 4, 5, 6},
        rows=rows,
        totals=[("合计", "¥1,800.00", True)],
        capitals=("金额大写", chinese_capitals(180000)),
        notes=["请通过对公转账付款。"],
    )


def timed(rounds: int, full: bool) -> float:
    """Median seconds per PDF, with the cut (as served) or with the whole font."""
    document = sample()
    seconds = []
    with mock.patch.object(document_render, "font_cut", lambda: None) if full else contextlib.nullcontext():
        for _ in range(rounds):
            start = time.perf_counter()
            document_render.pdf(document)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    document_render.font_cut()  # made once per machine; not part of either measurement
    document_render.pdf(sample())  # warm imports
    cut = timed(rounds, full=False)
    full = timed(rounds, full=True)
    print(f"median seconds per PDF over {rounds} rounds: cut {cut:.2f}, full font {full:.2f}; ratio {full / cut:.1f}x")


if __name__ == "__main__":
    main()
