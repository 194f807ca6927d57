"""Continuous mode: the reconciliation dataflow from the Kafka input topics to the output topics.

Three ways to run it, one graph:

* ``run`` tails the topics forever with continuous semantics: certain pairs are decided on
  arrival, the rest as event time passes; nothing is decided just because input paused.
* ``run --until-end`` reads to the topics' current end with the embedded mode's semantics
  (everything still open is decided at the end), so its outcomes equal ``reconcile`` on the
  same files: the end-to-end check, and a month-end close.
* ``replay`` reads from an offset or a time to the current end with a fresh recovery store and
  continuous semantics, then stops: it regenerates what event time decided and leaves the
  still-open items to the live run, which holds them too (``--final`` decides them as well).

Recovery is always on: a stopped or killed run resumes from its last snapshot. Journals pass the
Redis idempotency ledger, so neither what recovery replays since that snapshot nor an operator's
replay of whole topics posts a journal twice; every record also updates the Redis case index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from confluent_kafka import OFFSET_BEGINNING

from dataflows.kafka_input import kafka_parsed
from dataflows.reconcile import FlowConfig, reconcile_stream
from dataflows.runner import execute
from remitflow.settings import Settings, Topics
from sinks.kafka import KafkaRecordSink, ensure_topics


@dataclass(frozen=True)
class Reading:
    """How the input topics are read: forever or to their current end, and from where."""

    tail: bool  # wait for new messages at the end (run) or stop there (until-end, replay)
    final: bool = False  # at the end, decide everything still open (the embedded semantics)
    starting_offset: int = OFFSET_BEGINNING  # partitions with no snapshot start here ...
    starts: Mapping[str, int] | None = None  # ... or here, per "<partition>-<topic>"


def kafka_flow(settings: Settings, config: FlowConfig, reading: Reading) -> Dataflow:
    topics = Topics(settings.topic_prefix)
    flow = Dataflow("remitflow")
    parsed = kafka_parsed(
        flow,
        bootstrap=settings.kafka_bootstrap,
        topics=list(topics.inputs),
        tail=reading.tail,
        starting_offset=reading.starting_offset,
        starts=reading.starts,
    )
    reconcile_stream(parsed, KafkaRecordSink.of(settings), config)
    return flow


def run_continuous(
    settings: Settings,
    config: FlowConfig,
    reading: Reading,
    *,
    processes: int = 1,
    epoch_interval: timedelta = timedelta(seconds=5),
    recovery_dir: Path | None = None,
) -> None:
    """Run until the input ends (or forever when tailing); SIGTERM ends it cleanly."""
    topics = Topics(settings.topic_prefix)
    sink = KafkaRecordSink(settings.kafka_bootstrap, settings.topic_prefix)
    ensure_topics(settings.kafka_bootstrap, [*topics.inputs, *sink.topics()], settings.partitions)
    execute(
        kafka_flow,
        (settings, replace(config, continuous=not reading.final), reading),
        workers=processes,
        recovery_dir=recovery_dir or settings.recovery_dir,
        epoch_interval=epoch_interval,
        graceful=True,
    )
