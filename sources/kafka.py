"""Bytewax's Kafka source, made to stop gracefully and to start anywhere per partition.

Bytewax's :class:`KafkaSource` starts every partition at one offset and has no way to stop a
tailing dataflow short of killing it. This subclass (public API only: it wraps the partitions
the parent builds) adds both: a fresh run (no recovery snapshot for a partition) starts at the
offset given for that partition, which is how ``replay --from-time`` reads from a point in
time; and a partition ends when :mod:`remitflow.shutdown` says so, so SIGTERM finishes the
dataflow with a last snapshot instead of aborting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from remitflow import shutdown
from remitflow.stores import kafka_config


class _StoppablePartition(StatefulSourcePartition[Any, int | None]):
    def __init__(self, inner: StatefulSourcePartition[Any, int | None]) -> None:
        self._inner = inner

    def next_batch(self) -> Iterable[Any]:
        if shutdown.requested():
            raise StopIteration
        return self._inner.next_batch()

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> int | None:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class KafkaInput(KafkaSource):
    """``starts`` maps Bytewax partition names (``"<partition>-<topic>"``) to first offsets."""

    def __init__(
        self,
        brokers: list[str],
        topics: list[str],
        *args: Any,
        starts: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(brokers, topics, *args, **kwargs)
        self._bootstrap = ",".join(brokers)
        self._topic_names = list(topics)
        self._starts = dict(starts or {})

    def list_parts(self) -> list[str]:
        """Every partition of every topic (listed with a plain consumer: the parent lists them
        with an admin client given the consumer settings, which librdkafka warns about)."""
        consumer = _consumer(self._bootstrap)
        try:
            return [_name(tp) for tp in _partitions(consumer, self._topic_names)]
        finally:
            consumer.close()

    def build_part(  # type: ignore[override]  # a wrapper, not bytewax's private class
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[Any, int | None]:
        if resume_state is None:  # no snapshot: this partition starts where it was asked to
            resume_state = self._starts.get(for_part)
        return _StoppablePartition(super().build_part(step_id, for_part, resume_state))


def _partitions(consumer: Consumer, topics: Iterable[str]) -> list[TopicPartition]:
    metadata = consumer.list_topics(timeout=10)
    found: list[TopicPartition] = []
    for topic in topics:
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None:
            raise ValueError(f"topic {topic} does not exist")
        found.extend(TopicPartition(topic, p) for p in sorted(meta.partitions))
    return found


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        kafka_config(bootstrap, **{"group.id": "remitflow-offsets", "enable.auto.commit": False})
    )


def _name(tp: TopicPartition) -> str:
    return f"{tp.partition}-{tp.topic}"  # Bytewax's partition name


def offsets_from(bootstrap: str, topics: Iterable[str], offset: int | None) -> dict[str, int]:
    """Per partition, ``offset`` (the first retained one when ``None``); an offset outside
    what a partition holds is an error, not a silent jump to its end."""
    consumer = _consumer(bootstrap)
    try:
        starts: dict[str, int] = {}
        for tp in _partitions(consumer, topics):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if offset is None:
                starts[_name(tp)] = low
            elif low <= offset <= high:
                starts[_name(tp)] = offset
            else:
                raise ValueError(
                    f"{tp.topic}[{tp.partition}] holds offsets {low} to {high}, not {offset}"
                )
        return starts
    finally:
        consumer.close()


def offsets_at(bootstrap: str, topics: Iterable[str], when: datetime) -> dict[str, int]:
    """Per partition, the first offset at or after ``when`` (the end when there is none).

    Kafka keeps a timestamp per message (the producer's create time by default), and
    ``offsets_for_times`` finds it per partition.
    """
    if when.tzinfo is None:
        raise ValueError("a replay time must carry its time zone")
    millis = int(when.timestamp() * 1000)
    consumer = _consumer(bootstrap)
    try:
        wanted = [
            TopicPartition(tp.topic, tp.partition, millis) for tp in _partitions(consumer, topics)
        ]
        starts: dict[str, int] = {}
        for tp in consumer.offsets_for_times(wanted, timeout=10):
            if tp.error is not None:
                raise ValueError(f"{tp.topic}[{tp.partition}]: {tp.error.str()}")
            offset = tp.offset
            if offset < 0:  # no message at or after that time: start at the current end
                _, offset = consumer.get_watermark_offsets(tp, timeout=10)
            starts[_name(tp)] = offset
        return starts
    finally:
        consumer.close()


__all__ = ["OFFSET_BEGINNING", "KafkaInput", "offsets_at", "offsets_from"]
