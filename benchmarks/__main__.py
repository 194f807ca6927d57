"""``python -m benchmarks [NAME] [OPTIONS]``: run every ``bench_*.py`` here, or the one named.

Each benchmark module exposes ``NAME``, ``SUMMARY`` and ``main(argv) -> int``; options after the
name go to that benchmark (``python -m benchmarks parse --days 5``). With no name, every
benchmark runs with its defaults, one after the other, each printing its own table.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_PREFIX = "bench_"


def discover() -> dict[str, ModuleType]:
    """Benchmark modules of this folder by their ``NAME`` (``bench_parse`` → ``parse``)."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith(_PREFIX):
            module = importlib.import_module(f"{__package__ or 'benchmarks'}.{info.name}")
            found[getattr(module, "NAME", info.name.removeprefix(_PREFIX))] = module
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    benchmarks = discover()
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        for name, module in benchmarks.items():
            print(f"  {name:<12} {getattr(module, 'SUMMARY', '')}")
        return 0
    if args and not args[0].startswith("-"):
        name = args.pop(0)
        if name not in benchmarks:
            print(f"unknown benchmark {name!r}; known: {', '.join(benchmarks)}", file=sys.stderr)
            return 2
        selected = {name: benchmarks[name]}
    else:
        selected = benchmarks
    status = 0
    for name, module in selected.items():
        print(f"== benchmark: {name} ==")
        status = max(status, int(module.main(args)))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
