"""Reconciliation throughput: the matching logic alone, inside Bytewax, and from files to JSONL.

Every row runs in the same process, in the same run, on the same data, so the ratios mean
something on a shared, noisy machine even when the absolute numbers move. The files are parsed
into canonical events once, before anything is timed, and the in-memory rows replay exactly
those events.

Rows:

* ceiling, plain Python loop: the matching logic with no Bytewax and no output. Each remittance
  and bank transaction is routed with :class:`dataflows.routing.Router` and added to the
  :class:`state.key_state.KeyState` of its key (a dict of key → state) as ``MatchLogic`` adds it
  (file mode: nothing is decided on arrival); then one final ``Tick(latest day, final=True)``
  reaches every key, as the clock step sends it at end of input. Decisions are counted, never
  formatted.
* plain Python loop + output records (a reference, not a goal): the same loop, with every result
  turned into its outcome, audit and journal records by the dataflow's own formatter. What
  separates this row from the dataflow is Bytewax (and the ERP confirmation step, idle here).
* remitflow dataflow, in memory: the real ``build_flow`` graph, fed the same events from memory
  (one partition per input file, in batches the size of ``sources.files``'), into a sink that
  only counts, run by ``bytewax.testing.run_main`` with one worker. No parsing, no file I/O.
* the same with Bytewax recovery on: a fresh SQLite recovery store per run
  (``dataflows.runner.recovery_config``), at Bytewax's default epoch (10 s) and at
  ``--epoch-seconds`` (5 s by default, as ``remitflow run``). What it adds is the snapshots of
  every touched key and partition, pickled and written at each epoch's end and at end of input.
* the same, fed every parsed item: the postings (ERP confirmations), dead letters and parse
  issues go through their steps too.
* naive peer, Bytewax per-item state on the trace key: exact-trace matching as a Bytewax user
  would write it without remitflow (``key_on`` the normalized trace, one state per trace, an
  item at a time, no batching, what is left open at end of input unmatched). It has none of
  remitflow's other rules, so it decides differently: it is exempt from the agreement check and
  says how many items it matched against remitflow's ``trace_exact`` rule.
* remitflow reconcile end to end: ``dataflows.embedded.reconcile_files`` over the files, parsing
  included, writing the JSONL records; with 1 worker, then with N worker processes (each joins a
  local Bytewax cluster; starting the processes is part of the time).

Events per second count canonical events in: remittances and bank transactions for the rows fed
those alone, plus postings for the rows fed everything. Every row also reports how many routed
items reached a terminal outcome and in how many cases: the same logic must give the same counts,
whatever runs it.

The in-memory rows run under the embedded runner's collector settings
(``dataflows.runner.throughput_gc``: what is alive is frozen, young objects are collected less
often), so the pre-parsed input, which exists before any row starts and is not what they
measure, is never scanned. ``reconcile_files`` applies the same settings itself; the end-to-end
rows parse their own events and pay for collecting them, as a real run does.

Memory per open item: remittances with a trace of their own and no deposit stay open in their
keys' ``KeyState``. They are cloned from the dataset's items with fresh ids and traces, and
measured with ``tracemalloc`` (every byte Python allocated for them: the item, its record
fragment, its trace index and seen-id entries) and as pickled snapshots (what Bytewax writes to
its recovery store at each epoch).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import dataclasses
import gc
import io
import pickle
import pstats
import shutil
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from benchmarks.common import Machine, best_of, fmt_num, fmt_ratio, markdown_table
from dataflows.embedded import reconcile_files
from dataflows.reconcile import FlowConfig, _Formatter, build_flow
from dataflows.routing import Router
from dataflows.runner import recovery_config, throughput_gc
from matchers.payer_recognition import PayerRecognizer
from remitflow.config import load_config
from remitflow.events import BankTransaction, Remittance
from remitflow.identity import PhiHasher, normalize_trace
from sources.base import ParseContext, Parsed
from sources.detect import detect_format, expand_paths, parse_path
from sources.files import BATCH
from state.items import OpenItem, money_text
from state.key_state import Decided, KeyState, Result, Tick

NAME = "reconcile"
SUMMARY = "matching throughput: plain-loop ceiling, the dataflow in memory and from files; memory"

GOAL_EVENTS_PER_S = 100_000  # per worker
GOAL_SHARE_OF_CEILING = 0.5
GOAL_BYTES_PER_OPEN_ITEM = 2048
DEFAULT_HOSPITALS = 40
DEFAULT_PAYERS = 24
DEFAULT_DAYS = 22
DEFAULT_SEED = 7
DEFAULT_RUNS = 3
DEFAULT_E2E_RUNS = 1
DEFAULT_WORKERS = 2
DEFAULT_OPEN_ITEMS = 200_000  # ≈ 16 s here; 1,000,000 (the figure) ≈ 95 s, 3.5 GB
BYTEWAX_EPOCH_S = 10.0  # Bytewax's default epoch interval (bytewax.run)
DEFAULT_EPOCH_S = 5.0  # `remitflow run --epoch-seconds`' default
GENERATE_S_PER_HOSPITAL_DAY = 0.02  # measured: 40 hospitals × 22 days, 24 payers ≈ 17 s
PARSING = "parsing the files into canonical events (not timed; about as long as generating)…"
PHI_KEY = b"bench"
INPUT_FOLDERS = ("remittances", "bank", "postings")
ROUTED_KINDS = frozenset({"remittance", "bank_transaction"})

Routed = Remittance | BankTransaction
PeerDecision = tuple[str, tuple[str, ...], tuple[str, ...]]  # outcome, remittance/bank ids
T = TypeVar("T")

# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Corpus:
    """The input files, and every item parsed from each, in file order (parsed once, untimed)."""

    origin: str
    paths: tuple[Path, ...]
    nbytes: int
    formats: Counter[str]  # files per detected format
    parsed: tuple[tuple[Parsed, ...], ...]  # per file
    routed: tuple[tuple[Routed, ...], ...]  # per file, what the matching state sees
    kinds: Counter[str]  # parsed items by class name
    config: FlowConfig
    parse_seconds: float

    def events(self) -> int:
        """Canonical events: remittances, bank transactions and postings."""
        return self.routed_events() + self.kinds["Posting"]

    def routed_events(self) -> int:
        return self.kinds["Remittance"] + self.kinds["BankTransaction"]


def load_corpus(root: Path, origin: str) -> Corpus:
    """The files of a ``remitflow generate`` layout under ``root``, with its reference data."""
    folders = [root / name for name in INPUT_FOLDERS if (root / name).is_dir()]
    if not folders:
        raise FileNotFoundError(
            f"{root} has none of {', '.join(INPUT_FOLDERS)}/: expected `remitflow generate` output"
        )
    paths = tuple(expand_paths(folders))
    refdata_path = root / "refdata.toml"
    refdata, settings = load_config(refdata_path if refdata_path.exists() else None)
    config = FlowConfig(refdata=refdata, settings=settings)
    ctx = ParseContext(refdata=refdata, phi=PhiHasher(PHI_KEY))
    formats: Counter[str] = Counter()
    nbytes = 0
    started = time.perf_counter()
    parsed: list[tuple[Parsed, ...]] = []
    for path in paths:
        data = path.read_bytes()
        nbytes += len(data)
        formats[detect_format(data[:4096]) or "unknown"] += 1
        parsed.append(tuple(parse_path(path, ctx)))
    seconds = time.perf_counter() - started
    routed = tuple(tuple(x for x in items if isinstance(x, Routed)) for items in parsed)
    kinds = Counter(type(x).__name__ for items in parsed for x in items)
    return Corpus(origin, paths, nbytes, formats, tuple(parsed), routed, kinds, config, seconds)


def generated_corpus(out: Path, *, hospitals: int, payers: int, days: int, seed: int) -> Corpus:
    from sources.synthetic import generate_dataset

    params = f"hospitals={hospitals}, payers={payers}, days={days}, seed={seed}"
    estimate = GENERATE_S_PER_HOSPITAL_DAY * hospitals * days * payers / DEFAULT_PAYERS
    print(f"generating the dataset ({params}): about {max(1.0, estimate):.0f} s…", flush=True)
    generate_dataset(out, hospitals=hospitals, payers=payers, days=days, seed=seed)
    print(PARSING, flush=True)
    return load_corpus(out, f"sources.synthetic.generate_dataset({params})")


@contextmanager
def input_out_of_gc() -> Iterator[None]:
    """Freeze what is alive now (the pre-parsed input) out of the collector's generations."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class GcClock:
    """Wall time this process spends in the cyclic garbage collector while in the block.

    cProfile charges a collection to whatever function happens to be running when it starts,
    so it never shows up as one line of a profile; this counts it directly."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def timed_gc(once: Callable[[], T]) -> Callable[[], tuple[T, float]]:
    """``once``, returning its result with the seconds it spent collecting garbage."""

    def run() -> tuple[T, float]:
        with GcClock() as clock:
            value = once()
        return value, clock.seconds

    return run


# --- counting -------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What the matching decided: routed items given a terminal outcome, and the cases.

    A matched or variance decision is one case; an unmatched one is a case per item (as the
    output records have it). The plain loop counts results; the dataflow rows count audit
    records (one per item, with its case id). The same logic must give the same tally.
    ``rules`` (items per matched or variance rule) is counted from results only: it is what the
    naive peer's matches are compared with.
    """

    items: int = 0
    cases: int = 0
    case_ids: set[str] = field(default_factory=set)
    rules: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # items per outcome (the peer)

    def count_results(self, results: Iterable[Result]) -> None:
        for r in results:
            if isinstance(r, Decided):
                n = len(r.decision.items)
                self.items += n
                if r.decision.outcome == "unmatched":
                    self.cases += n
                else:
                    self.cases += 1
                    self.rules[r.decision.rule] += n
            else:
                self.items += 1

    def count_peer(self, decision: PeerDecision) -> None:
        outcome, remittances, deposits = decision
        n = len(remittances) + len(deposits)
        self.items += n
        self.cases += n if outcome == "unmatched" else 1
        self.outcomes[outcome] += n

    def count_audit(self, record: dict[str, Any]) -> None:
        if record["kind"] in ROUTED_KINDS:
            self.items += 1
            case = record["case_id"]
            if case is not None and case not in self.case_ids:
                self.case_ids.add(case)
                self.cases += 1

    @property
    def counts(self) -> tuple[int, int]:
        return self.items, self.cases


def audit_tally(path: Path) -> Tally:
    tally = Tally()
    if path.exists():
        with path.open("rb") as fh:
            for line in fh:
                tally.count_audit(orjson.loads(line))
    return tally


# --- rows -----------------------------------------------------------------------------------

Role = Literal["ceiling", "reference", "dataflow", "recovery", "peer", "end-to-end"]
Input = Literal["routed", "all"]  # remittances + bank transactions, or every parsed item


@dataclass(slots=True)
class Row:
    """One way of running the matching; ``seconds`` is None when it could not be measured."""

    label: str
    role: Role
    input: Input
    events: int  # canonical events in the input the time covers
    nbytes: int | None = None  # file bytes read (end-to-end rows)
    seconds: float | None = None
    gc_seconds: float | None = None  # of ``seconds``, in the garbage collector (this process)
    tally: Tally | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.seconds else None

    @property
    def mb_per_s(self) -> float | None:
        return self.nbytes / self.seconds / 1e6 if self.seconds and self.nbytes else None


def plain_loop(
    events: Iterable[Routed], config: FlowConfig, formatter: _Formatter | None = None
) -> tuple[Tally, int, int]:
    """Route, add, one final tick: ``(tally, keys, records formatted)``."""
    settings, early = config.settings, config.continuous  # as MatchLogic adds
    router = Router(PayerRecognizer(config.refdata, settings.payer_name_score), settings)
    states: dict[str, KeyState] = {}
    tally = Tally()
    records = 0
    latest: date | None = None
    for event in events:
        key, item = router.route(event)
        state = states.get(key)
        if state is None:
            state = states[key] = KeyState()
        results = state.add(item, settings, early=early)
        tally.count_results(results)
        if formatter is not None:
            for result in results:
                records += len(formatter((key, result)))
        if latest is None or item.day > latest:
            latest = item.day
    if latest is not None:
        tick = Tick(latest, final=True)
        for key, state in states.items():
            results = state.advance(tick, settings)
            tally.count_results(results)
            if formatter is not None:
                for result in results:
                    records += len(formatter((key, result)))
    return tally, len(states), records


def ceiling_row(corpus: Corpus, runs: int) -> Row:
    events = [e for items in corpus.routed for e in items]
    row = Row("ceiling: plain Python loop", "ceiling", "routed", len(events))
    row.seconds, ((row.tally, keys, _), row.gc_seconds) = best_of(
        runs, timed_gc(lambda: plain_loop(events, corpus.config))
    )
    row.notes.append(
        f"Router.route + KeyState.add per event, a final Tick to each of {keys:,} keys; "
        f"no output; best of {runs}"
    )
    return row


def records_reference_row(corpus: Corpus, runs: int) -> Row:
    events = [e for items in corpus.routed for e in items]
    formatter = _Formatter(corpus.config.refdata)
    row = Row("plain Python loop + output records", "reference", "routed", len(events))
    row.seconds, ((row.tally, _, records), row.gc_seconds) = best_of(
        runs, timed_gc(lambda: plain_loop(events, corpus.config, formatter))
    )
    row.notes.append(
        f"the ceiling's loop + the dataflow's formatter on every result ({records:,} outcome, "
        f"audit and journal records, not serialised); best of {runs}"
    )
    return row


class _ListPartition(StatefulSourcePartition[T, int]):
    def __init__(self, items: Sequence[T], resume: int | None) -> None:
        self._items = items
        self._next = resume or 0

    def next_batch(self) -> list[T]:
        if self._next >= len(self._items):
            raise StopIteration
        batch = list(self._items[self._next : self._next + BATCH])
        self._next += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._next


class MemorySource(FixedPartitionedSource[T, int]):
    """Pre-parsed items, one partition per input file, in batches of ``sources.files.BATCH``:
    the partitions and batches the dataflow gets from files, without parsing them. A partition's
    snapshot is the index of its next item (a picklable int) and ``build_part`` resumes there,
    so the source also runs with recovery on."""

    def __init__(self, per_file: Sequence[Sequence[T]]) -> None:
        self._parts = {f"{i:06d}": items for i, items in enumerate(per_file) if items}

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _ListPartition[T]:
        return _ListPartition(self._parts[for_part], resume_state)


class _CountingPartition(StatelessSinkPartition[tuple[str, dict[str, Any]]]):
    def __init__(self, sink: CountingSink) -> None:
        self._sink = sink

    def write_batch(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        records, tally = self._sink.records, self._sink.tally
        for stem, record in items:
            records[stem] += 1
            if stem == "audit":
                tally.count_audit(record)


class CountingSink(DynamicSink[tuple[str, dict[str, Any]]]):
    """Counts records per output file and tallies the audit; writes nothing (one process)."""

    def __init__(self) -> None:
        self.records: Counter[str] = Counter()
        self.tally = Tally()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition(self)


def run_in_memory(
    per_file: Sequence[Sequence[Parsed]],
    config: FlowConfig,
    *,
    recovery: RecoveryConfig | None = None,
    epoch: timedelta | None = None,
) -> CountingSink:
    sink = CountingSink()
    flow = build_flow("bench-reconcile", MemorySource(per_file), sink, config)
    run_main(flow, epoch_interval=epoch, recovery_config=recovery)  # type: ignore[no-untyped-call]
    return sink


def dataflow_row(corpus: Corpus, runs: int, fed: Input) -> Row:
    per_file: Sequence[Sequence[Parsed]] = corpus.routed if fed == "routed" else corpus.parsed
    if fed == "routed":
        row = Row(
            "remitflow dataflow, in memory, 1 worker", "dataflow", fed, corpus.routed_events()
        )
    else:
        label = "remitflow dataflow, in memory, 1 worker, every parsed item"
        row = Row(label, "dataflow", fed, corpus.events())
    row.seconds, (sink, row.gc_seconds) = best_of(
        runs, timed_gc(lambda: run_in_memory(per_file, corpus.config))
    )
    row.tally = sink.tally
    what = "remittances and bank transactions" if fed == "routed" else "every parsed item"
    row.notes.append(
        f"build_flow fed {what} from memory ({len(per_file):,} partitions, batches of {BATCH}), "
        f"{sum(sink.records.values()):,} records counted, nothing written; run_main; best of {runs}"
    )
    if fed == "all":
        kinds = corpus.kinds
        row.notes.append(
            f"incl. {kinds['Posting']:,} postings; {kinds['DeadLetter']:,} dead letters and "
            f"{kinds['ParseIssue']:,} parse issues also flow, not counted as events"
        )
    return row


def recovery_row(corpus: Corpus, runs: int, epoch_s: float, scratch: Path) -> Row:
    """The in-memory dataflow row with Bytewax recovery on, at an epoch of ``epoch_s``.

    Each run gets a fresh store, made before the clock starts (as ``remitflow run`` makes it
    before the flow): a store left by an earlier run would resume at its end of input."""
    epoch = timedelta(seconds=epoch_s)
    why = {BYTEWAX_EPOCH_S: "Bytewax's default", DEFAULT_EPOCH_S: "remitflow run's default"}
    label = f"remitflow dataflow, in memory, 1 worker, recovery on (epoch {epoch_s:g} s)"
    row = Row(label, "recovery", "routed", corpus.routed_events())
    stores = [scratch / f"recovery-{epoch_s:g}s-{n}" for n in range(max(1, runs))]
    prepared = iter([(store, recovery_config(store, 1)) for store in stores])

    def once() -> tuple[CountingSink, Path]:
        store, recovery = next(prepared)
        return run_in_memory(corpus.routed, corpus.config, recovery=recovery, epoch=epoch), store

    row.seconds, ((sink, store), row.gc_seconds) = best_of(runs, timed_gc(once))
    row.tally = sink.tally
    written = sum(f.stat().st_size for f in store.iterdir())
    shorter = row.seconds is not None and row.seconds < epoch_s
    row.notes.append(
        f"the row above with Bytewax recovery: a fresh SQLite store per run "
        f"(recovery_config(dir, 1)), epoch_interval {epoch_s:g} s"
        f"{f' ({why[epoch_s]})' if epoch_s in why else ''}; "
        + (
            "shorter than one epoch, so snapshots are taken once, at end of input; "
            if shorter
            else ""
        )
        + f"{written / 1e6:.1f} MB in the store after the run; best of {runs}"
    )
    return row


# --- naive peer -----------------------------------------------------------------------------

PeerState = tuple[list[Remittance], list[BankTransaction]]  # open on one trace, oldest first


def peer_trace(event: Routed) -> str:
    """The plain normalized trace: no entity, payer, check number or amount in the key."""
    return normalize_trace(event.trace_number)


def _pair(rem: Remittance, dep: BankTransaction) -> PeerDecision:
    outcome = "matched" if rem.amount == dep.amount else "variance"
    return outcome, (rem.event_id,), (dep.event_id,)


def match_on_trace(
    state: PeerState | None, event: Routed
) -> tuple[PeerState | None, PeerDecision | None]:
    """A ``stateful_map`` mapper: one event of a trace in, at most one decision out.

    An event pairs with the oldest open item of the other side of its trace (equal amounts:
    matched, else variance); with none open, it waits. A traceless event cannot pair: it is
    unmatched at once. The state is dropped (``None``) when nothing is left open."""
    if not event.trace_number:
        rem_ids, dep_ids = (
            ((event.event_id,), ()) if isinstance(event, Remittance) else ((), (event.event_id,))
        )
        return state, ("unmatched", rem_ids, dep_ids)
    rems, deps = state if state is not None else ([], [])
    decision: PeerDecision | None = None
    if isinstance(event, Remittance):
        if deps:
            decision = _pair(event, deps.pop(0))
        else:
            rems.append(event)
    elif rems:
        decision = _pair(rems.pop(0), event)
    else:
        deps.append(event)
    return ((rems, deps) if rems or deps else None), decision


class TraceLogic(StatefulLogic[Routed, PeerDecision, PeerState]):
    """``op.stateful_map(match_on_trace)`` plus an end-of-input flush.

    ``op.stateful_map`` is ``op.stateful`` with a logic whose ``on_item`` calls the mapper on
    each item and keeps what it returns: that logic cannot see end of input, so what is still
    open could never be reported unmatched. This is the same logic (one item at a time, no
    batching, the state deep-copied at snapshots as stateful_map's is) with an ``on_eof`` that
    emits every item left open as unmatched: the simplest honest way to close the books, and no
    extra step per item (a downstream ``fold_final`` would add one)."""

    def __init__(self, resume: PeerState | None) -> None:
        self.state = resume

    def on_item(self, value: Routed) -> tuple[list[PeerDecision], bool]:
        self.state, decision = match_on_trace(self.state, value)
        return ([decision] if decision is not None else []), self.state is None

    def on_eof(self) -> tuple[list[PeerDecision], bool]:
        rems, deps = self.state if self.state is not None else ([], [])
        out: list[PeerDecision] = [("unmatched", (r.event_id,), ()) for r in rems]
        out.extend(("unmatched", (), (d.event_id,)) for d in deps)
        return out, StatefulLogic.DISCARD

    def snapshot(self) -> PeerState:
        assert self.state is not None
        return copy.deepcopy(self.state)


class _PeerPartition(StatelessSinkPartition[tuple[str, PeerDecision]]):
    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def write_batch(self, items: list[tuple[str, PeerDecision]]) -> None:
        for _, decision in items:
            self._tally.count_peer(decision)


class PeerSink(DynamicSink[tuple[str, PeerDecision]]):
    """Tallies the peer's decisions; writes nothing (one process)."""

    def __init__(self) -> None:
        self.tally = Tally()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PeerPartition:
        return _PeerPartition(self.tally)


def peer_flow(per_file: Sequence[Sequence[Routed]], sink: PeerSink) -> Dataflow:
    flow = Dataflow("bench-naive-peer")
    events = op.input("events", flow, MemorySource(per_file))
    keyed = op.key_on("trace", events, peer_trace)
    decisions = op.stateful("match_on_trace", keyed, TraceLogic)
    op.output("decisions", decisions, sink)
    return flow


def run_peer(per_file: Sequence[Sequence[Routed]]) -> PeerSink:
    sink = PeerSink()
    run_main(peer_flow(per_file, sink))  # type: ignore[no-untyped-call]
    return sink


def peer_row(corpus: Corpus, runs: int, remitflow: Tally | None) -> Row:
    label = "naive peer: Bytewax stateful_map on the trace key, 1 worker"
    row = Row(label, "peer", "routed", corpus.routed_events())
    row.seconds, (sink, row.gc_seconds) = best_of(runs, timed_gc(lambda: run_peer(corpus.routed)))
    row.tally = t = sink.tally
    row.notes.append(
        f"op.input (the same partitions and batches) → key_on normalize_trace(trace) → "
        f"op.stateful with a stateful_map mapper per item + an on_eof flush → a counting sink; "
        f"decisions are tuples of ids, no records; best of {runs}"
    )
    line = (
        f"it matched {t.outcomes['matched']:,} items, {t.outcomes['variance']:,} in variance, "
        f"{t.outcomes['unmatched']:,} unmatched"
    )
    if remitflow is not None:
        line += (
            f"; remitflow's trace_exact rule matched {remitflow.rules['trace_exact']:,} items "
            f"(and trace_normalized {remitflow.rules['trace_normalized']:,}, check_number "
            f"{remitflow.rules['check_number']:,}); none of remitflow's other rules, so not "
            "checked against the ceiling"
        )
    row.notes.append(line)
    return row


def end_to_end_row(corpus: Corpus, runs: int, workers: int, scratch: Path) -> Row:
    label = f"remitflow reconcile end to end (files → JSONL), {workers} worker"
    row = Row(label + ("s" if workers > 1 else ""), "end-to-end", "all", corpus.events())
    row.nbytes = corpus.nbytes
    out = scratch / f"reconcile-{workers}"
    try:
        for _ in range(max(1, runs)):
            # Frozen first, so that the collection reconcile_files starts with (timed) does not
            # walk the benchmark's input; it unfreezes everything when it returns.
            with input_out_of_gc(), GcClock() as clock:
                summary = reconcile_files(
                    corpus.paths, out, corpus.config, workers=workers, phi_secret=PHI_KEY
                )
            if row.seconds is None or summary.elapsed_s < row.seconds:
                row.seconds = summary.elapsed_s  # the flow's run, without reading the summary
                row.gc_seconds = clock.seconds if workers == 1 else None  # else in the workers
    except RuntimeError as exc:  # a worker process died: the row says so, the others stand
        row.notes.append(f"failed: {exc}")
        return row
    row.tally = audit_tally(out / "audit.jsonl")
    written = sum(p.stat().st_size for p in out.glob("*.jsonl"))
    how = "reconcile_files: parse + match + JSONL" + (
        f", {workers} spawned processes in a local cluster (start-up included)"
        if workers > 1
        else ""
    )
    row.notes.append(
        f"{how}; {len(corpus.paths):,} files in, {written / 1e6:.1f} MB of JSONL out; "
        + (f"best of {runs}" if runs > 1 else "one run")
    )
    return row


# --- memory per open item -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenItemMemory:
    items: int  # open items measured
    keys: int
    traced_bytes: int  # tracemalloc: every byte allocated for the items and their state
    pickled_bytes: int  # pickle.dumps of every key's snapshot
    seconds: float

    @property
    def bytes_per_item(self) -> float:
        return self.traced_bytes / self.items

    @property
    def pickled_per_item(self) -> float:
        return self.pickled_bytes / self.items


def _own(text: str) -> str:
    """A copy of ``text`` that is a new object, as a parser would allocate for each event."""
    return text.encode().decode()


def _own_day(day: date) -> date:
    return date.fromordinal(day.toordinal())


def _clone(template: OpenItem, n: int) -> OpenItem:
    """``template`` as a new remittance: its own id and trace (so it stays open) and its own
    strings, numbers and dates, as parsing and routing allocate them for every event. Only what
    a real run shares too stays shared: the key's entity and payer, the file name and system."""
    event_id = f"rem-{n:032x}"  # the shape of a content id
    trace = f"9{n:09d}"
    cents = template.cents + 1 + n % 997  # an int object of its own, as a parsed amount is
    source = dict(template.ref["source"])
    source["record"] = f"ST {n % 10_000:04d}"
    source["offset"] = 1_000_000 + n
    payer_id = _own(template.payer_id) if template.payer_id else None
    ref = {
        "event_id": event_id,
        "trace_number": trace,
        "payer_id": payer_id,
        "amount": money_text(cents),
        "source": source,
    }
    return dataclasses.replace(
        template,
        event_id=event_id,
        cents=cents,
        claims_paid_cents=template.claims_paid_cents + cents - template.cents,
        day=_own_day(template.day),
        deadline=_own_day(template.deadline),
        trace=trace,
        trace_key=normalize_trace(trace),
        payer_id=payer_id,
        ref=ref,
    )


def measure_open_items(corpus: Corpus, count: int = DEFAULT_OPEN_ITEMS) -> OpenItemMemory | None:
    """``count`` open remittances in their keys' states (no deposits, so none can match)."""
    settings = corpus.config.settings
    router = Router(PayerRecognizer(corpus.config.refdata, settings.payer_name_score), settings)
    templates: list[tuple[str, OpenItem]] = []
    for items in corpus.routed:
        for event in items:
            if isinstance(event, Remittance) and event.expects_cash and event.balanced:
                templates.append(router.route(event))
    if not templates or count < 1:
        return None
    states: dict[str, KeyState] = {}
    gc.collect()
    started = time.perf_counter()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(count):
            key, template = templates[n % len(templates)]
            state = states.get(key)
            if state is None:
                state = states[key] = KeyState()
            state.add(_clone(template, n), settings, early=False)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    open_items = sum(s.open_items for s in states.values())
    pickled = sum(len(pickle.dumps(s.snapshot())) for s in states.values())
    return OpenItemMemory(open_items, len(states), traced, pickled, seconds)


# --- report ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ReconcileReport:
    machine: Machine
    corpus: Corpus
    rows: list[Row]
    memory: OpenItemMemory | None

    def row(self, role: Role, fed: Input = "routed") -> Row | None:
        return next((r for r in self.rows if r.role == role and r.input == fed), None)


def run_reconcile_benchmark(
    corpus: Corpus,
    *,
    runs: int = DEFAULT_RUNS,
    e2e_runs: int = DEFAULT_E2E_RUNS,
    workers: int = DEFAULT_WORKERS,
    open_items: int = DEFAULT_OPEN_ITEMS,
    epoch_seconds: float = DEFAULT_EPOCH_S,
    scratch: Path | None = None,
) -> ReconcileReport:
    """Every row, on the same corpus, in this run."""
    own_scratch = scratch is None
    where = Path(tempfile.mkdtemp(prefix="remitflow-bench-out-")) if scratch is None else scratch
    try:
        with throughput_gc():  # the embedded runner's collector settings, input frozen
            rows = [
                ceiling := ceiling_row(corpus, runs),
                records_reference_row(corpus, runs),
                dataflow_row(corpus, runs, "routed"),
                recovery_row(corpus, runs, BYTEWAX_EPOCH_S, where),
            ]
            if epoch_seconds > 0 and epoch_seconds != BYTEWAX_EPOCH_S:
                rows.append(recovery_row(corpus, runs, epoch_seconds, where))
            rows.append(dataflow_row(corpus, runs, "all"))
            rows.append(peer_row(corpus, runs, ceiling.tally))
        rows.append(end_to_end_row(corpus, e2e_runs, 1, where))
        if workers > 1:
            rows.append(end_to_end_row(corpus, e2e_runs, workers, where))
        memory = measure_open_items(corpus, open_items)
    finally:
        if own_scratch:
            shutil.rmtree(where, ignore_errors=True)
    return ReconcileReport(Machine.here(), corpus, rows, memory)


COLUMNS = (
    "implementation",
    "events/s",
    "MB/s",
    "÷ ceiling",
    "remitflow ×",
    "seconds",
    "of which GC",
    "items decided",
    "cases",
    "notes",
)


def table_rows(report: ReconcileReport) -> list[list[str]]:
    ceiling, flow = report.row("ceiling"), report.row("dataflow")
    top = ceiling.events_per_s if ceiling else None
    ours = flow.events_per_s if flow else None
    cells = [list(COLUMNS)]
    for r in report.rows:
        cells.append(
            [
                r.label,
                fmt_num(r.events_per_s) if r.events_per_s else "not available",
                fmt_num(r.mb_per_s),
                fmt_ratio(r.events_per_s, top) if r.input == "routed" else "—",
                fmt_ratio(ours, r.events_per_s) if r.role == "peer" else "—",
                f"{r.seconds:.2f}" if r.seconds else "—",
                f"{r.gc_seconds:.2f}" if r.gc_seconds is not None else "—",
                f"{r.tally.items:,}" if r.tally else "—",
                f"{r.tally.cases:,}" if r.tally else "—",
                "; ".join(r.notes),
            ]
        )
    return cells


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def goal_lines(report: ReconcileReport) -> list[str]:
    lines: list[str] = []
    ceiling, flow = report.row("ceiling"), report.row("dataflow")
    if flow is not None and flow.events_per_s:
        rate = flow.events_per_s
        lines.append(
            f"goal ≥ {GOAL_EVENTS_PER_S:,} events/s per worker: {flow.label} at {rate:,.0f} "
            f"events/s ({rate / GOAL_EVENTS_PER_S:.0%} of it): "
            f"{_verdict(rate >= GOAL_EVENTS_PER_S)}."
        )
        if ceiling is not None and ceiling.events_per_s:
            share = rate / ceiling.events_per_s
            lines.append(
                f"goal ≥ {GOAL_SHARE_OF_CEILING:.0%} of the plain-loop ceiling "
                f"({ceiling.events_per_s:,.0f} events/s): the dataflow reaches {share:.0%}: "
                f"{_verdict(share >= GOAL_SHARE_OF_CEILING)}."
            )
    m = report.memory
    if m is not None:
        lines.append(
            f"goal ≤ {GOAL_BYTES_PER_OPEN_ITEM:,} bytes per open item: {m.items:,} open "
            f"remittances in {m.keys:,} keys take {m.bytes_per_item:,.0f} bytes each in memory "
            f"(tracemalloc) and {m.pickled_per_item:,.0f} bytes each pickled in a snapshot: "
            f"{_verdict(m.bytes_per_item <= GOAL_BYTES_PER_OPEN_ITEM)}."
        )
    if ceiling is not None and ceiling.tally is not None:
        expected = ceiling.tally.counts
        judged = [r for r in report.rows if r.tally is not None and r.role != "peer"]
        differ = [r for r in judged if r.tally is not None and r.tally.counts != expected]
        for r in differ:
            assert r.tally is not None
            lines.append(
                f"MISMATCH: {r.label} decided {r.tally.items:,} items in {r.tally.cases:,} "
                f"cases; the ceiling {expected[0]:,} in {expected[1]:,}."
            )
        if not differ:
            but = " but the naive peer" if len(judged) < len(report.rows) else ""
            lines.append(
                f"every row{but} decided the same {expected[0]:,} items in {expected[1]:,} cases."
            )
    return lines


def format_report(report: ReconcileReport) -> str:
    c = report.corpus
    k = c.kinds
    files = ", ".join(f"{n:,} {fmt}" for fmt, n in sorted(c.formats.items()))
    lines = [
        report.machine.describe(),
        f"data: {c.origin}",
        f"  {len(c.paths):,} files ({files}), {c.nbytes / 1e6:.2f} MB; {c.events():,} events: "
        f"{k['Remittance']:,} remittances, {k['BankTransaction']:,} bank transactions, "
        f"{k['Posting']:,} postings; {k['DeadLetter']:,} dead letters, "
        f"{k['ParseIssue']:,} parse issues; parsed in {c.parse_seconds:.1f} s beforehand "
        "(not timed, except end to end)",
        "",
        *markdown_table(table_rows(report)),
        "",
        "events/s: canonical events in per second of wall time (remittances + bank transactions,",
        "and postings for the rows fed every item); MB/s: input file bytes (10^6) per second;",
        "÷ ceiling: share of the plain-loop rate over the same events (one core); remitflow ×:",
        "the in-memory dataflow's rate over the peer's; items decided: remittances and bank",
        "transactions given a terminal outcome; cases: a matched or variance decision is one, an",
        "unmatched decision one per item (the peer's by its own, trace-only rule); of which GC:",
        "seconds spent in the cyclic garbage collector (gc.callbacks; not measurable inside worker",
        "processes). Every row runs under the embedded runner's collector settings",
        "(throughput_gc).",
        *goal_lines(report),
    ]
    return "\n".join(lines)


def profile_dataflow(corpus: Corpus, top: int = 30) -> str:
    """cProfile of one in-memory dataflow run over the routed events, by own time."""
    profiler = cProfile.Profile()
    with throughput_gc(), GcClock() as clock:
        profiler.enable()
        run_in_memory(corpus.routed, corpus.config)
        profiler.disable()
    out = io.StringIO()
    out.write(
        f"garbage collection: {clock.seconds:.2f} s in {clock.collections:,} collections, "
        "charged by cProfile to whichever functions were running when they started\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    return out.getvalue()


# --- command line ---------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks reconcile", description=SUMMARY)
    p.add_argument("--hospitals", type=int, default=DEFAULT_HOSPITALS)
    p.add_argument("--payers", type=int, default=DEFAULT_PAYERS)
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help="business days")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="best of N for in-memory rows")
    p.add_argument(
        "--e2e-runs", type=int, default=DEFAULT_E2E_RUNS, help="best of N for end-to-end rows"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="worker processes of the second end-to-end row (below 2: no such row)",
    )
    p.add_argument(
        "--open-items",
        type=int,
        default=DEFAULT_OPEN_ITEMS,
        help="open items to measure memory (the issue's figure: 1000000, about 95 s and 3.5 GB)",
    )
    p.add_argument(
        "--epoch-seconds",
        type=float,
        default=DEFAULT_EPOCH_S,
        help="epoch of the second recovery row, as `remitflow run --epoch-seconds` (0: no such "
        f"row; the first runs at Bytewax's default, {BYTEWAX_EPOCH_S:g} s)",
    )
    p.add_argument(
        "--data", type=Path, help="use `remitflow generate` output in DIR, generate none"
    )
    p.add_argument("--keep", action="store_true", help="keep the generated files (path printed)")
    p.add_argument("--profile", action="store_true", help="also cProfile the in-memory dataflow")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="remitflow-bench-reconcile-"))
    try:
        started = time.perf_counter()
        if args.data is not None:
            print(PARSING, flush=True)
            corpus = load_corpus(args.data, f"files under {args.data}")
        else:
            corpus = generated_corpus(
                out, hospitals=args.hospitals, payers=args.payers, days=args.days, seed=args.seed
            )
        print(f"dataset ready in {time.perf_counter() - started:.1f} s", flush=True)
        report = run_reconcile_benchmark(
            corpus,
            runs=args.runs,
            e2e_runs=args.e2e_runs,
            workers=args.workers,
            open_items=args.open_items,
            epoch_seconds=args.epoch_seconds,
            scratch=out / "runs",
        )
        print(format_report(report))
        if args.profile:
            print("\ncProfile of the in-memory dataflow (one run, by own time):")
            print(profile_dataflow(corpus))
    finally:
        if args.keep:
            print(f"data kept in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    return 0
