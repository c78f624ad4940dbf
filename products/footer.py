"""Product files whose layout tells nothing: a Parquet footer without statistics (docs/sandbox.md, "Timing").

DuckDB's Parquet writer has no switch to leave out the per-column-chunk min/max statistics, and the
reader uses them to skip row groups and to fold comparisons (`day > 31` is false without reading a row),
so the time of a buyer's query could tell whether, and roughly where, a hidden value occurs. Every
product version's Parquet is therefore written by DuckDB (its encodings and its speed are kept, no Bloom
filters, no page index) and then its footer is rewritten here without what describes the values:

- ColumnMetaData: `statistics` (12), `bloom_filter_offset` (14), `bloom_filter_length` (15),
  `size_statistics` (16), `geospatial_statistics` (17);
- ColumnChunk: the page index offsets and lengths (4 to 7).

The data pages are not touched (their offsets stay valid); DuckDB's writer puts no statistics in page
headers (checked by `page_statistics`, used by the tests). The footer is Thrift's compact protocol,
read into a generic tree and written back with the same field order; anything unknown is copied as is.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"PAR1"

# Thrift compact protocol type ids.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

_COLUMN_META_DROPPED = frozenset({12, 14, 15, 16, 17})
_COLUMN_CHUNK_DROPPED = frozenset({4, 5, 6, 7})


@dataclass
class Field:
    id: int
    type: int
    value: Any


class _Reader:
    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    def byte(self) -> int:
        value = self.data[self.position]
        self.position += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def take(self, length: int) -> bytes:
        if self.position + length > len(self.data):
            raise ValueError("truncated Parquet footer")
        chunk = self.data[self.position : self.position + length]
        self.position += length
        return chunk

    def value(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):  # a boolean inside a list or map: one byte
            return self.byte() == 1
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            return self.take(8)
        if kind == _BINARY:
            return self.take(self.varint())
        if kind in (_LIST, _SET):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return (element, [self.value(element) for _ in range(size)])
        if kind == _MAP:
            size = self.varint()
            if size == 0:
                return (0, 0, [])
            types = self.byte()
            key, item = types >> 4, types & 0x0F
            return (key, item, [(self.value(key), self.value(item)) for _ in range(size)])
        if kind == _STRUCT:
            return self.struct()
        raise ValueError(f"unknown Thrift compact type {kind}")

    def struct(self) -> list[Field]:
        fields: list[Field] = []
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            delta, kind = header >> 4, header & 0x0F
            last = last + delta if delta else self.zigzag()
            if kind in (_TRUE, _FALSE):
                fields.append(Field(last, kind, kind == _TRUE))
            else:
                fields.append(Field(last, kind, self.value(kind)))


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, value: int) -> None:
        while True:
            if value < 0x80:
                self.out.append(value)
                return
            self.out.append((value & 0x7F) | 0x80)
            value >>= 7

    def zigzag(self, value: int) -> None:
        self.varint((value << 1) ^ (value >> 63))

    def value(self, kind: int, value: Any) -> None:
        if kind in (_TRUE, _FALSE):
            self.out.append(1 if value else 2)
        elif kind == _BYTE:
            self.out.append(value)
        elif kind in (_I16, _I32, _I64):
            self.zigzag(value)
        elif kind == _DOUBLE:
            self.out += value
        elif kind == _BINARY:
            self.varint(len(value))
            self.out += value
        elif kind in (_LIST, _SET):
            element, items = value
            if len(items) < 15:
                self.out.append((len(items) << 4) | element)
            else:
                self.out.append(0xF0 | element)
                self.varint(len(items))
            for item in items:
                self.value(element, item)
        elif kind == _MAP:
            key, item_kind, items = value
            self.varint(len(items))
            if items:
                self.out.append((key << 4) | item_kind)
                for k, v in items:
                    self.value(key, k)
                    self.value(item_kind, v)
        elif kind == _STRUCT:
            self.struct(value)
        else:
            raise ValueError(f"unknown Thrift compact type {kind}")

    def struct(self, fields: list[Field]) -> None:
        last = 0
        for field in fields:
            kind = (_TRUE if field.value else _FALSE) if field.type in (_TRUE, _FALSE) else field.type
            delta = field.id - last
            if 0 < delta <= 15:
                self.out.append((delta << 4) | kind)
            else:
                self.out.append(kind)
                self.zigzag(field.id)
            if kind not in (_TRUE, _FALSE):
                self.value(kind, field.value)
            last = field.id
        self.out.append(0)


def _field(fields: list[Field], field_id: int) -> Field | None:
    return next((f for f in fields if f.id == field_id), None)


def _strip(metadata: list[Field]) -> None:
    """Drop the statistics, Bloom filter and page index references of every column chunk, in place."""
    row_groups = _field(metadata, 4)
    for row_group in row_groups.value[1] if row_groups else []:
        columns = _field(row_group, 1)
        for chunk in columns.value[1] if columns else []:
            chunk[:] = [f for f in chunk if f.id not in _COLUMN_CHUNK_DROPPED]
            meta = _field(chunk, 3)
            if meta is not None:
                meta.value[:] = [f for f in meta.value if f.id not in _COLUMN_META_DROPPED]


def _footer(path: Path) -> tuple[int, bytes]:
    """(offset of the footer, its bytes) of the Parquet file at `path`."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(size - 8)
        tail = handle.read(8)
        if len(tail) != 8 or tail[4:] != MAGIC:
            raise ValueError(f"{path.name} is not a Parquet file")
        length = struct.unpack("<I", tail[:4])[0]
        start = size - 8 - length
        if start < 4:
            raise ValueError(f"{path.name} has a broken Parquet footer")
        handle.seek(start)
        return start, handle.read(length)


def strip_statistics(path: Path) -> None:
    """Rewrite the footer of the Parquet file at `path` without statistics, Bloom filters or page index.

    In place and before the file is published (callers write a partial file and rename it after)."""
    start, footer = _footer(path)
    reader = _Reader(footer)
    metadata = reader.struct()
    _strip(metadata)
    writer = _Writer()
    writer.struct(metadata)
    with path.open("r+b") as handle:
        handle.seek(start)
        handle.write(bytes(writer.out))
        handle.write(struct.pack("<I", len(writer.out)))
        handle.write(MAGIC)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def page_statistics(path: Path) -> int:
    """How many data page headers of the file at `path` carry statistics (0 for a product file)."""
    _, footer = _footer(path)
    metadata = _Reader(footer).struct()
    found = 0
    data = path.read_bytes()
    row_groups = _field(metadata, 4)
    for row_group in row_groups.value[1] if row_groups else []:
        columns = _field(row_group, 1)
        for chunk in columns.value[1] if columns else []:
            meta = _field(chunk, 3)
            if meta is None:
                continue
            values = {f.id: f.value for f in meta.value}
            # The chunk starts at its dictionary page (11) if any, else its first data page (9), and
            # holds total_compressed_size (7) bytes of page headers and pages.
            position = values[11] if values.get(11) else values[9]
            end = position + values[7]
            while position < end and position < len(data):
                reader = _Reader(data, position)
                header = {f.id: f for f in reader.struct()}
                for page_header_field in (5, 8):  # data_page_header, data_page_header_v2
                    page = header.get(page_header_field)
                    if page is not None and _field(page.value, 5 if page_header_field == 5 else 8) is not None:
                        found += 1
                position = reader.position + header[3].value  # compressed_page_size
    return found
