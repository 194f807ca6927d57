"""Files as a Bytewax source: a few partitions, each reading its share of the files in turn.

Partitions let several workers parse at once; a partition per *file* would make Bytewax open
and read every file on its first poll (most files are smaller than a batch), holding the whole
input in memory before anything is matched. So the files are dealt round-robin into at most
``shards`` partitions, each reading one file after another. A partition resumes from
``(file index, items emitted from that file)``: parsing is deterministic, so the n-th item of
a file is always the same item.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from remitflow.events import Source
from remitflow.records import DeadLetter
from sources.base import ParseContext, Parsed
from sources.detect import parse_stream

BATCH = 512
SHARDS = 8


class _ShardPartition(StatefulSourcePartition[Parsed, tuple[int, int]]):
    def __init__(
        self, paths: Sequence[Path], ctx: ParseContext, resume: tuple[int, int] | None
    ) -> None:
        self._paths = paths
        self._ctx = ctx
        self._file, skip = resume or (0, 0)
        self._emitted = 0
        self._items = self._open()
        for _ in range(skip):
            if next(self._items, None) is None:
                break
            self._emitted += 1

    def _open(self) -> Iterator[Parsed]:
        if self._file >= len(self._paths):
            return iter(())
        path = self._paths[self._file]

        def items() -> Iterator[Parsed]:
            try:
                fh = path.open("rb")
            except OSError as exc:  # vanished or unreadable since it was listed
                yield DeadLetter.of(
                    "parse",
                    f"cannot read the file: {exc.strerror}",
                    Source(system="unknown", file=path.name, record=None, offset=None),
                    b"",
                )
                return
            with fh:
                yield from parse_stream(fh, self._ctx.named(path.name))

        return items()

    def next_batch(self) -> list[Parsed]:
        batch: list[Parsed] = []
        while len(batch) < BATCH and self._file < len(self._paths):
            for item in self._items:
                batch.append(item)
                self._emitted += 1
                if len(batch) >= BATCH:
                    break
            else:
                self._file += 1
                self._emitted = 0
                self._items = self._open()
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> tuple[int, int]:
        return self._file, self._emitted


class FilesSource(FixedPartitionedSource[Parsed, tuple[int, int]]):
    """Every supported file among ``paths`` (format detected from content)."""

    def __init__(self, paths: Sequence[Path], ctx: ParseContext, shards: int = SHARDS) -> None:
        count = max(1, min(shards, len(paths)))
        self._shards = {f"files-{i:03d}": list(paths[i::count]) for i in range(count)}
        self._ctx = ctx

    def list_parts(self) -> list[str]:
        return list(self._shards)

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, int] | None
    ) -> _ShardPartition:
        return _ShardPartition(self._shards[for_part], self._ctx, resume_state)
