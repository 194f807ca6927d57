"""Continuous mode: the reconciliation dataflow from the Kafka input topics to the output topics.

``until_end`` reads the input topics to their current end and stops, with the embedded mode's
semantics (every rule decides at the end, so the outcomes equal ``reconcile`` on the same
data); otherwise it tails the topics forever, deciding certain pairs on arrival and the rest as
event time passes. Recovery is always on: a stopped or killed run resumes from its last
snapshot. Journals pass the Redis idempotency ledger, so neither what recovery replays since
that snapshot nor an operator's replay of whole topics posts a journal twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from confluent_kafka import OFFSET_BEGINNING

from dataflows.kafka_input import kafka_parsed
from dataflows.reconcile import FlowConfig, reconcile_stream
from dataflows.runner import execute
from remitflow.settings import Settings, Topics
from sinks.erp_ledger import IdempotencyLedger
from sinks.kafka import KafkaRecordSink, ensure_topics


def kafka_flow(
    settings: Settings, config: FlowConfig, until_end: bool, starting_offset: int
) -> Dataflow:
    topics = Topics(settings.topic_prefix)
    flow = Dataflow("remitflow")
    parsed = kafka_parsed(
        flow,
        bootstrap=settings.kafka_bootstrap,
        topics=list(topics.inputs),
        tail=not until_end,
        starting_offset=starting_offset,
    )
    ledger = IdempotencyLedger(settings.redis_url, settings.topic_prefix)
    sink = KafkaRecordSink(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        ledger=ledger,
        erp_url=settings.erp_url,
        erp_token=settings.erp_token,
    )
    reconcile_stream(parsed, sink, config)
    return flow


def run_continuous(
    settings: Settings,
    config: FlowConfig,
    *,
    until_end: bool,
    processes: int = 1,
    epoch_interval: timedelta = timedelta(seconds=5),
    starting_offset: int = OFFSET_BEGINNING,
    recovery_dir: Path | None = None,
) -> None:
    """Run to the end (``until_end``) or forever; a replay passes a fresh ``recovery_dir``."""
    topics = Topics(settings.topic_prefix)
    sink = KafkaRecordSink(settings.kafka_bootstrap, settings.topic_prefix)
    ensure_topics(settings.kafka_bootstrap, [*topics.inputs, *sink.topics()], settings.partitions)
    flow_config = FlowConfig(config.refdata, config.settings, continuous=not until_end)
    execute(
        kafka_flow,
        (settings, flow_config, until_end, starting_offset),
        workers=processes,
        recovery_dir=recovery_dir or settings.recovery_dir,
        epoch_interval=epoch_interval,
    )
