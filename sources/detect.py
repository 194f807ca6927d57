"""Which parser a file needs, decided from its content (never from its name)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from remitflow.events import Source
from remitflow.records import DeadLetter
from sources.base import ParseContext, Parsed

Format = Literal["x12", "bai2", "camt053", "postings"]

# Module that implements each format's `parse(stream, ctx)`; imported on first use so that a
# deployment reading only bank files does not pay for the others.
_PARSERS: dict[Format, str] = {
    "x12": "sources.x12",
    "bai2": "sources.bai2",
    "camt053": "sources.camt053",
    "postings": "sources.postings",
}
SNIFF_BYTES = 4096


class _ParseFn(Protocol):
    def __call__(self, stream: BinaryIO, ctx: ParseContext) -> Iterator[Parsed]: ...


def detect_format(head: bytes) -> Format | None:
    """Recognise a format from a file's first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf\r\n\t ")
    if text.startswith(b"ISA") and len(text) > 3 and not text[3:4].isalnum():
        return "x12"
    if text.startswith(b"ST") and len(text) > 2 and not text[2:3].isalnum():
        return "x12"
    if text.startswith(b"01,"):
        return "bai2"
    if text.startswith(b"<"):
        lowered = text[:SNIFF_BYTES].lower()
        if b"camt.053" in lowered or b"bktocstmrstmt" in lowered:
            return "camt053"
        return None
    if text.startswith(b"{"):
        return "postings"
    return None


def parser_for(fmt: Format) -> _ParseFn:
    module = importlib.import_module(_PARSERS[fmt])
    fn: _ParseFn = module.parse
    return fn


def parse_stream(
    stream: BinaryIO, ctx: ParseContext, fmt: Format | None = None
) -> Iterator[Parsed]:
    """Parse a seekable binary stream, detecting the format unless given."""
    if fmt is None:
        head = stream.read(SNIFF_BYTES)
        stream.seek(0)
        fmt = detect_format(head)
        if fmt is None:
            yield DeadLetter.of(
                "parse",
                "unrecognised format: not an X12 835, BAI2, camt.053 or postings JSONL file",
                Source(system="unknown", file=ctx.file, record=None, offset=0),
                head[:1024],
            )
            return
    yield from parser_for(fmt)(stream, ctx)


def parse_path(path: str | Path, ctx: ParseContext, fmt: Format | None = None) -> Iterator[Parsed]:
    p = Path(path)
    with p.open("rb") as fh:
        yield from parse_stream(fh, ctx.named(p.name), fmt)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and the files inside folders named (sorted, hidden files skipped).

    Raises FileNotFoundError for a path that does not exist: an unusable argument, not data.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out
