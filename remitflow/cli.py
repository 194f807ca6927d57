"""The `remitflow` command line (DESIGN.md §5).

Unusable arguments (missing paths, unreadable configuration) end with one clear line on stderr
and exit status 2; bad *data* never changes the exit status: it becomes dead letters and parse
issues in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

import orjson
from redis.exceptions import RedisError

from remitflow import __version__, logs
from remitflow.config import Config
from remitflow.events import BankTransaction, Posting, Remittance
from remitflow.identity import PhiHasher, PhiSecretMissing, phi_secret
from remitflow.records import DeadLetter, ParseIssue
from remitflow.refdata import ReferenceData, ReferenceDataError, load_reference_data
from remitflow.settings import Settings, SettingsError
from remitflow.stores import redis_client, safe_url
from sources.base import ParseContext, Parsed

if TYPE_CHECKING:
    from dataflows.continuous import Reading

EXIT_USAGE = 2
log = logging.getLogger("remitflow.cli")
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


def _phi_secret() -> bytes:
    """Commands whose output reaches a deployment hash CLP01 with its secret, never the
    development one."""
    try:
        return phi_secret(required=True)
    except PhiSecretMissing as exc:
        raise UsageError(str(exc)) from None


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _deployment_config(path: str | None, redis_url: str, prefix: str) -> Config:
    """``--config FILE`` when given; else the configuration loaded into Redis
    (``remitflow refdata load``), which every process of a deployment shares."""
    from remitflow.config import ConfigError, load_config
    from state.config_store import ConfigStore

    try:
        if path is not None:
            return load_config(path)
        try:
            stored = ConfigStore(redis_url, prefix).current()
        except RedisError as exc:
            raise OperationalError(f"Redis at {safe_url(redis_url)}: {exc}") from None
        if stored is None:
            raise UsageError(
                "no configuration: pass --config FILE, or load one into Redis with "
                "`remitflow refdata load FILE`"
            )
        print(
            f"remitflow: configuration v{stored.version} ({stored.sha256[:12]}) from Redis",
            file=sys.stderr,
        )
        return stored.parse()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _dump(item: Parsed) -> bytes:
    return orjson.dumps(item.model_dump(mode="json"))


def _cmd_parse(args: argparse.Namespace, out: IO[bytes]) -> int:
    from sources.detect import expand_paths, parse_path

    try:
        paths = expand_paths(args.paths)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    ctx = ParseContext(refdata=_load_refdata(args.config), phi=PhiHasher(_phi_secret()))
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
        summary = reconcile_files(
            paths, out_dir, config, workers=args.workers, phi_secret=_phi_secret()
        )
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

    Events are keyed by event id (the dataflow re-keys them, so any partition count works),
    ERP confirmations by idempotency key (:func:`_message_key`); parse dead letters, and
    events of another kind than ``--kind``, go to the dead-letter topic. Every message must be
    acknowledged by the broker, or the command fails.
    """
    from remitflow.events import event_to_json
    from remitflow.settings import Topics
    from sinks.kafka import DeliveryError, DeliveryTracker, ensure_topics
    from sources.detect import parse_path

    paths = _paths(args.paths, "PATH")
    settings = _settings()
    refdata, _ = _deployment_config(args.config, settings.redis_url, settings.topic_prefix)
    topics = Topics(settings.topic_prefix)
    kind, attribute = INGEST_KINDS[args.kind]
    target: str = getattr(topics, attribute)
    ctx = ParseContext(refdata=refdata, phi=PhiHasher(_phi_secret()))
    counts: Counter[str] = Counter()
    try:
        ensure_topics(settings.kafka_bootstrap, [target, topics.dead_letter], settings.partitions)
        producer = DeliveryTracker(settings.kafka_bootstrap)
        for done, path in enumerate(paths):
            if sys.stderr.isatty():  # progress for an operator; logs get the final report
                sys.stderr.write(
                    f"\ringest: file {done + 1}/{len(paths)}, {counts['events']} events, "
                    f"{sum(producer.delivered.values())} acknowledged"
                )
            log.debug("ingesting a file", extra={"file": path.name, "topic": target})
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
                    producer.send(target, _message_key(item), event_to_json(item))
                    counts["events"] += 1
        producer.flush()
    except DeliveryError as exc:
        raise OperationalError(str(exc)) from None
    finally:
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")
    report = {
        "files": len(paths),
        "topic": target,
        **counts,
        "delivered": sum(producer.delivered.values()),
    }
    out.write(orjson.dumps(report) + b"\n")
    return 0


def _message_key(event: Remittance | BankTransaction | Posting) -> bytes:
    """ERP confirmations of one journal share a partition, so they are read in the order the
    ERP sent them (which one is the duplicate must not depend on partition interleaving);
    other events spread by id (the dataflow re-keys them)."""
    if isinstance(event, Posting):
        return event.idempotency_key.encode()
    return event.event_id.encode()


def _cmd_run(args: argparse.Namespace, out: IO[bytes]) -> int:
    """The continuous dataflow on Kafka, with recovery (DESIGN.md §5).

    SIGTERM (or Ctrl-C) ends the input; the dataflow finishes its batches, commits a last
    snapshot and exits 0, and the next ``run`` resumes from there.
    """
    from dataflows.continuous import Reading
    from remitflow import metrics_server

    _check_processes(args.processes)
    if args.epoch_seconds <= 0:
        raise UsageError("--epoch-seconds must be positive")
    settings = _settings()
    config = _deployment_config(args.config, settings.redis_url, settings.topic_prefix)
    reading = Reading(tail=not args.until_end, final=args.until_end)
    # Before the dataflow: with several processes the runner only gathers the workers'
    # metrics into this endpoint when one is up.
    try:
        endpoint = metrics_server.serve(settings.metrics_port)
    except OSError as exc:
        raise OperationalError(f"metrics port {settings.metrics_port}: {exc.strerror}") from None
    log.info("metrics on %s", endpoint.url)
    try:
        stopped = _run_dataflow(
            settings,
            config,
            reading,
            processes=args.processes,
            epoch_interval=timedelta(seconds=args.epoch_seconds),
        )
    finally:
        endpoint.stop()
    if stopped:
        print("remitflow run: stopped; the next run resumes from recovery", file=sys.stderr)
    return 0


def _check_processes(processes: int) -> None:
    if not 1 <= processes <= MAX_WORKERS:
        raise UsageError(f"--processes must be between 1 and {MAX_WORKERS}")


def _run_dataflow(
    settings: Settings,
    config: Config,
    reading: Reading,
    *,
    processes: int,
    epoch_interval: timedelta = timedelta(seconds=5),
    recovery_dir: Path | None = None,
) -> bool:
    """Run the continuous dataflow; True when a signal stopped it before the end.

    Bytewax wraps what a step raised in its own runtime error: a server that refused or lost
    data is found in the causes and reported as one line (exit status 1), not a traceback.
    """
    from dataflows.continuous import run_continuous
    from dataflows.reconcile import FlowConfig
    from remitflow import shutdown
    from sinks.kafka import DeliveryError

    refdata, matching = config
    try:  # a wrong URL fails now; an outage later is waited out (remitflow.stores.retrying)
        redis_client(settings.redis_url).ping()
    except RedisError as exc:
        raise OperationalError(
            f"Redis at {safe_url(settings.redis_url)} does not answer: {type(exc).__name__}: {exc}"
        ) from None
    log.info(
        "dataflow starting (%s, %d process(es))",
        "tailing" if reading.tail else "to the end of the topics",
        processes,
        extra={"topic": settings.topic_prefix},
    )
    try:
        run_continuous(
            settings,
            FlowConfig(refdata=refdata, settings=matching),
            reading,
            processes=processes,
            epoch_interval=epoch_interval,
            recovery_dir=recovery_dir,
        )
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, DeliveryError | RedisError):
                raise OperationalError(f"{type(cause).__name__}: {cause}") from None
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, RuntimeError) and "worker process" in str(exc):
            raise OperationalError(str(exc)) from None  # the workers printed their errors
        raise
    return shutdown.requested()


def _replay_start(args: argparse.Namespace, bootstrap: str, topics: Sequence[str]) -> Reading:
    from dataflows.continuous import Reading
    from sources.kafka import offsets_at, offsets_from

    try:
        if args.from_time is not None:
            try:
                when = datetime.fromisoformat(args.from_time)
            except ValueError:
                raise UsageError(
                    f"--from-time {args.from_time!r} is not an ISO-8601 time"
                ) from None
            if when.tzinfo is None:
                raise UsageError("--from-time needs a time zone, e.g. 2026-11-20T00:00:00+00:00")
            starts = offsets_at(bootstrap, topics, when)
        elif args.from_offset == "earliest":
            starts = offsets_from(bootstrap, topics, None)
        elif args.from_offset.isascii() and args.from_offset.isdigit():
            starts = offsets_from(bootstrap, topics, int(args.from_offset))
        else:
            raise UsageError("--from-offset takes 'earliest' or an offset (a whole number)")
    except ValueError as exc:  # a topic that does not exist, an offset outside a partition
        raise UsageError(str(exc)) from None
    # Every rule decides at the end: a replay reads a backlog, where partitions advance at
    # different speeds, so deciding as event time passes would depend on the interleaving.
    return Reading(tail=False, final=True, starts=starts)


def _cmd_replay(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Re-consume the input topics from a point to their current end with a fresh recovery
    store; outcomes are regenerated, journals already posted are not posted again."""
    import shutil

    from remitflow.settings import Topics

    _check_processes(args.processes)
    settings = _settings()
    config = _deployment_config(args.config, settings.redis_url, settings.topic_prefix)
    reading = _replay_start(args, settings.kafka_bootstrap, Topics(settings.topic_prefix).inputs)
    fresh = settings.recovery_dir / f"replay-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    started = time.perf_counter()
    try:
        stopped = _run_dataflow(
            settings, config, reading, processes=args.processes, recovery_dir=fresh
        )
    finally:
        # The replay's store served only this replay (the live run keeps its own); a replay
        # that did not finish is started again from the beginning, not resumed.
        shutil.rmtree(fresh, ignore_errors=True)
    if stopped:
        raise OperationalError("stopped before the end; run the replay again")
    report = {
        "replayed_from": args.from_time or args.from_offset,
        "partitions": len(reading.starts or {}),
        "elapsed_s": round(time.perf_counter() - started, 3),
    }
    out.write(orjson.dumps(report) + b"\n")
    return 0


def _cmd_redrive(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Re-submit dead letters whose cause is fixed (remitflow.redrive)."""
    from remitflow.redrive import Redrive
    from remitflow.settings import Topics
    from sinks.kafka import DeliveryError, KafkaRecordSink

    settings = _settings()
    refdata, _ = _deployment_config(args.config, settings.redis_url, settings.topic_prefix)
    journals = KafkaRecordSink.of(settings).build("redrive", 0, 1)
    redrive = Redrive(
        settings.kafka_bootstrap,
        Topics(settings.topic_prefix),
        refdata,
        _phi_secret(),
        lambda journal: journals.write_batch([("erp_postings", journal)]),
        dry_run=args.dry_run,
    )
    try:
        counts = redrive.run(set(args.stage or ("validate", "parse", "post")))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except (DeliveryError, RedisError, TimeoutError) as exc:
        raise OperationalError(f"{type(exc).__name__}: {exc}") from None
    out.write(orjson.dumps({"dry_run": args.dry_run, **dict(sorted(counts.items()))}) + b"\n")
    return 0


def _cmd_serve(args: argparse.Namespace, out: IO[bytes]) -> int:
    """The case status API and the exceptions page (remitflow.api) until SIGTERM."""
    from remitflow.api import ServeError, serve
    from remitflow.config import ConfigError, load_config

    settings = _settings()
    try:
        config = load_config(args.config) if args.config else None
        serve(settings, host=args.host, config=config)
    except (ConfigError, ServeError) as exc:
        raise UsageError(str(exc)) from None
    return 0


def _cmd_status(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Open exceptions by age and reason, ERP journals, input lag (remitflow.status)."""
    from remitflow.status import render_status, status_report

    settings = _settings()
    try:
        report = status_report(settings)
    except RedisError as exc:
        raise OperationalError(f"Redis at {safe_url(settings.redis_url)}: {exc}") from None
    if args.json:
        out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        out.write(render_status(report).encode())
    return 0


def _cmd_refdata(args: argparse.Namespace, out: IO[bytes]) -> int:
    """Load the deployment's configuration into Redis, or show which one is there."""
    from remitflow.config import ConfigError
    from state.config_store import ConfigStore

    settings = _settings()
    store = ConfigStore(settings.redis_url, settings.topic_prefix)
    try:
        if args.action == "load":
            stored = store.load(args.file)
        else:
            found = store.current()
            if found is None:
                raise UsageError("no configuration in Redis: `remitflow refdata load FILE`")
            stored = found
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except RedisError as exc:
        raise OperationalError(f"Redis at {safe_url(settings.redis_url)}: {exc}") from None
    refdata, _ = stored.parse()
    report = {
        "version": stored.version,
        "sha256": stored.sha256,
        "origin": stored.origin,
        "loaded_at": datetime.fromtimestamp(stored.loaded_at, UTC).isoformat(),
        "entities": len(refdata.entities),
        "bank_accounts": sum(len(e.accounts) for e in refdata.entities),
        "payers": len(refdata.payers),
    }
    out.write(orjson.dumps(report) + b"\n")
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
        # The one command that runs with the development PHI secret (synthetic patients).
        summary = reconcile_files(
            paths,
            base / "output",
            FlowConfig(refdata=refdata, settings=settings),
            phi_secret=phi_secret(required=False),
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
    start = rp.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", help="'earliest', or an offset applied to every partition")
    start.add_argument(
        "--from-time", help="ISO-8601 time with zone: each partition's first message from then"
    )
    rp.add_argument("--config", help="configuration TOML (reference data, [matching])")
    rp.add_argument("--processes", type=int, default=1, help="worker processes")
    rp.set_defaults(func=_cmd_replay)

    rv = sub.add_parser(
        "redrive", help="re-submit dead letters whose cause is fixed (each one once)"
    )
    rv.add_argument(
        "--stage",
        action="append",
        choices=("validate", "parse", "post"),
        help="only these stages (repeatable; default: all three)",
    )
    rv.add_argument("--dry-run", action="store_true", help="count, re-submit nothing")
    rv.add_argument("--config", help="configuration TOML (reference data resolves entities)")
    rv.set_defaults(func=_cmd_redrive)

    sv = sub.add_parser(
        "serve", help="the case status API and the exceptions page on REMITFLOW_API_PORT"
    )
    sv.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)"
    )
    sv.add_argument("--config", help="configuration TOML (default: the one loaded into Redis)")
    sv.set_defaults(func=_cmd_serve)

    st = sub.add_parser("status", help="open exceptions by age and reason, ERP journals, input lag")
    st.add_argument("--json", action="store_true", help="the report as JSON")
    st.set_defaults(func=_cmd_status)

    rd = sub.add_parser(
        "refdata", help="the deployment's reference data and [matching], kept in Redis"
    )
    rd_sub = rd.add_subparsers(dest="action", required=True)
    rd_load = rd_sub.add_parser("load", help="check a configuration TOML and store it in Redis")
    rd_load.add_argument("file", help="configuration TOML")
    rd_sub.add_parser("show", help="which configuration Redis holds (version, digest, counts)")
    rd.set_defaults(func=_cmd_refdata)

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
    logs.configure()
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
