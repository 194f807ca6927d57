"""Files as a Bytewax source: one partition per file, parsed lazily as the dataflow pulls.

Partitions are files, so several workers parse several files at once; each partition resumes
by skipping the items it already emitted (parsing is deterministic, so the n-th item of a file
is always the same item).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from sources.base import ParseContext, Parsed
from sources.detect import parse_stream

BATCH = 512


class _FilePartition(StatefulSourcePartition[Parsed, int]):
    def __init__(self, path: Path, ctx: ParseContext, resume: int | None) -> None:
        self._fh: BinaryIO = path.open("rb")
        self._items: Iterator[Parsed] = parse_stream(self._fh, ctx.named(path.name))
        self._emitted = 0
        for _ in range(resume or 0):
            if next(self._items, None) is None:
                break
            self._emitted += 1

    def next_batch(self) -> list[Parsed]:
        batch: list[Parsed] = []
        for item in self._items:
            batch.append(item)
            if len(batch) >= BATCH:
                break
        if not batch:
            raise StopIteration
        self._emitted += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._emitted

    def close(self) -> None:
        self._fh.close()


class FilesSource(FixedPartitionedSource[Parsed, int]):
    """Every supported file among ``paths`` (format detected from content)."""

    def __init__(self, paths: Sequence[Path], ctx: ParseContext) -> None:
        self._paths = {f"{i:06d}:{p}": p for i, p in enumerate(paths)}
        self._ctx = ctx

    def list_parts(self) -> list[str]:
        return list(self._paths)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(self._paths[for_part], self._ctx, resume_state)
