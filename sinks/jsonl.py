"""Output records as JSON lines, one file per record family (``DIR/<stem>.jsonl``).

A Bytewax fixed-partitioned sink with one partition per file, so exactly one worker writes each
file whatever the number of workers. It is the embedded mode's sink; continuous mode writes the
same ``(stem, record)`` stream to Kafka topics instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zlib import adler32

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

STEMS = (
    "matched",
    "variance",
    "unmatched",
    "erp_postings",
    "dead_letter",
    "parse_issues",
    "audit",
)

_SORTED = sorted(STEMS)


class _FilePart(StatefulSinkPartition[dict[str, Any], int]):
    def __init__(self, path: Path, resume: int | None) -> None:
        self._fh = path.open("r+b" if resume is not None and path.exists() else "wb")
        if resume is not None:
            self._fh.truncate(resume)
            self._fh.seek(resume)

    def write_batch(self, values: list[dict[str, Any]]) -> None:
        self._fh.write(b"".join(orjson.dumps(v) + b"\n" for v in values))

    def snapshot(self) -> int:
        self._fh.flush()
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


class JsonlDirectorySink(FixedPartitionedSink[dict[str, Any], int]):
    """``(stem, record)`` pairs to ``directory/<stem>.jsonl``; resumes by truncating to the
    snapshot offset, so a recovered run does not write a record twice."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def list_parts(self) -> list[str]:
        return list(STEMS)

    def part_fn(self, item_key: str) -> int:
        # Bytewax indexes this into the sorted set of all partitions.
        return _SORTED.index(item_key) if item_key in _SORTED else adler32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePart:
        self._dir.mkdir(parents=True, exist_ok=True)
        return _FilePart(self._dir / f"{for_part}.jsonl", resume_state)
