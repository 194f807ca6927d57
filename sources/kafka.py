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
from confluent_kafka.admin import AdminClient

from remitflow import shutdown


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

    def __init__(self, *args: Any, starts: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._starts = dict(starts or {})

    def build_part(  # type: ignore[override]  # a wrapper, not bytewax's private class
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[Any, int | None]:
        if resume_state is None:  # no snapshot: this partition starts where it was asked to
            resume_state = self._starts.get(for_part)
        return _StoppablePartition(super().build_part(step_id, for_part, resume_state))


def offsets_at(bootstrap: str, topics: Iterable[str], when: datetime) -> dict[str, int]:
    """Per partition, the first offset at or after ``when`` (the end when there is none).

    Kafka keeps a timestamp per message (the producer's create time by default), and
    ``offsets_for_times`` finds it per partition; the names are Bytewax's partition names.
    """
    if when.tzinfo is None:
        raise ValueError("a replay time must carry its time zone")
    millis = int(when.timestamp() * 1000)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10)
    wanted: list[TopicPartition] = []
    for topic in topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise ValueError(f"topic {topic} does not exist")
        wanted.extend(TopicPartition(topic, p, millis) for p in sorted(found.partitions))
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "remitflow-offsets", "enable.auto.commit": 0}
    )
    try:
        found_offsets = consumer.offsets_for_times(wanted, timeout=10)
        starts: dict[str, int] = {}
        for tp in found_offsets:
            if tp.error is not None:
                raise ValueError(f"{tp.topic}[{tp.partition}]: {tp.error.str()}")
            offset = tp.offset
            if offset < 0:  # no message at or after that time: start at the current end
                _, offset = consumer.get_watermark_offsets(tp, timeout=10)
            starts[f"{tp.partition}-{tp.topic}"] = offset
        return starts
    finally:
        consumer.close()


__all__ = ["OFFSET_BEGINNING", "KafkaInput", "offsets_at"]
