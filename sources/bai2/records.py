"""BAI2 logical records, reassembled from physical lines while streaming.

A BAI2 *logical* record is not a line. Banks put several records on one line
(``49,-1600,11/  03,1111111,...``), continue a record of any type with ``88`` records, end a
record with ``/`` or not at all, and let the text of a ``16`` run to the end of the line, commas
and slashes included, sometimes onward to the next line without an ``88``. This module turns
any of that into one :class:`LogicalRecord` per record, keeping where it started (line, byte
offset) and its original bytes, so the parser never has to look at lines.

Rules (BAI2 v2, plus what real files do):

* A record starts with a two-digit code followed by ``,``, ``/`` or the end of the line.
* A ``/`` ends a record when what follows it (after blanks) is the end of the line or the start
  of a plausible record (``16,<3 digits>,``, ``49,<number>,``, ``88,`` ...); any other ``/`` is
  data: banks put slashes in references and text (``INV 12/16/2023``).
* An ``88`` continues the previous record whatever its type: inside a text field its text is
  appended (joined by a space), otherwise its fields follow the previous ones.
* The text of a ``16`` starts after type, amount, funds type (with its S/V/D extra fields), bank
  and customer reference; once in the text, commas are text.
* A line that does not start with a known record code, right after ``16``/``88`` text that was
  not closed by ``/``, continues that text (sample3 of moov-io/bai2 does this).

Lines are read in chunks; only the current line is held, and even a file written as one
endless line is cut at record boundaries once the held part grows past ``max_line``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

CHUNK_SIZE = 1 << 16
MAX_LINE = 1 << 20

RECORD_CODES = frozenset({"01", "02", "03", "16", "49", "88", "98", "99"})
# Blanks between records; NUL and SUB (^Z) are the fill bytes of blocked mainframe files.
_BLANKS = " \t\x00\x0b\x0c\x1a"
_BLANK_BYTES = re.escape(_BLANKS.encode("ascii"))
# What may follow a "/" for it to end a record: the start of a plausible next record. Text
# holds slashes ("12/16/2023", "A/B"), so a bare code is not enough; a code and a comma, and
# for the records with numbers first, those numbers.
_NEXT_RECORD = r"(?:0[123],|88,|16,[0-9]{3},|49,[+-]?[0-9]*[,/]|9[89],[+-]?[0-9]*[,/])"
_NEXT_RECORD_AT = re.compile(_NEXT_RECORD).match
# The same boundary in bytes, to cut an overlong line where the tokenizer would split it.
_BOUNDARY = re.compile(rb"/[" + _BLANK_BYTES + rb"]*(?=" + _NEXT_RECORD.encode() + rb")")
_SPLIT_FUNDS_EXTRA = {"S": 3, "V": 2}


class LogicalRecord:
    """One BAI2 record with its continuations merged.

    ``body`` holds the comma-separated fields after the record code (for a ``16``, only those
    before the text) without the closing ``/``; ``text`` is the ``16`` text (``None`` when the
    record has no text field). ``count`` is how many physical BAI2 records (itself and its
    ``88``\\ s) it was made of, which is what the trailers' record counts count.
    """

    __slots__ = (
        "_body_parts",
        "_raw_parts",
        "_text_parts",
        "body",
        "code",
        "count",
        "in_text",
        "line",
        "offset",
        "open_text",
        "raw",
        "text",
    )

    def __init__(self, code: str, line: int, offset: int) -> None:
        self.code = code
        self.line = line
        self.offset = offset
        self.count = 1
        self.body = ""
        self.text: str | None = None
        self.raw = b""
        self.in_text = False
        self.open_text = False
        self._body_parts: list[str] = []
        self._text_parts: list[str] = []
        self._raw_parts: list[bytes] = []

    def fields(self) -> list[str]:
        return self.body.split(",")

    def _finish(self) -> LogicalRecord:
        parts = self._body_parts
        self.body = parts[0] if len(parts) == 1 else ",".join(parts)
        if self.in_text:
            texts = self._text_parts
            if len(texts) == 1:
                self.text = texts[0].strip(_BLANKS)
            else:
                self.text = " ".join(t for t in (p.strip(_BLANKS) for p in texts) if t)
        raws = self._raw_parts
        self.raw = raws[0] if len(raws) == 1 else b"\n".join(raws)
        return self

    def _add(self, s: str, start: int, content: int, raw: bytes, encoding: str | None) -> int:
        """Add ``s[content:]`` up to this record's end (the piece began at ``start``).

        Returns where the piece ended, i.e. where the next record may begin.
        """
        t = _terminator(s, content)
        end = t if t >= 0 else len(s)
        stop = t + 1 if t >= 0 else len(s)
        if start == 0 and stop == len(s):
            self._raw_parts.append(raw)
        elif encoding is None:
            self._raw_parts.append(raw[start:stop])
        else:
            a = len(s[:start].encode(encoding))
            self._raw_parts.append(raw[a : a + len(s[start:stop].encode(encoding))])
        piece = s[content:end]
        if self.in_text:
            self._text_parts.append(piece)
        elif self.code == "16":
            parts = self._body_parts
            prefix = ",".join(parts) + "," if parts else ""
            ts = text_start(prefix + piece if prefix else piece)
            if ts < 0:
                parts.append(piece)
            else:
                k = ts - len(prefix)  # where the text starts in this piece
                if k > 0:
                    parts.append(piece[: k - 1])
                self.in_text = True
                self._text_parts.append(piece[k:])
        else:
            self._body_parts.append(piece)
        self.open_text = self.in_text and t < 0
        return stop

    def __repr__(self) -> str:
        return f"LogicalRecord({self.code!r}, line={self.line}, body={self.body!r})"


def read_chunks(stream: BinaryIO, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The stream's bytes in chunks (short reads are not the end; empty or None is)."""
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


def physical_lines(
    chunks: Iterable[bytes], max_line: int = MAX_LINE
) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, byte offset, bytes)`` of each line; LF, CRLF and lone CR all end one.

    A line longer than ``max_line`` without an end is cut at a lone CR or at a record boundary
    (a ``/`` followed by a record code): the pieces keep the line's number, so what the
    records look like does not depend on where the cut or the chunk boundaries fell.
    """
    line_no = 0
    offset = 0  # file offset of the first held byte
    held: list[bytes] = []
    held_len = 0
    continuing = False  # held bytes continue a line whose start was already yielded
    attempt_at = max_line

    def emit(line: bytes, start: int, cont: bool) -> Iterator[tuple[int, int, bytes]]:
        """Lines of ``line`` split at lone CRs (its CR of a CRLF already removed)."""
        nonlocal line_no
        if b"\r" not in line:
            if not cont:
                line_no += 1
            yield line_no, start, line
            return
        for i, sub in enumerate(line.split(b"\r")):
            if i or not cont:
                line_no += 1
            yield line_no, start, sub
            start += len(sub) + 1

    for chunk in chunks:
        if not chunk:
            continue
        if b"\n" not in chunk:
            held.append(chunk)
            held_len += len(chunk)
            if held_len > attempt_at:
                data = b"".join(held)
                cut, at_line_end = _cut_point(data)
                if cut > 0:
                    piece = data[:cut]
                    yield from emit(piece[:-1] if at_line_end else piece, offset, continuing)
                    offset += cut
                    continuing = not at_line_end
                    held, held_len = [data[cut:]], len(data) - cut
                    attempt_at = max_line
                else:
                    held = [data]
                    attempt_at = 2 * held_len
            continue
        data = b"".join((*held, chunk)) if held else chunk
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            start, offset = offset, offset + len(line) + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if continuing or b"\r" in line:
                yield from emit(line, start, continuing)
                continuing = False
            else:
                line_no += 1
                yield line_no, start, line
        held, held_len = ([tail], len(tail)) if tail else ([], 0)
        attempt_at = max_line
    if held:
        last = b"".join(held)
        yield from emit(last[:-1] if last.endswith(b"\r") else last, offset, continuing)


def _cut_point(data: bytes) -> tuple[int, bool]:
    """Where an overlong unterminated line may be cut, and whether the cut ends a line."""
    cr = data.rfind(b"\r", 0, len(data) - 1)  # a CR not last: not half of a CRLF
    if cr >= 0:
        return cr + 1, True
    last = -1
    for m in _BOUNDARY.finditer(data):
        last = m.end()
    return last, False


def _code_at(s: str, i: int) -> str | None:
    """The record code at ``s[i]``: two ASCII digits followed by ``,``, ``/`` or the end."""
    after = s[i + 2 : i + 3]
    if after and after not in ",/":
        return None
    code = s[i : i + 2]
    if code in RECORD_CODES or (len(code) == 2 and code.isdigit() and code.isascii()):
        return code
    return None


def _skip_blanks(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _BLANKS:
        i += 1
    return i


def _terminator(s: str, start: int) -> int:
    """Index of the first ``/`` from ``start`` that ends a record, or -1."""
    i = s.find("/", start)
    while i >= 0:
        j = _skip_blanks(s, i + 1)
        if j == len(s) or _NEXT_RECORD_AT(s, j):
            return i
        i = s.find("/", i + 1)
    return -1


def distribution_count(text: str) -> int:
    """Funds type D's number of distributions; 0 if unreadable, capped where no record reaches."""
    s = text.strip()
    if not (s.isdigit() and s.isascii()):
        return 0
    return int(s) if len(s) <= 6 else 1_000_000


def text_start(body: str) -> int:
    """Where the text begins in a ``16`` body (fields after ``16,``), or -1 if not reached.

    Fields before the text: type code, amount, funds type, the funds type's extra fields
    (S: three amounts; V: value date and time; D: a count then that many day/amount pairs),
    bank reference, customer reference.
    """
    c1 = body.find(",")
    c2 = body.find(",", c1 + 1) if c1 >= 0 else -1
    c3 = body.find(",", c2 + 1) if c2 >= 0 else -1
    if c3 < 0:
        return -1
    funds = body[c2 + 1 : c3].strip().upper()
    pos = c3
    skip = _SPLIT_FUNDS_EXTRA.get(funds, 0) + 2
    if funds == "D":
        end = body.find(",", pos + 1)
        if end < 0:
            return -1
        count = body[pos + 1 : end].strip()
        pos = end
        skip += 2 * distribution_count(count)
    for _ in range(skip):
        pos = body.find(",", pos + 1)
        if pos < 0:
            return -1
    return pos + 1


class RecordAssembler:
    """Turns physical lines into logical records; feed lines in order, then :meth:`finish`."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: LogicalRecord | None = None

    def feed(self, line_no: int, offset: int, raw: bytes) -> list[LogicalRecord]:
        """The records this line completes (a record is complete once the next one starts)."""
        encoding: str | None = None  # None: ASCII, character index = byte index
        if raw.isascii():
            s = raw.decode("ascii")
        else:
            try:
                s = raw.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError:
                s = raw.decode("latin-1")
                encoding = None  # one byte per character
        done: list[LogicalRecord] = []
        n = len(s)
        pos = _skip_blanks(s, 0) if s[:1] in _BLANKS else 0
        if pos == n:
            return done
        rec = self._pending
        if rec is not None and rec.open_text and _code_at(s, pos) not in RECORD_CODES:
            # Text that runs on to the next line without an 88.
            pos = rec._add(s, pos, pos, raw, encoding)
            if pos < n and s[pos] in _BLANKS:
                pos = _skip_blanks(s, pos)
        while pos < n:
            code = _code_at(s, pos)
            content = pos + 3 if code is not None and s[pos + 2 : pos + 3] == "," else pos + 2
            if code == "88" and rec is not None:
                rec.count += 1
            else:
                if rec is not None:
                    done.append(rec._finish())
                at = pos if encoding is None else len(s[:pos].encode(encoding))
                rec = LogicalRecord(code or "", line_no, offset + at)
                if code is None:
                    content = pos  # not a record: keep it whole for the dead letter
            pos = rec._add(s, pos, content, raw, encoding)
            if pos < n and s[pos] in _BLANKS:
                pos = _skip_blanks(s, pos)
        self._pending = rec
        return done

    def finish(self) -> list[LogicalRecord]:
        rec, self._pending = self._pending, None
        return [rec._finish()] if rec is not None else []


def logical_records(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[LogicalRecord]:
    """Every logical record of a BAI2 byte stream, in order."""
    assembler = RecordAssembler()
    feed = assembler.feed
    for line_no, offset, raw in physical_lines(chunks, max_line):
        yield from feed(line_no, offset, raw)
    yield from assembler.finish()
