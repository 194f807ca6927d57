"""What every benchmark here shares: the machine line, best-of-N timing, number cells, tables.

Kept in one place so that every benchmark's tables read the same way (same rounding, same
alignment) and describe the machine the same way.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def default_processes() -> int:
    """CPUs this process may run on (``nproc``), which can be fewer than the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    cpu: str
    python: str

    @classmethod
    def here(cls) -> Machine:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        python = f"{platform.python_implementation()} {platform.python_version()}"
        return cls(default_processes(), cpu, python)

    def describe(self) -> str:
        return f"machine: {self.cores} cores (nproc), {self.cpu}, {self.python}"


def best_of(runs: int, once: Callable[[], T]) -> tuple[float, T]:
    """Shortest wall time of ``runs`` runs (with its result): the least disturbed one."""
    best = math.inf
    result: T | None = None
    for _ in range(max(1, runs)):
        gc.collect()
        started = time.perf_counter()
        value = once()
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, result = elapsed, value
    assert result is not None
    return best, result


def fmt_num(value: float | None) -> str:
    """Three significant digits or more, thousands separated; ``—`` when not measured."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3g}×" if a and b else "—"


def markdown_table(cells: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, header first: first column left-aligned, the others right-aligned,
    except the last (free-text notes), which is left as it is so that long notes do not widen
    every row."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]

    def render(row: Sequence[str]) -> str:
        pairs = zip(row[:-1], widths, strict=True)
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(pairs)]
        return "| " + " | ".join([*padded, row[-1]]) + " |"

    lines = [render(cells[0]), "|" + "|".join(["-" * (w + 2) for w in widths] + ["---"]) + "|"]
    lines.extend(render(row) for row in cells[1:])
    return lines
