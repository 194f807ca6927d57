"""The `remitflow` command line (DESIGN.md §5).

Unusable arguments (missing paths, unreadable configuration) end with one clear line on stderr
and exit status 2; bad *data* never changes the exit status: it becomes dead letters and parse
issues in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO

import orjson

from remitflow import __version__
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter, ParseIssue
from remitflow.refdata import ReferenceData, ReferenceDataError, load_reference_data
from sources.base import ParseContext, Parsed

EXIT_USAGE = 2
MAX_WORKERS = 64


class UsageError(Exception):
    """An argument the command cannot use; reported as one line, exit status 2."""


class OperationalError(Exception):
    """The command could not do its work (a server refused or lost data); exit status 1."""


def _load_refdata(path: str | None) -> ReferenceData:
    if path is None:
        return ReferenceData()
    try:
        return load_reference_data(path)
    except ReferenceDataError as exc:
        raise UsageError(str(exc)) from None


def _dump(item: Parsed) -> bytes:
    return orjson.dumps(item.model_dump(mode="json"))


def _cmd_parse(args: argparse.Namespace, out: IO[bytes]) -> int:
    from sources.detect import expand_paths, parse_path

    try:
        paths = expand_paths(args.paths)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    ctx = ParseContext(refdata=_load_refdata(args.config), phi=PhiHasher())
    counts: Counter[str] = Counter()
    for path in paths:
        for item in parse_path(path, ctx):
            counts[_kind(item)] += 1
            if not args.summary:
                out.write(_dump(item))
                out.write(b"\n")
    if args.summary:
        out.write(orjson.dumps({"files": len(paths), **dict(sorted(counts.items()))}) + b"\n")
    out.flush()
    return 0


def _kind(item: Parsed) -> str:
    if isinstance(item, DeadLetter):
        return "dead_letter"
    if isinstance(item, ParseIssue):
        return "parse_issue"
    return item.kind


def _paths(values: Sequence[str], what: str) -> list[Path]:
    from sources.detect import expand_paths

    try:
        return expand_paths(values)
    except FileNotFoundError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _output_folder(value: str, inputs: Sequence[Path]) -> Path:
    """A writable folder that holds none of the inputs (outputs are rewritten on every run)."""
    out_dir = Path(value)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
        raise UsageError(f"--out {out_dir} is not a writable folder")
    resolved = out_dir.resolve()
    for path in inputs:
        if path.resolve().is_relative_to(resolved):
            raise UsageError(f"--out {out_dir} contains input {path}: choose another folder")
    return out_dir


def _cmd_reconcile(args: argparse.Namespace, out: IO[bytes]) -> int:
    """The embedded mode: the dataflow over files to end of input (DESIGN.md §5)."""
    from dataflows.embedded import reconcile_files
    from dataflows.reconcile import FlowConfig
    from remitflow.config import ConfigError, load_config

    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}")
    paths = [
        *_paths(args.remittances, "--remittances"),
        *_paths(args.bank, "--bank"),
        *_paths(args.postings or [], "--postings"),
    ]
    out_dir = _output_folder(args.out, paths)
    try:
        refdata, settings = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    config = FlowConfig(refdata=refdata, settings=settings)
    with _progress(out_dir):
        summary = reconcile_files(paths, out_dir, config, workers=args.workers)
    report = {"out": str(out_dir), "files": len(paths), **summary.as_dict()}
    out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


INGEST_KINDS = {
    "remittance": ("remittance", "remittances"),
    "bank": ("bank_transaction", "bank_transactions"),
    "posting": ("posting", "postings"),
}


def _cmd_ingest(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Parse files and produce their canonical events to the input topic of their kind.

    Events are keyed by event id (the dataflow re-keys them, so any partition count works);
    parse dead letters, and events of another kind than ``--kind``, go to the dead-letter
    topic. Every message must be acknowledged by the broker, or the command fails.
    """
    from remitflow.config import ConfigError, load_config
    from remitflow.events import event_to_json
    from remitflow.settings import Settings, Topics
    from sinks.kafka import DeliveryError, DeliveryTracker, ensure_topics
    from sources.detect import parse_path

    paths = _paths(args.paths, "PATH")
    try:
        refdata, _ = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    settings = Settings.from_env()
    topics = Topics(settings.topic_prefix)
    kind, attribute = INGEST_KINDS[args.kind]
    target: str = getattr(topics, attribute)
    ctx = ParseContext(refdata=refdata, phi=PhiHasher())
    counts: Counter[str] = Counter()
    try:
        ensure_topics(settings.kafka_bootstrap, [target, topics.dead_letter], settings.partitions)
        producer = DeliveryTracker(settings.kafka_bootstrap)
        for path in paths:
            for item in parse_path(path, ctx):
                if isinstance(item, ParseIssue):
                    counts["parse_issues"] += 1
                    continue
                if not isinstance(item, DeadLetter) and item.kind != kind:
                    item = DeadLetter.of(
                        "validate",
                        f"a {item.kind} event given to ingest --kind {args.kind}",
                        item.source,
                        event_to_json(item),
                    )
                if isinstance(item, DeadLetter):
                    producer.send(topics.dead_letter, None, _dump(item))
                    counts["dead_letters"] += 1
                else:
                    producer.send(target, item.event_id.encode(), event_to_json(item))
                    counts["events"] += 1
        producer.flush()
    except DeliveryError as exc:
        raise OperationalError(str(exc)) from None
    report = {
        "files": len(paths),
        "topic": target,
        **counts,
        "delivered": sum(producer.delivered.values()),
    }
    out.write(orjson.dumps(report) + b"\n")
    return 0


def _cmd_run(args: argparse.Namespace, out: IO[bytes]) -> int:
    """The continuous dataflow on Kafka, with recovery (DESIGN.md §5). SIGTERM stops it."""
    from dataflows.continuous import run_continuous
    from dataflows.reconcile import FlowConfig
    from remitflow.config import ConfigError, load_config
    from remitflow.settings import Settings
    from sinks.kafka import DeliveryError

    if not 1 <= args.processes <= MAX_WORKERS:
        raise UsageError(f"--processes must be between 1 and {MAX_WORKERS}")
    try:
        refdata, matching = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    settings = Settings.from_env()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # Bytewax stops at its next check; recovery resumes later

    signal.signal(signal.SIGTERM, stop)
    try:
        run_continuous(
            settings,
            FlowConfig(refdata=refdata, settings=matching),
            until_end=args.until_end,
            processes=args.processes,
            epoch_interval=timedelta(seconds=args.epoch_seconds),
        )
    except DeliveryError as exc:
        raise OperationalError(str(exc)) from None
    except KeyboardInterrupt:
        print("remitflow run: stopped; the next run resumes from recovery", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Re-consume the input topics from a point to their current end with a fresh recovery
    store; outcomes are regenerated, journals already posted are not posted again."""
    from confluent_kafka import OFFSET_BEGINNING

    from dataflows.continuous import run_continuous
    from dataflows.reconcile import FlowConfig
    from remitflow.config import ConfigError, load_config
    from remitflow.settings import Settings
    from sinks.kafka import DeliveryError

    if args.from_offset == "earliest":
        offset = OFFSET_BEGINNING
    elif args.from_offset.isdigit():
        offset = int(args.from_offset)
    else:
        raise UsageError("--from-offset takes 'earliest' or an offset (a whole number)")
    try:
        refdata, matching = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    settings = Settings.from_env()
    fresh = settings.recovery_dir / f"replay-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    try:
        run_continuous(
            settings,
            FlowConfig(refdata=refdata, settings=matching),
            until_end=True,
            starting_offset=offset,
            recovery_dir=fresh,
        )
    except DeliveryError as exc:
        raise OperationalError(str(exc)) from None
    out.write(orjson.dumps({"replayed_from": args.from_offset, "recovery": str(fresh)}) + b"\n")
    return 0


def _cmd_validate(args: argparse.Namespace, out: IO[bytes]) -> int:
    """TR3 validation with pyx12: exit 1 when any file does not conform (like a linter)."""
    from sources.detect import expand_paths
    from sources.x12.validate import ValidatorUnavailable, validate_835

    try:
        paths = expand_paths(args.paths)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    failed = 0
    for path in paths:
        try:
            report = validate_835(path)
        except ValidatorUnavailable as exc:
            raise UsageError(f"{exc}: pip install 'remitflow[validate]'") from None
        failed += not report.valid
        line = {"file": str(path), "valid": report.valid, "errors": report.errors}
        out.write(orjson.dumps(line) + b"\n")
    out.flush()
    return 1 if failed else 0


def _cmd_generate(args: argparse.Namespace, out: IO[bytes]) -> int:
    from sources.synthetic import generate_dataset

    for name in ("hospitals", "payers", "days"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    started = time.perf_counter()
    summary = generate_dataset(
        Path(args.out),
        hospitals=args.hospitals,
        payers=args.payers,
        days=args.days,
        seed=args.seed,
    )
    elapsed = time.perf_counter() - started
    report = {"out": str(args.out), "elapsed_s": round(elapsed, 3), **summary.to_dict()}
    out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _cmd_demo(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Generate a month for a mid-size network and reconcile it, embedded (no servers)."""
    from dataflows.embedded import reconcile_files
    from dataflows.reconcile import FlowConfig
    from remitflow.config import load_config
    from sources.detect import expand_paths
    from sources.synthetic import generate_dataset

    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="remitflow-demo-"))
    started = time.perf_counter()
    generated = generate_dataset(base / "input", seed=args.seed)
    generate_s = time.perf_counter() - started
    refdata, settings = load_config(base / "input" / "refdata.toml")
    inputs = base / "input"
    paths = expand_paths([inputs / "remittances", inputs / "bank", inputs / "postings"])
    with _progress(base / "output"):
        summary = reconcile_files(
            paths, base / "output", FlowConfig(refdata=refdata, settings=settings)
        )
    report = {
        "dataset": str(inputs),
        "output": str(base / "output"),
        "generated_events": generated.to_dict().get("events"),
        "generate_s": round(generate_s, 3),
        **summary.as_dict(),
    }
    out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


@contextlib.contextmanager
def _progress(out_dir: Path) -> Iterator[None]:
    """On a terminal, a line counting decided items while the dataflow runs."""
    if not sys.stderr.isatty():
        yield
        return
    stop = threading.Event()
    started = time.perf_counter()

    def report() -> None:
        audit = out_dir / "audit.jsonl"
        while not stop.wait(0.5):
            try:
                size = audit.stat().st_size
            except OSError:
                size = 0
            elapsed = time.perf_counter() - started
            sys.stderr.write(f"\rreconciling… {size / 1e6:6.1f} MB of outcomes, {elapsed:5.1f} s")
            sys.stderr.flush()

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remitflow",
        description="Streaming reconciliation of 835 remittances, bank deposits and ERP postings.",
    )
    parser.add_argument("--version", action="version", version=f"remitflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "parse",
        help="print the canonical events, dead letters and parse issues of files (JSON lines)",
    )
    p.add_argument("paths", nargs="+", help="files or folders (format detected from content)")
    p.add_argument("--config", help="reference data TOML (resolves entities)")
    p.add_argument("--summary", action="store_true", help="print only counts per kind")
    p.set_defaults(func=_cmd_parse)

    i = sub.add_parser(
        "ingest", help="parse files and produce their canonical events to the Kafka input topics"
    )
    i.add_argument("--kind", required=True, choices=sorted(INGEST_KINDS))
    i.add_argument("paths", nargs="+", help="files or folders")
    i.add_argument("--config", help="configuration TOML (reference data resolves entities)")
    i.set_defaults(func=_cmd_ingest)

    rn = sub.add_parser(
        "run", help="the continuous dataflow: Kafka input topics to output topics, recovered"
    )
    rn.add_argument("--config", help="configuration TOML (reference data, [matching])")
    rn.add_argument(
        "--until-end",
        action="store_true",
        help="read the input topics to their current end, decide everything, stop",
    )
    rn.add_argument("--processes", type=int, default=1, help="worker processes")
    rn.add_argument("--epoch-seconds", type=float, default=5.0, help="snapshot interval")
    rn.set_defaults(func=_cmd_run)

    rp = sub.add_parser(
        "replay", help="re-consume the input topics to their end; nothing is posted twice"
    )
    rp.add_argument("--from-offset", required=True, help="'earliest' or an offset")
    rp.add_argument("--config", help="configuration TOML (reference data, [matching])")
    rp.set_defaults(func=_cmd_replay)

    r = sub.add_parser(
        "reconcile", help="reconcile files end to end, embedded: the dataflow with no servers"
    )
    r.add_argument("--remittances", nargs="+", required=True, help="835 files or folders")
    r.add_argument("--bank", nargs="+", required=True, help="BAI2 / camt.053 files or folders")
    r.add_argument("--postings", nargs="*", help="ERP confirmation JSONL files or folders")
    r.add_argument("--out", required=True, help="output folder for the JSONL records")
    r.add_argument("--config", help="configuration TOML (reference data, [matching])")
    r.add_argument("--workers", type=int, default=1, help="worker processes")
    r.set_defaults(func=_cmd_reconcile)

    v = sub.add_parser(
        "validate", help="validate 835 files against the TR3 with pyx12 (extra 'validate')"
    )
    v.add_argument("paths", nargs="+", help="835 files or folders")
    v.set_defaults(func=_cmd_validate)

    g = sub.add_parser("generate", help="write a synthetic multi-hospital dataset with its truth")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--hospitals", type=int, default=4)
    g.add_argument("--payers", type=int, default=24)
    g.add_argument("--days", type=int, default=20, help="business days")
    g.add_argument("--seed", type=int, default=7)
    g.set_defaults(func=_cmd_generate)

    d = sub.add_parser("demo", help="generate a month for a mid-size network and reconcile it")
    d.add_argument("--out", help="where to write the dataset (default: a temporary folder)")
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args, sys.stdout.buffer)
    except UsageError as exc:
        print(f"remitflow {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationalError as exc:
        print(f"remitflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `remitflow parse ... | head`
        return 0
    return code
