"""Continuous mode: the reconciliation dataflow from the Kafka input topics to the output topics.

``until_end`` reads the input topics to their current end and stops, with the embedded mode's
semantics (every rule decides at the end, so the outcomes equal ``reconcile`` on the same
data); otherwise it tails the topics forever, deciding certain pairs on arrival and the rest as
event time passes. Recovery is always on: a stopped or killed run resumes from its last
snapshot, and the output sinks' consumers rely on idempotency keys for what is replayed since.
"""

from __future__ import annotations

from datetime import timedelta

from bytewax.dataflow import Dataflow

from dataflows.kafka_input import kafka_parsed
from dataflows.reconcile import FlowConfig, reconcile_stream
from dataflows.runner import execute
from remitflow.settings import Settings, Topics
from sinks.kafka import KafkaRecordSink, ensure_topics


def kafka_flow(settings: Settings, config: FlowConfig, until_end: bool) -> Dataflow:
    topics = Topics(settings.topic_prefix)
    flow = Dataflow("remitflow")
    parsed = kafka_parsed(
        flow, bootstrap=settings.kafka_bootstrap, topics=list(topics.inputs), tail=not until_end
    )
    sink = KafkaRecordSink(settings.kafka_bootstrap, settings.topic_prefix)
    reconcile_stream(parsed, sink, config)
    return flow


def run_continuous(
    settings: Settings,
    config: FlowConfig,
    *,
    until_end: bool,
    processes: int = 1,
    epoch_interval: timedelta = timedelta(seconds=5),
) -> None:
    topics = Topics(settings.topic_prefix)
    sink = KafkaRecordSink(settings.kafka_bootstrap, settings.topic_prefix)
    ensure_topics(settings.kafka_bootstrap, [*topics.inputs, *sink.topics()], settings.partitions)
    flow_config = FlowConfig(config.refdata, config.settings, continuous=not until_end)
    execute(
        kafka_flow,
        (settings, flow_config, until_end),
        workers=processes,
        recovery_dir=settings.recovery_dir,
        epoch_interval=epoch_interval,
    )
