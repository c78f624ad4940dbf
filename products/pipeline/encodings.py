"""An uploaded CSV's text as UTF-8, the one encoding the product's DuckDB reads it in.

Chinese office software saves CSV in GB18030 or its subsets GBK and GB2312 (the "ANSI" of a Chinese Windows),
and Excel's "Unicode text" is UTF-16 with a byte order mark. DuckDB's CSV reader takes UTF-8 (UTF-16 and
Latin-1 only when told so, anything else only through an extension this server never loads), and refused such a
file at build time with "Invalid unicode (byte sequence mismatch) detected": an operator's everyday file could
not be listed. So a CSV upload (also gzip-compressed, also TSV) is rewritten once as UTF-8 when it lands
(uploads.register; the multipart version route), and every later reader (the columns, the recipe's preview, the
build) reads UTF-8 (a spreadsheet is written as the UTF-8 CSV of its sheet there too: workbooks):

- a UTF-16 (or UTF-32) byte order mark: the file is UTF-16 (UTF-32);
- otherwise a file that decodes as UTF-8 (with or without its byte order mark) is kept byte for byte;
- otherwise it is read as GB18030 (every GBK and GB2312 file is also GB18030).

The rewrite decodes strictly: a file that is none of these (binary data, UTF-8 with a broken byte, most Latin-1
text) is refused as it lands (`invalid_upload`, naming the line of the first byte UTF-8 cannot read and asking for
UTF-8), and so is a text holding a NUL byte (UTF-16 without its byte order mark, which UTF-8 or GB18030 would
otherwise read as garbage without an error; red22), and so is a broken gzip stream (cut short, or failing its
checksum: DuckDB checks no gzip CRC, and built a byte altered in transit as data; red22). Both passes read in
chunks (CHUNK), so memory stays bounded whatever the file's size. The upload keeps the SHA-256 of the bytes sent:
the operator's own hash of their file, and what a retry's Idempotency-Key is checked against.

Latin-1 is not read: its accented letters are single bytes above 0x7F, which GB18030 reads as the first byte of a
character, so a Latin-1 line is refused where such a byte is followed by a comma, a digit or a line end, and read as
Chinese characters where it is followed by a letter; a marketplace of Chinese public data takes GB18030 as the
reading of a byte above 0x7F that is not UTF-8. Two more ambiguities are inherent, and both vanish with length
(measured on random lines of the 3,755 commonest characters, 70 % of them Chinese): about one GB2312 character in
six is also a two-byte UTF-8 sequence, so a GB18030 text that is valid UTF-8 throughout is read as UTF-8 (none of
100,000 lines of 60 characters); and a UTF-8 file with a bad byte is tried as GB18030, which reads UTF-8 text
without an error almost never (1 in 100,000 such lines, none at 600 characters), so it is refused as it lands. The
recipe's preview shows the values as read before anything is built.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from market.errors import Unprocessable
from market.i18n import Phrase
from products import storage
from products.pipeline import workbooks

CHUNK = 1 << 20
"""Bytes read at a time (1 MiB)."""
MAX_TEXT_BYTES = 50 * 1024**3
"""The most text a CSV may hold once decompressed (uploads.MAX_UPLOAD_BYTES, the cap on the bytes sent): a small
gzip stream can hold terabytes of zeros, which these passes, and the build after them, would read for hours."""

_UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_MARKS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_BROKEN_GZIP = (gzip.BadGzipFile, EOFError, zlib.error)
"""What reading a .gz file can raise when its bytes are not a whole gzip stream (not gzip, cut short, a failed CRC):
the upload is refused. Anything else (the disk full while writing the copy) is the server's error and
propagates."""


class _NulByte(Exception):
    """A NUL character on `line` (from 1): no text holds one; a file of them is UTF-16 without its byte order mark,
    which UTF-8 (ASCII text) or GB18030 (Chinese text) would otherwise read without an error, as garbage."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _open(path: Path, compressed: bool) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if compressed else path.open("rb")


def _create(path: Path, compressed: bool) -> io.BufferedIOBase:
    # gzip's fastest level: the copy is read once or twice, by the build, and then deleted with the upload.
    return gzip.open(path, "wb", compresslevel=1) if compressed else path.open("wb")


def _chunks(handle: io.BufferedIOBase) -> Iterator[bytes]:
    """The file's bytes (decompressed) in chunks of CHUNK, or upload_too_large past MAX_TEXT_BYTES."""
    read = 0
    while chunk := handle.read(CHUNK):
        read += len(chunk)
        if read > MAX_TEXT_BYTES:
            raise Unprocessable("upload_too_large", limit_gib=MAX_TEXT_BYTES // 1024**3)
        yield chunk


def source_encoding(path: Path, compressed: bool) -> tuple[str | None, int | None]:
    """The encoding to rewrite the file from ("utf-16", "gb18030"), or None to keep it (it is UTF-8 already); and,
    when it is not UTF-8, the line (from 1) of its first byte that UTF-8 cannot read. _NulByte when UTF-8 text
    holds a NUL; _BROKEN_GZIP's errors when it is no whole gzip stream."""
    lines = 0  # line ends before the current chunk
    with _open(path, compressed) as handle:
        head = handle.read(4)
    if head.startswith(_UTF32_MARKS):
        return "utf-32", None  # UTF-32's mark begins with UTF-16's
    if head.startswith(_UTF16_MARKS):
        return "utf-16", None
    decoder = codecs.getincrementaldecoder("utf-8")()
    with _open(path, compressed) as handle:
        for chunk in _chunks(handle):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                return "gb18030", lines + error.object[: error.start].count(b"\n") + 1
            if (at := chunk.find(b"\0")) >= 0:  # UTF-8 text, but for a NUL: UTF-16 without its mark (red22)
                raise _NulByte(lines + chunk[:at].count(b"\n") + 1)
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030", lines + 1  # a character cut short by the end of the file
    return None, None


def _rewrite(path: Path, compressed: bool, encoding: str) -> bool:
    """`path` rewritten as UTF-8 from `encoding`, atomically; False (and the file untouched) when it does not
    decode as `encoding` from end to end."""
    partial = path.with_name(path.name + ".utf-8")
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    try:
        with _open(path, compressed) as source, _create(partial, compressed) as target:
            for chunk in _chunks(source):
                text = decoder.decode(chunk)
                if (at := text.find("\0")) >= 0:
                    raise _NulByte(lines + text[:at].count("\n") + 1)
                lines += text.count("\n")
                target.write(text.encode())
            target.write(decoder.decode(b"", final=True).encode())
    except UnicodeDecodeError:
        partial.unlink(missing_ok=True)
        return False
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return True


def as_utf8(path: Path, filename: str) -> str | None:
    """Rewrite the uploaded file at `path` (named `filename` by the operator) as UTF-8 if it is a CSV in another
    encoding this module reads, or as the CSV of its one sheet if it is a spreadsheet (workbooks.as_csv); returns
    the encoding it was read from ("spreadsheet" for a spreadsheet), or None when it was kept as it is (Parquet,
    UTF-8 already). A broken gzip stream is refused. A CSV that is no text this module
    reads is refused here, `invalid_upload`, with the line of its first byte UTF-8 cannot read."""
    if storage.file_kind(filename) != "csv":
        return None
    if filename.lower().endswith(storage.WORKBOOK_SUFFIXES):
        workbooks.as_csv(path, filename, MAX_TEXT_BYTES)  # written as UTF-8
        return "spreadsheet"
    compressed = filename.lower().endswith(".gz")
    try:
        encoding, line = source_encoding(path, compressed)
        if encoding is None:
            return None
        if _rewrite(path, compressed, encoding):
            return encoding
    except _NulByte as nul:
        detail = Phrase(
            "line {line} holds a NUL byte, which no text has (UTF-16 without its byte order mark?); save the file "
            "as UTF-8",
            line=nul.line,
        )
        raise Unprocessable("invalid_upload", file=filename, kind="CSV", detail=detail) from nul
    except _BROKEN_GZIP as error:
        detail = Phrase("it is not a whole gzip stream (cut short, or altered: its checksum fails); compress it again")
        raise Unprocessable("invalid_upload", file=filename, kind="CSV", detail=detail) from error
    if line is None:
        mark = encoding.upper()
        detail = Phrase("it begins with a {mark} byte order mark but is not {mark} text; save it as UTF-8", mark=mark)
    else:
        detail = Phrase("line {line} is not UTF-8, GB18030 or UTF-16 text; save the file as UTF-8", line=line)
    raise Unprocessable("invalid_upload", file=filename, kind="CSV", detail=detail)
