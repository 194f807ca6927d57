"""X12 segment tokenizer: delimiters from the data, segments streamed with byte offsets.

Written by hand because no maintained Python library tokenizes the files real payers send
(``|`` separators, ``\\n~`` terminators, ST..SE with no ISA, several interchanges in one file)
and stays fast; pyx12 validates but reads ~3k segments/s. The file is read in chunks and decoded
as latin-1, so character offsets are byte offsets and no byte can fail to decode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_SIZE = 1 << 20
_ISA_ELEMENTS = 16


@dataclass(frozen=True, slots=True)
class Delimiters:
    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    segment: str = "~"


DEFAULT_DELIMITERS = Delimiters()


def _terminator_after(text: str, pos: int) -> str | None:
    """The segment terminator starting at ``pos`` (just after a segment's last element).

    A newline followed by a non-letter (``\\n~``) means the terminator is that non-letter with
    a line break in front of it; a bare newline before the next segment id is the terminator.
    """
    n = len(text)
    if pos >= n:
        return None
    ch = text[pos]
    if ch not in "\r\n":
        return ch
    j = pos
    while j < n and text[j] in "\r\n \t":
        j += 1
    if j < n and not text[j].isalnum():
        return text[j]
    return "\n"


def sniff_delimiters(head: str) -> Delimiters | None:
    """Delimiters from an ISA header, or from an ST segment when there is no envelope."""
    text = head.lstrip("\ufeff\r\n\t ")
    if text.startswith("ISA") and len(text) > 4:
        element = text[3]
        pos = 3
        for _ in range(_ISA_ELEMENTS - 1):
            pos = text.find(element, pos + 1)
            if pos < 0:
                return None
        # ISA16 is the component separator: the one character after the 16th separator.
        component = text[pos + 1] if pos + 1 < len(text) else ":"
        terminator = _terminator_after(text, pos + 2)
        if terminator is None:
            return None
        isa_fields = text[:pos].split(element)
        repetition = isa_fields[11] if len(isa_fields) > 11 and len(isa_fields[11]) == 1 else "^"
        if repetition.isalnum():  # 4010 has a standards id ("U") there, not a separator
            repetition = "^"
        return Delimiters(element, component, repetition, terminator)
    if text.startswith("ST") and len(text) > 3 and not text[2].isalnum():
        element = text[2]
        # ST*835*<control>[*<implementation ref>] then the terminator: the first character that
        # is neither part of an alphanumeric element nor the element separator.
        pos = 3
        while pos < len(text) and (text[pos].isalnum() or text[pos] in (element, ".", "-")):
            pos += 1
        terminator = _terminator_after(text, pos)
        if terminator is None:
            return None
        return Delimiters(element, _guess_component(text, element, terminator), "^", terminator)
    return None


def _guess_component(text: str, element: str, terminator: str) -> str:
    """With no ISA the component separator is unwritten: read it off the first SVC composite
    (``SVC*HC:99211``); ``:`` when there is none."""
    at = text.find(f"{terminator}SVC{element}")
    if at < 0:
        at = text.find(f"SVC{element}")
        if at < 0:
            return ":"
        start = at + 4
    else:
        start = at + len(terminator) + 4
    probe = text[start : start + 3]
    if len(probe) == 3 and probe[:2].isalpha() and not probe[2].isalnum():
        return probe[2] if probe[2] not in (element, terminator) else ":"
    return ":"


class X12Tokenizer:
    """Splits a byte stream into segments: ``for offset, segment in tokenizer``.

    ``delimiters`` is set once the header is read and follows any later ISA that changes them.
    ``error`` tells why tokenizing stopped early (no recognisable header).
    """

    def __init__(self, stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self.delimiters: Delimiters | None = None
        self.error: str | None = None
        self.head: str = ""

    def batches(self) -> Iterator[tuple[int, list[str], Delimiters]]:
        """Raw pieces between terminators, a chunk at a time: ``(offset of first, pieces, delims)``.

        Pieces are not stripped and may be empty; piece *k* starts at ``offset + Σ(len(piece) +
        len(terminator))`` over the pieces before it. This is the fast path the 835 parser uses:
        one generator step per chunk instead of one per segment.
        """
        read = self._stream.read
        size = self._chunk_size
        buf = ""
        base = 0  # byte offset of buf[0] in the stream
        eof = False
        # Read enough to find the delimiters (an ISA is 106 bytes; ST headers are short).
        while not eof and len(buf) < 4096:
            chunk = read(size)
            if not chunk:
                eof = True
            buf += chunk.decode("latin-1")
        self.head = buf[:512]
        delims = sniff_delimiters(buf)
        if delims is None:
            self.error = "no ISA or ST header: not an X12 file or the header is damaged"
            return
        self.delimiters = delims
        first = True
        while True:
            term = delims.segment
            parts = buf.split(term)
            # The last piece may be an incomplete segment: keep it for the next chunk.
            tail = "" if eof else parts.pop()
            k = (
                self._interchange_change(parts, delims, tail, skip_first=first)
                if buf.find("ISA", 1 if first else 0) >= 0
                else None
            )
            first = False
            if k is not None:
                # A later interchange with other delimiters: emit what precedes it, re-split.
                head_parts = parts[:k]
                yield base, head_parts, delims
                base += sum(len(p) for p in head_parts) + len(term) * k
                buf = term.join(parts[k:]) + term + tail
                new = sniff_delimiters(buf)
                assert new is not None
                self.delimiters = delims = new
                continue
            yield base, parts, delims
            if eof:
                return
            base += sum(len(p) for p in parts) + len(term) * len(parts)
            chunk = read(size)
            if not chunk:
                eof = True
            buf = tail + chunk.decode("latin-1")

    @staticmethod
    def _interchange_change(
        parts: list[str], delims: Delimiters, tail: str, *, skip_first: bool
    ) -> int | None:
        """Index of a piece that starts an ISA with delimiters other than ``delims``, if any."""
        for k, raw in enumerate(parts):
            if "ISA" in raw and raw.lstrip()[:3] == "ISA" and not (skip_first and k == 0):
                rest = delims.segment.join(parts[k:]) + delims.segment + tail
                new = sniff_delimiters(rest)
                if new is not None and new != delims:
                    return k
        return None

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """Stripped, non-empty segments with the byte offset of their first character."""
        for base, parts, delims in self.batches():
            tlen = len(delims.segment)
            pos = base
            for raw in parts:
                if raw:
                    seg = raw.strip()
                    if seg:
                        yield (pos + raw.find(seg[0]) if raw[0] <= " " else pos), seg
                pos += len(raw) + tlen
