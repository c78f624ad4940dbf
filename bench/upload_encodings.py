"""What reading an upload for its text costs, against the SHA-256 pass every upload already makes.

    .venv/bin/python -m bench.upload_encodings [--rows 2000000] [--workbook-rows 200000]

Generates a person-like CSV (ASCII; Chinese names and regions in UTF-8; the same in GB18030) and an Excel workbook
of the Chinese rows in a temporary directory, then, alternating in one process, times the upload's hash pass over
each file (as products.pipeline.resumable hashes it) beside products.pipeline.encodings.as_utf8 over a fresh copy
(a check for UTF-8, a rewrite as UTF-8 for GB18030, the workbook's sheet written as CSV). Prints the medians, their
ratio to the hash pass, and the rows per second.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import openpyxl

from products.pipeline import encodings

ASCII = "P{0:07d},Person {0},north,common,{1},{2}.50,{3}\n"
CHINESE = "P{0:07d},张{0}（测试）,华北,常见,{1},{2}.50,{3}\n"


def _write(path: Path, line: str, rows: int, encoding: str) -> None:
    with path.open("w", encoding=encoding) as handle:
        handle.write("person_id,name,region,category,month,amount,trips\n")
        for i in range(rows):
            handle.write(line.format(i, i % 12 + 1, i % 977, i % 9))


def _write_workbook(path: Path, rows: int) -> None:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("人员")
    sheet.append(["person_id", "name", "region", "category", "month", "amount", "trips"])
    for i in range(rows):
        sheet.append([f"P{i:07d}", f"张{i}（测试）", "华北", "常见", i % 12 + 1, (i % 977) + 0.5, i % 9])
    book.save(path)


def _hash(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return time.perf_counter() - started


def _read(path: Path, work: Path) -> float:
    copy = work / path.name
    shutil.copyfile(path, copy)
    started = time.perf_counter()
    encodings.as_utf8(copy, copy.name)
    elapsed = time.perf_counter() - started
    copy.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--workbook-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        work = root / "work"
        work.mkdir()
        files = {
            "ASCII, UTF-8": (root / "ascii.csv", ASCII, "utf-8"),
            "Chinese, UTF-8": (root / "chinese-utf8.csv", CHINESE, "utf-8"),
            "Chinese, GB18030": (root / "chinese-gb18030.csv", CHINESE, "gb18030"),
        }
        for path, line, encoding in files.values():
            _write(path, line, args.rows, encoding)
        workbook = root / "chinese.xlsx"
        _write_workbook(workbook, args.workbook_rows)
        rows = {label: args.rows for label in files} | {"Chinese, .xlsx": args.workbook_rows}
        paths = {label: path for label, (path, _, _) in files.items()} | {"Chinese, .xlsx": workbook}
        print(f"{'file':<18} {'MB':>6} {'hash s':>8} {'read s':>8} {'ratio':>6} {'MB/s':>6} {'rows/s':>9}")
        for label, path in paths.items():
            hashes, reads = [], []
            for _ in range(args.repeats):
                hashes.append(_hash(path))
                reads.append(_read(path, work))
            size = path.stat().st_size / 1e6
            hashed, read = statistics.median(hashes), statistics.median(reads)
            line = f"{label:<18} {size:>6.0f} {hashed:>8.2f} {read:>8.2f} {read / hashed:>6.2f} {size / read:>6.0f}"
            print(f"{line} {rows[label] / read:>9,.0f}")


if __name__ == "__main__":
    main()
