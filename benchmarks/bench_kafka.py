"""remitflow on a real broker: Kafka→Kafka throughput, decision latency, replay of a month.

Every measurement runs ``dataflows.continuous.run_continuous``, the code ``remitflow run`` and
``remitflow replay`` run, against the local Kafka broker and Redis (``scripts/services.sh``;
started here when they are not up, stopped again afterwards), with recovery on.

The events are the canonical remittances and bank transactions of a generated network, parsed
once. A month of that network is ~76k of them; larger volumes are made of copies of the month,
each with its own event ids, traces and bank references (a copy is a different set of payments
with the same shape), produced to the input topics before the clock starts. So the dataflow
reads JSON messages, validates them at the boundary, matches, and writes outcome, audit and
journal records to the output topics, journals through the Redis idempotency ledger and every
record into the Redis case index: all of what a deployment does, ERP over the topic.

Rows:

* Kafka→Kafka, N processes: ``--events`` pre-loaded events read to the end with continuous
  semantics (certain pairs decided on arrival, the rest as event time passes; what is still
  open at the end stays open), 1 process, then ``--processes``; each with fresh topics and a
  fresh recovery store. The rate counts input events over the wall time from start to the last
  snapshot, start-up included. Checked: no more audit records than events.
* latency at R events/s: ``remitflow run`` tailing, in its own process, while a producer here
  sends pairs (a remittance, then later its deposit) at a steady rate for ``--latency-seconds``;
  a consumer here reads the matched topic. Decision latency is from producing the deposit (the
  counterpart that completes the pair) to reading the case that holds it. Pairs not decided
  within the drain budget are reported as such, never silently dropped from the percentiles.
* replay: ``--replay-events`` (a month of a large network) read from the earliest offset with a
  fresh recovery store and continuous semantics, as ``remitflow replay --from-offset earliest``.

Redis holds the ledger and case index of every row in a database of its own (``--redis-url``,
default db 14), emptied before and after; the topics are deleted after each row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.bench_reconcile import Corpus, generated_corpus, load_corpus
from benchmarks.common import Machine, fmt_num, fmt_ratio, markdown_table
from dataflows.continuous import Reading, run_continuous
from dataflows.reconcile import FlowConfig
from remitflow.events import Remittance, event_to_json
from remitflow.identity import normalize_trace
from remitflow.settings import Settings, Topics
from sinks.kafka import KafkaRecordSink, ensure_topics

NAME = "kafka"
SUMMARY = "Kafka→Kafka throughput (1 and N processes), decision latency, replay of a month"

GOAL_KAFKA_EVENTS_PER_S = 50_000  # per process
GOAL_SCALING = 1.8  # N=2 processes over 1
GOAL_P99_S = 0.050
ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "scripts" / "services.sh"
EPOCH_S = 5.0  # remitflow run's default
PARTITIONS = 4

Event = dict[str, Any]


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Month:
    """A month of the network as JSON-ready dicts, in file order, and its exact pairs."""

    events: list[tuple[str, Event]]  # (input topic short name, event)
    pairs: list[tuple[Event, Event]]  # (remittance, deposit) with one trace and one amount
    config: FlowConfig
    refdata: Path | None


def month_of(corpus: Corpus, root: Path) -> Month:
    events: list[tuple[str, Event]] = []
    by_trace: dict[tuple[str | None, str, str], Event] = {}
    pairs: list[tuple[Event, Event]] = []
    for items in corpus.routed:
        for item in items:
            event = orjson.loads(event_to_json(item))
            short = "remittances" if isinstance(item, Remittance) else "bank-transactions"
            events.append((short, event))
    for short, event in events:  # remittance → its deposit, by entity, trace and amount
        trace = event.get("trace_normalized")
        if not trace:
            continue
        key = (event.get("entity"), str(trace), str(event["amount"]))
        if short == "remittances":
            by_trace.setdefault(key, event)
        elif event.get("direction") == "credit" and key in by_trace:
            pairs.append((by_trace.pop(key), event))
    refdata = root / "refdata.toml"
    return Month(events, pairs, corpus.config, refdata if refdata.exists() else None)


def copy_of(event: Event, copy: int) -> Event:
    """``event`` in copy ``copy`` of the month: its own ids, traces and bank references.

    A fixed-width suffix keeps copies of different traces distinct (``12``+``0001`` can never
    be ``1200``+``01``); the normalised trace is recomputed the way parsing computes it.
    """
    if copy == 0:
        return event
    tag = f"{copy:04d}"
    out = dict(event)
    out["event_id"] = f"{event['event_id']}~{tag}"
    for name in ("trace_number", "bank_reference", "customer_reference"):
        if out.get(name):
            out[name] = f"{out[name]}{tag}"
    if out.get("trace_number"):
        out["trace_normalized"] = normalize_trace(out["trace_number"])
    return out


def volume(month: Month, events: int) -> Iterator[tuple[str, bytes, bytes]]:
    """``events`` messages (topic short name, key, value): the month, then copies of it."""
    sent = 0
    copy = 0
    while sent < events:
        for short, event in month.events:
            if sent == events:
                return
            cloned = copy_of(event, copy)
            yield short, cloned["event_id"].encode(), orjson.dumps(cloned)
            sent += 1
        copy += 1


# --- servers and topics ---------------------------------------------------------------------


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


@contextlib.contextmanager
def services(bootstrap: str, redis_url: str) -> Iterator[None]:
    """The broker and Redis: those already up, else the local ones, stopped afterwards."""
    redis_at = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    if _reachable(bootstrap.split(",")[0]) and _reachable(redis_at):
        yield
        return
    print("starting the local broker and Redis (scripts/services.sh)…", flush=True)
    subprocess.run(["bash", str(SERVICES), "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        subprocess.run(["bash", str(SERVICES), "stop"], check=False, stdout=subprocess.DEVNULL)


def fast_producer(bootstrap: str, linger_ms: int = 50) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "batch.size": 1 << 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
        }
    )


def produce_all(
    producer: Producer, topics: Topics, messages: Iterator[tuple[str, bytes, bytes]]
) -> int:
    """Produce every message and wait for the broker to acknowledge all of them."""
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    count = 0
    for short, key, value in messages:
        while True:
            try:
                producer.produce(topics.name(short), value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(300) or failed:
        raise RuntimeError(f"preloading failed: {failed[:3]} ({len(failed)} errors)")
    return count


def topic_messages(bootstrap: str, topic: str) -> int:
    """Messages a topic holds (sum of its partitions' high watermarks; nothing deleted yet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts
        )
    finally:
        consumer.close()


@dataclass
class Deployment:
    """One row's prefix, topics, recovery store and settings; removed by :meth:`close`."""

    settings: Settings
    recovery: Path

    @classmethod
    def fresh(cls, bootstrap: str, redis_url: str, work: Path) -> Deployment:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings = replace(
            Settings(),
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            redis_url=redis_url,
            partitions=PARTITIONS,
        )
        sink = KafkaRecordSink(bootstrap, prefix)
        ensure_topics(bootstrap, [*Topics(prefix).inputs, *sink.topics()], PARTITIONS)
        recovery = work / prefix
        recovery.mkdir(parents=True)
        return cls(settings, recovery)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    def close(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        prefix = f"{self.settings.topic_prefix}."
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):
                future.result()
        shutil.rmtree(self.recovery, ignore_errors=True)


# --- rows -----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    events: int
    seconds: float
    notes: str
    processes: int = 1

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def throughput_row(
    month: Month, args: argparse.Namespace, work: Path, processes: int, *, replay: bool
) -> Row:
    events = args.replay_events if replay else args.events
    deployment = Deployment.fresh(args.bootstrap, args.redis_url, work)
    try:
        started = time.perf_counter()
        produce_all(fast_producer(args.bootstrap), deployment.topics, volume(month, events))
        loaded = time.perf_counter() - started
        # Continuous semantics (certain pairs decided on arrival, the rest as event time
        # passes), stopping at the end: what a live run does with a backlog, and what a replay
        # does. --until-end would hold every item to the end and decide it all in one batch.
        reading = Reading(tail=False, final=False)
        started = time.perf_counter()
        run_continuous(
            deployment.settings,
            month.config,
            reading,
            processes=processes,
            epoch_interval=timedelta(seconds=args.epoch_seconds),
            recovery_dir=deployment.recovery,
        )
        seconds = time.perf_counter() - started
        audited = topic_messages(args.bootstrap, deployment.topics.name("audit"))
        journals = topic_messages(args.bootstrap, deployment.topics.name("erp-postings"))
    finally:
        deployment.close()
    what = "replay --from-offset earliest" if replay else "run to the end of the topics"
    # Items still open at the end stay open (a live run decides them as time passes): each
    # decided event has one audit record, and no more than that.
    check = f"{audited:,} audit records" if audited <= events else f"TOO MANY: {audited:,} audited"
    notes = (
        f"{what}, {processes} process(es), recovery on (epoch {args.epoch_seconds:g} s), "
        f"{PARTITIONS} partitions per topic; {events:,} events preloaded in {loaded:.1f} s "
        f"(not timed); {check}, {journals:,} journals; start-up included"
    )
    name = f"remitflow {'replay of a month' if replay else 'Kafka→Kafka'}, {processes} process(es)"
    return Row(name, events, seconds, notes, processes)


@dataclass
class Latency:
    rate: int
    sent_pairs: int
    decided: list[float]  # seconds, one per decided pair
    undecided: int
    achieved_rate: float

    def quantile(self, q: float) -> float | None:
        if not self.decided:
            return None
        ordered = sorted(self.decided)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_row(month: Month, args: argparse.Namespace, work: Path, rate: int) -> Latency:
    """Pairs at ``rate`` events/s into a tailing ``remitflow run``; see the module docstring."""
    deployment = Deployment.fresh(args.bootstrap, args.redis_url, work)
    env = {
        **os.environ,
        "REMITFLOW_TOPIC_PREFIX": deployment.settings.topic_prefix,
        "REMITFLOW_KAFKA_BOOTSTRAP": args.bootstrap,
        "REMITFLOW_REDIS_URL": args.redis_url,
        "REMITFLOW_RECOVERY_DIR": str(deployment.recovery),
        "REMITFLOW_METRICS_PORT": "0",
        "REMITFLOW_METRICS_ADDR": "127.0.0.1",
        "REMITFLOW_LOG_LEVEL": "WARNING",
    }
    config = ["--config", str(month.refdata)] if month.refdata else []
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remitflow",
            "run",
            *config,
            "--epoch-seconds",
            str(args.epoch_seconds),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        return _measure_latency(month, args, deployment, rate)
    finally:
        run.terminate()
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        deployment.close()


def _measure_latency(
    month: Month, args: argparse.Namespace, deployment: Deployment, rate: int
) -> Latency:
    topics = deployment.topics
    sent_at: dict[str, float] = {}  # deposit event id → when it was produced
    seen: dict[str, float] = {}
    stop = threading.Event()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.subscribe([topics.name("matched"), topics.name("variances")])  # unbalanced ERAs

    def read() -> None:
        while not stop.is_set():
            for msg in consumer.consume(1000, 0.05):
                value = msg.value()
                if msg.error() is None and value:
                    now = time.perf_counter()
                    record = orjson.loads(value)
                    for dep in record.get("bank_transactions") or ():
                        seen.setdefault(dep["event_id"], now)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = fast_producer(args.bootstrap, linger_ms=1)
    pairs = (
        (copy_of(rem, copy), copy_of(dep, copy))
        for copy in range(10_000)
        for rem, dep in month.pairs
    )
    try:
        # Warm-up: one pair, decided, before the clock starts (the run is up and assigned).
        rem, dep = next(pairs)
        for short, event in (("remittances", rem), ("bank-transactions", dep)):
            producer.produce(topics.name(short), orjson.dumps(event), event["event_id"].encode())
        producer.flush(30)
        deadline = time.monotonic() + 120
        while dep["event_id"] not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        if dep["event_id"] not in seen:
            raise RuntimeError("the run decided nothing within 120 s of its start")
        seen.clear()
        lag = max(1, rate // 20)  # a deposit follows its remittance by ~0.1 s of traffic
        waiting: list[Event] = []
        total = int(rate * args.latency_seconds) // 2
        started = time.perf_counter()
        for n in range(total):
            rem, dep = next(pairs)
            producer.produce(
                topics.name("remittances"), orjson.dumps(rem), rem["event_id"].encode()
            )
            waiting.append(dep)
            if len(waiting) > lag:
                _send_deposit(producer, topics, waiting.pop(0), sent_at)
            due = started + (2 * (n + 1)) / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            producer.poll(0)
        for dep in waiting:
            _send_deposit(producer, topics, dep, sent_at)
        achieved = 2 * total / (time.perf_counter() - started)
        producer.flush(60)
        deadline = time.monotonic() + args.drain_seconds
        while time.monotonic() < deadline and len(seen.keys() & sent_at.keys()) < len(sent_at):
            time.sleep(0.2)
    finally:
        stop.set()
        reader.join(timeout=10)
        consumer.close()
    decided = [seen[e] - t for e, t in sent_at.items() if e in seen]
    return Latency(rate, len(sent_at), decided, len(sent_at) - len(decided), achieved)


def _send_deposit(
    producer: Producer, topics: Topics, dep: Event, sent_at: dict[str, float]
) -> None:
    value = orjson.dumps(dep)
    sent_at[dep["event_id"]] = time.perf_counter()
    producer.produce(topics.name("bank-transactions"), value, dep["event_id"].encode())


# --- report ---------------------------------------------------------------------------------


def report(rows: list[Row], latencies: list[Latency]) -> list[str]:
    one = next((r for r in rows if r.processes == 1 and "Kafka→Kafka" in r.name), None)
    cells = [
        ["measurement", "events", "seconds", "events/s", "per process", "× 1 process", "notes"]
    ]
    for row in rows:
        per = row.rate / row.processes
        cells.append(
            [
                row.name,
                f"{row.events:,}",
                f"{row.seconds:.1f}",
                fmt_num(row.rate),
                fmt_num(per),
                fmt_ratio(row.rate, one.rate) if one and "Kafka→Kafka" in row.name else "—",
                row.notes,
            ]
        )
    lines = markdown_table(cells)
    if latencies:
        lines.append("")
        lat = [["decision latency", "pairs", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "notes"]]
        for m in latencies:
            ms = [m.quantile(q) for q in (0.5, 0.99, 0.999, 1.0)]
            lat.append(
                [
                    f"steady {m.rate:,} events/s",
                    f"{m.sent_pairs:,}",
                    *(f"{v * 1000:.1f}" if v is not None else "—" for v in ms),
                    f"producer achieved {m.achieved_rate:,.0f} events/s; "
                    f"{len(m.decided):,} pairs decided, {m.undecided:,} not decided within "
                    "the drain budget; deposit produced → its case read from the matched topic",
                ]
            )
        lines.extend(markdown_table(lat))
    return lines


def goals(rows: list[Row], latencies: list[Latency]) -> list[str]:
    out: list[str] = []
    kafka = {r.processes: r for r in rows if "Kafka→Kafka" in r.name}
    if 1 in kafka:
        rate = kafka[1].rate
        met = "met" if rate >= GOAL_KAFKA_EVENTS_PER_S else "NOT met"
        out.append(
            f"goal ≥ {GOAL_KAFKA_EVENTS_PER_S:,} events/s per process Kafka→Kafka with "
            f"recovery on: {rate:,.0f} ({rate / GOAL_KAFKA_EVENTS_PER_S:.0%}): {met}."
        )
    many = [p for p in kafka if p > 1]
    if 1 in kafka and many:
        p = max(many)
        scale = kafka[p].rate / kafka[1].rate
        met = "met" if scale >= GOAL_SCALING else "NOT met"
        out.append(f"goal {p} processes ≥ {GOAL_SCALING}× one: {scale:.2f}×: {met}.")
    for m in latencies:
        p99 = m.quantile(0.99)
        if p99 is not None:
            met = "met" if p99 <= GOAL_P99_S and not m.undecided else "NOT met"
            out.append(
                f"goal p99 decision latency ≤ {GOAL_P99_S * 1000:.0f} ms at {m.rate:,} "
                f"events/s: {p99 * 1000:.1f} ms: {met}."
            )
    return out


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks kafka", description=SUMMARY)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--replay-events", type=int, default=2_000_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rates", default="20000,2000", help="latency rows, events/s")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    parser.add_argument("--epoch-seconds", type=float, default=EPOCH_S, help="recovery epoch")
    parser.add_argument("--hospitals", type=int, default=40)
    parser.add_argument("--payers", type=int, default=24)
    parser.add_argument("--days", type=int, default=22)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, help="`remitflow generate` output to use")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--only", default="kafka,latency,replay", help="rows to run: kafka, latency, replay"
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.replay_events < 1 or args.processes < 1:
        parser.error("--events, --replay-events and --processes must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    os.environ.setdefault("REMITFLOW_PHI_SECRET", "benchmark-key-not-a-secret")
    machine = Machine.here()
    print(machine.describe(), flush=True)
    with tempfile.TemporaryDirectory(prefix="remitflow-bench-kafka-") as tmp:
        work = Path(tmp)
        if args.data:
            root = args.data
            corpus = load_corpus(root, f"files under {root}")
        else:
            root = work / "data"
            corpus = generated_corpus(
                root, hospitals=args.hospitals, payers=args.payers, days=args.days, seed=args.seed
            )
        month = month_of(corpus, root)
        print(
            f"data: {corpus.origin}: a month is {len(month.events):,} remittances and bank "
            f"transactions, {len(month.pairs):,} exact pairs; larger volumes are copies of it",
            flush=True,
        )
        rows: list[Row] = []
        latencies: list[Latency] = []
        with services(args.bootstrap, args.redis_url):
            store = redis.Redis.from_url(args.redis_url)
            store.flushdb(asynchronous=True)
            try:
                if "kafka" in only:
                    for processes in sorted({1, args.processes}):
                        rows.append(throughput_row(month, args, work, processes, replay=False))
                        print(f"  {rows[-1].name}: {rows[-1].rate:,.0f} events/s", flush=True)
                        store.flushdb(asynchronous=True)
                if "latency" in only:
                    for rate in (int(r) for r in args.rates.split(",") if r.strip()):
                        latencies.append(latency_row(month, args, work, rate))
                        print(f"  latency at {rate:,} events/s measured", flush=True)
                        store.flushdb(asynchronous=True)
                if "replay" in only:
                    rows.append(throughput_row(month, args, work, args.processes, replay=True))
                    print(f"  {rows[-1].name}: {rows[-1].rate:,.0f} events/s", flush=True)
            finally:
                store.flushdb(asynchronous=True)
    print()
    for line in report(rows, latencies):
        print(line)
    print()
    print(
        "events/s: input events over the wall time of the run (start-up and the last snapshot "
        "included); per process: that over the processes; decision latency: a deposit produced "
        "→ the case holding it read from the matched topic (same clock, this process)."
    )
    for line in goals(rows, latencies):
        print(line)
    return 0
