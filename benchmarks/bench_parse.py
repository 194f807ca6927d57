"""Parse throughput: remitflow's 835 and BAI2 parsers beside their peers and a bare split.

Every implementation reads the same bytes in the same run, so the ratios mean something on a
shared, noisy machine even when the absolute numbers move. Segments (835) and records (BAI2) are
counted from the bytes themselves, not taken from any parser: an implementation that skips part
of a file cannot look faster by reporting fewer segments.

Rows:

* remitflow 835: ``sources.x12.parse_bytes`` into full canonical events (pydantic-validated
  remittances with claims, adjustments, identities, balancing), iterated and counted, never kept.
* bare split 835: ``str.split`` on the terminator, then on the element separator. No parser in
  Python can beat it, so it is the ceiling the others are measured against.
* edi-835-parser: ``edi_835_parser.parse(path)``; per-file times, files it crashes on counted and
  excluded from its rate.
* pyx12: the full validating path of its ``x12valid`` script (``x12n_document`` with a 999 written
  to memory), over the first files until a time budget is spent.
* remitflow 835 × N processes: the same parse with the files spread over N forked workers, the
  way Bytewax workers spread input partitions: what the machine does rather than one core.
* remitflow BAI2 and bare split BAI2: the same for the bank statements.

Data comes from ``sources.synthetic.generate_dataset`` when it exists; otherwise from
:func:`fallback_replicated_samples` (the real sample files copied with distinct traces).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import importlib.metadata
import io
import logging
import multiprocessing
import pstats
import re
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks.common import (
    Machine,
    best_of,
    default_processes,
    fmt_num,
    fmt_ratio,
    markdown_table,
)
from remitflow.events import BankTransaction, Remittance
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter
from remitflow.refdata import ReferenceData, load_reference_data
from sources.base import ParseContext, Parsed
from sources.detect import detect_format

NAME = "parse"
SUMMARY = "835 and BAI2 parse throughput beside edi-835-parser, pyx12 and a bare str.split"

GOAL_SEGMENTS_PER_S = 1_000_000
DEFAULT_RUNS = 3
DEFAULT_PYX12_SECONDS = 10.0
DEFAULT_HOSPITALS = 20
DEFAULT_PAYERS = 24
DEFAULT_DAYS = 22
DEFAULT_SEED = 7
FALLBACK_ERAS_PER_FILE = 12
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "samples"
PHI_KEY = b"bench"

ParseFn = Callable[[bytes, ParseContext], Iterator[Parsed]]

# --- counting units from the bytes ----------------------------------------------------------

_BLANKS = b"\r\n\t "


def x12_delimiters(data: bytes) -> tuple[bytes, bytes] | None:
    """``(element separator, segment terminator)`` of an 835, read off its ISA (or first ST).

    Deliberately independent of remitflow's tokenizer. A terminator written as ``\\n~`` counts
    as ``~``; a bare line break before the next segment id counts as ``\\n``.
    """
    text = data[:4096].lstrip(b"\xef\xbb\xbf" + _BLANKS)
    if text.startswith(b"ISA") and len(text) > 3:
        element = text[3:4]
        pos = 3
        for _ in range(15):  # ISA16 (one character) follows the 16th separator
            pos = text.find(element, pos + 1)
            if pos < 0:
                return None
        end = pos + 2
    elif text.startswith(b"ST") and len(text) > 2 and not text[2:3].isalnum():
        element = text[2:3]
        end = 3
        while end < len(text) and (text[end : end + 1].isalnum() or text[end] in element + b".-"):
            end += 1
    else:
        return None
    here = text[end : end + 1]
    if here and here not in b"\r\n":
        return element, here
    following = text[end:].lstrip(_BLANKS)[:1]
    return element, following if following and not following.isalnum() else b"\n"


def x12_segments(data: bytes) -> int:
    """Segments in an 835: its segment terminators, plus a last segment left unterminated."""
    delims = x12_delimiters(data)
    if delims is None:
        return 0
    term = delims[1]
    return data.count(term) + (1 if data.rsplit(term, 1)[-1].strip() else 0)


def bai2_records(data: bytes) -> int:
    """Physical BAI2 records: non-blank lines (the generator writes one record per line)."""
    return sum(1 for line in data.split(b"\n") if line.strip())


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFile:
    path: Path
    data: bytes
    units: int  # segments of an 835, records of a BAI2 file


@dataclass(frozen=True, slots=True)
class Dataset:
    origin: str  # how it was made, printed above the table
    x12: tuple[DataFile, ...]
    bai2: tuple[DataFile, ...]
    refdata: ReferenceData

    @staticmethod
    def total(files: Sequence[DataFile]) -> tuple[int, int]:
        """(units, bytes)"""
        return sum(f.units for f in files), sum(len(f.data) for f in files)


def load_dataset(root: Path, origin: str) -> Dataset:
    """Every 835 and BAI2 file under ``root`` (format from content), read into memory."""
    x12: list[DataFile] = []
    bai2: list[DataFile] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        fmt = detect_format(data[:4096])
        if fmt == "x12":
            x12.append(DataFile(path, data, x12_segments(data)))
        elif fmt == "bai2":
            bai2.append(DataFile(path, data, bai2_records(data)))
    refdata_path = root / "refdata.toml"
    refdata = load_reference_data(refdata_path) if refdata_path.exists() else ReferenceData()
    return Dataset(origin, tuple(x12), tuple(bai2), refdata)


def generated_dataset(out: Path, *, hospitals: int, payers: int, days: int, seed: int) -> Dataset:
    """The project's synthetic generator; ImportError when it is not there yet."""
    module = importlib.import_module("sources.synthetic")
    generate = getattr(module, "generate_dataset", None)
    if generate is None:
        raise ImportError("sources.synthetic has no generate_dataset")
    generate(out, hospitals=hospitals, payers=payers, days=days, seed=seed)
    origin = (
        f"sources.synthetic.generate_dataset(hospitals={hospitals}, payers={payers}, "
        f"days={days}, seed={seed})"
    )
    return load_dataset(out, origin)


def _retrace(data: bytes, prefix: str) -> bytes:
    """``data`` with every TRN02 replaced by ``prefix`` + a running number."""
    delims = x12_delimiters(data)
    if delims is None:
        return data
    element, term = (re.escape(d) for d in delims)
    pattern = re.compile(b"(TRN" + element + b"[^" + element + term + b"]*" + element + b")[^"
                         + element + term + b"]*")  # fmt: skip
    numbers = iter(range(1_000_000))
    return pattern.sub(lambda m: m.group(1) + f"{prefix}{next(numbers):02d}".encode(), data)


def fallback_replicated_samples(
    out: Path,
    *,
    hospitals: int,
    days: int,
    seed: int,
    eras_per_file: int = FALLBACK_ERAS_PER_FILE,
    samples: Path = SAMPLES_DIR,
) -> Dataset:
    """FALLBACK data when the synthetic generator is unavailable: the real sample files copied.

    One 835 file per hospital and day, each ``eras_per_file`` copies of one real sample (taken
    in turn) with distinct traces, so that remitflow's content ids differ; one BAI2 file per
    hospital and day, a real sample as is. Real files are small, so per-file costs weigh more
    than with generated data.
    """
    x12_samples: list[bytes] = []
    bai2_samples: list[bytes] = []
    for path in sorted(samples.iterdir()):
        data = path.read_bytes()
        fmt = detect_format(data[:4096])
        if fmt == "x12":
            x12_samples.append(data)
        elif fmt == "bai2":
            bai2_samples.append(data)
    (out / "remittances").mkdir(parents=True, exist_ok=True)
    (out / "bank").mkdir(parents=True, exist_ok=True)
    for i in range(hospitals * days):
        sample = x12_samples[i % len(x12_samples)]
        copies = (_retrace(sample, f"{seed:03d}{i:06d}{k:03d}") for k in range(eras_per_file))
        (out / "remittances" / f"era-{i:05d}.835").write_bytes(b"".join(copies))
        (out / "bank" / f"statement-{i:05d}.bai2").write_bytes(bai2_samples[i % len(bai2_samples)])
    origin = (
        f"FALLBACK fallback_replicated_samples(hospitals={hospitals}, days={days}, seed={seed}): "
        f"{len(x12_samples)} real 835 samples × {eras_per_file} per file, "
        f"{len(bai2_samples)} real BAI2 samples"
    )
    return load_dataset(out, origin)


# --- measurements ---------------------------------------------------------------------------


Role = Literal["remitflow", "parallel", "ceiling", "peer"]


@dataclass(slots=True)
class Row:
    """One implementation's result; ``seconds`` is None when it could not be measured."""

    implementation: str
    role: Role
    fmt: str  # "835" or "BAI2"
    unit: str  # "segments" or "records"
    units: int = 0  # units in the bytes the time covers
    nbytes: int = 0
    seconds: float | None = None
    events: int | None = None  # canonical events produced (remitflow rows)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.units / self.seconds if self.seconds else None

    @property
    def mb_per_s(self) -> float | None:
        return self.nbytes / self.seconds / 1e6 if self.seconds else None

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.seconds and self.events is not None else None


def _remitflow_row(
    label: str,
    fmt: str,
    unit: str,
    files: Sequence[DataFile],
    parse: ParseFn,
    ds: Dataset,
    runs: int,
) -> Row:
    """Consume the parser's iterator over every file, counting events by kind, keeping none."""
    ctx = ParseContext(file="bench", refdata=ds.refdata, phi=PhiHasher(PHI_KEY))
    work = [(f.data, ctx.named(f.path.name)) for f in files]

    def once() -> tuple[int, int, int]:
        events = dead = issues = 0
        for data, file_ctx in work:
            for item in parse(data, file_ctx):
                kind = type(item)
                if kind is Remittance or kind is BankTransaction:
                    events += 1
                elif kind is DeadLetter:
                    dead += 1
                else:
                    issues += 1
        return events, dead, issues

    row = Row(label, "remitflow", fmt, unit, *Dataset.total(files))
    if not files:
        row.notes.append("no files")
        return row
    row.seconds, (row.events, dead, issues) = best_of(runs, once)
    what = "remittances" if fmt == "835" else "bank transactions"
    row.notes.append(f"{row.events:,} {what}, {dead:,} dead letters, {issues:,} parse issues")
    return row


def remitflow_x12_row(ds: Dataset, runs: int) -> Row:
    from sources.x12 import parse_bytes

    row = _remitflow_row("remitflow 835", "835", "segments", ds.x12, parse_bytes, ds, runs)
    row.notes.append(f"full canonical events (claims, CAS, PLB, ids, balancing), best of {runs}")
    return row


def remitflow_bai2_row(ds: Dataset, runs: int) -> Row:
    row = Row("remitflow BAI2", "remitflow", "BAI2", "records", *Dataset.total(ds.bai2))
    try:
        module = importlib.import_module("sources.bai2")
    except ImportError:
        module = None
    parse_bytes = getattr(module, "parse_bytes", None)
    if parse_bytes is None or not hasattr(module, "parse"):
        row.notes.append("not available: sources.bai2 has no parse yet")
        return row
    row = _remitflow_row("remitflow BAI2", "BAI2", "records", ds.bai2, parse_bytes, ds, runs)
    row.notes.append(f"bank transactions with text facts and control totals, best of {runs}")
    return row


def bare_split_x12_row(ds: Dataset, runs: int) -> Row:
    """The ceiling: decode, split on the terminator, split every segment on the separator."""
    work: list[tuple[bytes, str, str]] = []
    for f in ds.x12:
        delims = x12_delimiters(f.data)
        if delims is not None:
            work.append((f.data, delims[0].decode("latin-1"), delims[1].decode("latin-1")))

    def once() -> int:
        elements = 0
        for data, element, term in work:
            for segment in data.decode("latin-1").split(term):
                elements += len(segment.split(element))
        return elements

    row = Row("bare str.split 835", "ceiling", "835", "segments", *Dataset.total(ds.x12))
    if work:
        row.seconds, _ = best_of(runs, once)
    row.notes.append(f"latin-1 decode + split(terminator) + split(element), best of {runs}")
    return row


def bare_split_bai2_row(ds: Dataset, runs: int) -> Row:
    def once() -> int:
        fields = 0
        for f in ds.bai2:
            for line in f.data.decode("latin-1").split("\n"):
                fields += len(line.split(","))
        return fields

    row = Row("bare str.split BAI2", "ceiling", "BAI2", "records", *Dataset.total(ds.bai2))
    if ds.bai2:
        row.seconds, _ = best_of(runs, once)
    row.notes.append(f"latin-1 decode + split lines + split(','), best of {runs}")
    return row


# Files the pool's workers parse, set before they fork so that no bytes are pickled.
_SHARED_WORK: list[tuple[bytes, ParseContext]] = []


def _parse_shared(indices: list[int]) -> int:
    """Worker: parse the shared files at ``indices``; the number of remittances."""
    from sources.x12 import parse_bytes

    remittances = 0
    for i in indices:
        data, ctx = _SHARED_WORK[i]
        for item in parse_bytes(data, ctx):
            remittances += type(item) is Remittance
    return remittances


def _shares(sizes: Sequence[int], n: int) -> list[list[int]]:
    """File indices in ``n`` shares of about equal bytes (largest first, to the lightest)."""
    shares: list[list[int]] = [[] for _ in range(n)]
    loads = [0] * n
    for i in sorted(range(len(sizes)), key=lambda k: -sizes[k]):
        lightest = loads.index(min(loads))
        shares[lightest].append(i)
        loads[lightest] += sizes[i]
    return [share for share in shares if share]


def remitflow_x12_parallel_row(ds: Dataset, runs: int, processes: int) -> Row:
    """The same parse, files spread over ``processes`` worker processes (as Bytewax workers
    would spread input partitions): what the machine does, not what one core does."""
    global _SHARED_WORK
    row = Row(f"remitflow 835 ×{processes} processes", "parallel", "835", "segments")
    row.units, row.nbytes = Dataset.total(ds.x12)
    if processes < 2 or not ds.x12:
        row.notes.append("needs ≥ 2 processes (--processes) and files")
        return row
    if "fork" not in multiprocessing.get_all_start_methods():
        row.notes.append("needs the fork start method")
        return row
    ctx = ParseContext(file="bench", refdata=ds.refdata, phi=PhiHasher(PHI_KEY))
    _SHARED_WORK = [(f.data, ctx.named(f.path.name)) for f in ds.x12]
    # More shares than processes, so that one slow share does not idle the others.
    shares = _shares([len(f.data) for f in ds.x12], processes * 4)
    try:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_parse_shared, [[] for _ in range(processes)]))  # start the workers
            row.seconds, row.events = best_of(runs, lambda: sum(pool.map(_parse_shared, shares)))
    finally:
        _SHARED_WORK = []
    row.notes.append(
        f"files spread over {processes} forked workers (pool started beforehand), best of {runs}"
    )
    return row


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def edi_835_parser_row(ds: Dataset, runs: int) -> Row:
    """``edi_835_parser.parse(path)`` per file; crashing files are counted, not timed."""
    row = Row(f"edi-835-parser {_version('edi-835-parser')}", "peer", "835", "segments")
    try:
        import edi_835_parser
    except ImportError:
        row.notes.append("not installed (pip install 'remitflow[bench]')")
        return row

    def once() -> tuple[float, int, int, Counter[str]]:
        seconds, units, nbytes, crashes = 0.0, 0, 0, Counter[str]()
        for f in ds.x12:
            started = time.perf_counter()
            try:
                edi_835_parser.parse(str(f.path))
            except Exception as exc:  # its failures are the finding, not ours
                crashes[type(exc).__name__] += 1
                continue
            seconds += time.perf_counter() - started
            units += f.units
            nbytes += len(f.data)
        return seconds, units, nbytes, crashes

    best: tuple[float, int, int, Counter[str]] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max(1, runs)):
            gc.collect()
            result = once()
            if best is None or result[0] < best[0]:
                best = result
    assert best is not None
    seconds, row.units, row.nbytes, crashes = best
    row.seconds = seconds or None
    crashed = sum(crashes.values())
    kinds = ", ".join(f"{n} {name}" for name, n in crashes.most_common())
    row.notes.append(
        f"crashed on {crashed}/{len(ds.x12)} files" + (f" ({kinds})" if kinds else "")
        + "; one unreadable element loses its whole file; rate over the files it parsed"
    )  # fmt: skip
    row.notes.append(
        "keeps no TRN (trace) and no PLB, and one BPR per file (the last; earlier sets lose "
        "theirs): not enough to reassociate"
    )
    row.notes.append(f"reads each file from its path (page cache); best of {runs}")
    return row


def _pyx12_readable(path: Path) -> bool:
    import pyx12.errors
    import pyx12.x12file

    try:
        with path.open(encoding="ascii") as fh:  # what it opens a path with
            pyx12.x12file.X12Reader(fh)
    except (pyx12.errors.X12Error, OSError, UnicodeDecodeError):
        return False
    return True


def pyx12_row(ds: Dataset, budget_s: float) -> Row:
    """pyx12's full validating path (as ``x12valid``), first files until ``budget_s`` is spent."""
    row = Row(f"pyx12 {_version('pyx12')} (validating)", "peer", "835", "segments")
    try:
        import pyx12.params
        import pyx12.x12n_document
    except ImportError:
        row.notes.append("not installed (pip install 'remitflow[bench]')")
        return row
    logger = logging.getLogger("pyx12")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # it logs every TR3 finding; we only time it
    try:
        param = pyx12.params.params()
        readable = [f for f in ds.x12 if _pyx12_readable(f.path)]
        skipped = len(ds.x12) - len(readable)
        if not readable:
            row.notes.append(f"could read none of the {len(ds.x12)} files")
            return row
        # One untimed file first: map loading and imports are a one-time cost per process.
        pyx12.x12n_document.x12n_document(param, str(readable[0].path), io.StringIO(), None)
        valid = invalid = errors = 0
        seconds = 0.0
        spent_since = time.perf_counter()
        for f in readable:
            started = time.perf_counter()
            try:
                ok = pyx12.x12n_document.x12n_document(param, str(f.path), io.StringIO(), None)
            except Exception:  # an engine error stops it mid-file: not timed
                errors += 1
            else:
                seconds += time.perf_counter() - started
                row.units += f.units
                row.nbytes += len(f.data)
                valid, invalid = valid + bool(ok), invalid + (not ok)
            if time.perf_counter() - spent_since >= budget_s:
                break
    finally:
        logger.setLevel(level)
    row.seconds = seconds or None
    row.notes.append(
        f"one bounded run: {valid + invalid} files validated in {seconds:.1f} s "
        f"({valid} valid, {invalid} with TR3 findings, {errors} engine errors)"
    )
    if skipped:
        row.notes.append(f"{skipped} files it refuses to open (it requires an ISA header) left out")
    row.notes.append("x12n_document with a 999 written to memory, as its x12valid script does")
    return row


# --- report ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ParseReport:
    machine: Machine
    dataset: Dataset
    runs: int
    rows: list[Row]

    def row(self, implementation_prefix: str) -> Row | None:
        for r in self.rows:
            if r.implementation.startswith(implementation_prefix):
                return r
        return None


def run_parse_benchmark(
    ds: Dataset,
    *,
    runs: int = DEFAULT_RUNS,
    pyx12_seconds: float = DEFAULT_PYX12_SECONDS,
    processes: int | None = None,
) -> ParseReport:
    """Every row, measured on the same dataset in this run."""
    rows = [
        remitflow_x12_row(ds, runs),
        bare_split_x12_row(ds, runs),
        edi_835_parser_row(ds, runs),
        pyx12_row(ds, pyx12_seconds),
        remitflow_x12_parallel_row(
            ds, runs, default_processes() if processes is None else processes
        ),
        remitflow_bai2_row(ds, runs),
        bare_split_bai2_row(ds, runs),
    ]
    return ParseReport(Machine.here(), ds, runs, rows)


COLUMNS = ("implementation", "units/s", "MB/s", "events/s", "÷ bare split", "remitflow ×", "notes")


def table_rows(report: ParseReport) -> list[list[str]]:
    """The table's cells, header first."""
    ceiling = {r.fmt: r.rate for r in report.rows if r.role == "ceiling"}
    ours = {r.fmt: r.rate for r in report.rows if r.role == "remitflow"}
    cells = [list(COLUMNS)]
    for r in report.rows:
        cells.append(
            [
                r.implementation,
                f"{fmt_num(r.rate)} {r.unit}/s" if r.rate else "not available",
                fmt_num(r.mb_per_s),
                fmt_num(r.events_per_s),
                fmt_ratio(r.rate, ceiling.get(r.fmt)),
                fmt_ratio(ours.get(r.fmt), r.rate) if r.role in ("peer", "ceiling") else "—",
                "; ".join(r.notes),
            ]
        )
    return cells


def format_report(report: ParseReport) -> str:
    ds = report.dataset
    segs, x12_bytes = Dataset.total(ds.x12)
    recs, bai2_bytes = Dataset.total(ds.bai2)
    m = report.machine
    lines = [
        m.describe(),
        f"data: {ds.origin}",
        f"  835: {len(ds.x12):,} files, {x12_bytes / 1e6:.2f} MB, {segs:,} segments; "
        f"BAI2: {len(ds.bai2):,} files, {bai2_bytes / 1e6:.2f} MB, {recs:,} records",
        "",
    ]
    lines.extend(markdown_table(table_rows(report)))
    lines += [
        "",
        "units/s: 835 segments (terminators in the bytes) or BAI2 records (non-blank lines), per",
        "second of wall time; MB = 10^6 bytes; events/s: canonical events out (remittances or bank",
        "transactions); ÷ bare split: share of the str.split ceiling (one core); remitflow ×:",
        "remitflow's single-process rate over this row's.",
    ]
    for r in report.rows:
        if r.fmt == "835" and r.role in ("remitflow", "parallel") and r.rate:
            verdict = "meets" if r.rate >= GOAL_SEGMENTS_PER_S else "is below"
            lines.append(
                f"goal ≥ {GOAL_SEGMENTS_PER_S:,} segments/s into canonical events: "
                f"{r.implementation} at {r.rate:,.0f} segments/s {verdict} it "
                f"({r.rate / GOAL_SEGMENTS_PER_S:.0%})."
            )
    return "\n".join(lines)


def profile_remitflow_x12(ds: Dataset, top: int = 25) -> str:
    """cProfile of one pass of remitflow's 835 parser over the dataset, by own time."""
    from sources.x12 import parse_bytes

    ctx = ParseContext(file="bench", refdata=ds.refdata, phi=PhiHasher(PHI_KEY))
    profiler = cProfile.Profile()
    profiler.enable()
    for f in ds.x12:
        for _ in parse_bytes(f.data, ctx.named(f.path.name)):
            pass
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    return out.getvalue()


# --- command line ---------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks parse", description=SUMMARY)
    p.add_argument("--hospitals", type=int, default=DEFAULT_HOSPITALS)
    p.add_argument("--payers", type=int, default=DEFAULT_PAYERS)
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help="business days")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="best of N for the fast rows")
    p.add_argument("--pyx12-seconds", type=float, default=DEFAULT_PYX12_SECONDS)
    p.add_argument(
        "--processes", type=int, default=None, help="workers of the parallel row (default: nproc)"
    )
    p.add_argument("--data", type=Path, help="use the 835/BAI2 files under DIR, generate nothing")
    p.add_argument("--fallback", action="store_true", help="replicated real samples, always")
    p.add_argument("--keep", action="store_true", help="keep the generated files (path printed)")
    p.add_argument("--profile", action="store_true", help="also cProfile remitflow's 835 parser")
    return p


def _dataset(args: argparse.Namespace, out: Path) -> Dataset:
    if args.data is not None:
        return load_dataset(args.data, f"files under {args.data}")
    if not args.fallback:
        try:
            return generated_dataset(
                out, hospitals=args.hospitals, payers=args.payers, days=args.days, seed=args.seed
            )
        except ImportError as exc:
            print(f"synthetic generator unavailable ({exc}); using the fallback data")
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
    return fallback_replicated_samples(
        out, hospitals=args.hospitals, days=args.days, seed=args.seed
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="remitflow-bench-parse-"))
    try:
        started = time.perf_counter()
        ds = _dataset(args, out)
        print(f"dataset ready in {time.perf_counter() - started:.1f} s")
        report = run_parse_benchmark(
            ds, runs=args.runs, pyx12_seconds=args.pyx12_seconds, processes=args.processes
        )
        print(format_report(report))
        if args.profile:
            print("\ncProfile of remitflow's 835 parser (one pass, by own time):")
            print(profile_remitflow_x12(ds))
    finally:
        if args.keep:
            print(f"data kept in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    return 0
