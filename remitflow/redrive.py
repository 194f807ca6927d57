"""Re-submitting dead letters once their cause is fixed (``remitflow redrive``).

A dead letter keeps its original bytes, so it can go round again:

* ``validate``: a message that was not a canonical event (or an event ingested with the wrong
  ``--kind``) is checked again and, if it is an event now, produced to its kind's input topic;
* ``parse``: the unreadable part of a file is parsed again (a fixed parser, a corrected
  file fragment) and the events it yields are produced to their input topics;
* ``post``: a journal the ERP did not take goes through the ERP sink again (ledger first, so
  a journal posted meanwhile is not posted twice; one the ERP still refuses is dead-lettered
  again by the sink, with the new reason).

What still fails to validate or parse stays where it is and is counted, never re-queued; a
redrive reads to the end the topic had when it started, so it cannot loop.
Progress is the ``<prefix>.redrive`` consumer group's committed offsets on the dead-letter
topic, committed after what a batch re-submitted is acknowledged: each dead letter is redriven
once (a crash in between re-submits a batch, which event ids and the ledger absorb).
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition
from pydantic import ValidationError

from remitflow.events import BankTransaction, Posting, Remittance, event_from_json, event_to_json
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter
from remitflow.refdata import ReferenceData
from remitflow.settings import Topics
from remitflow.stores import kafka_config
from sinks.kafka import DeliveryTracker
from sources.base import ParseContext
from sources.detect import parse_stream

Event = Remittance | BankTransaction | Posting
Resubmit = Callable[[dict[str, Any]], None]  # a journal back through the ERP sink


def _topic_of(event: Event, topics: Topics) -> str:
    if isinstance(event, Remittance):
        return topics.remittances
    if isinstance(event, BankTransaction):
        return topics.bank_transactions
    return topics.postings


def _key(event: Event) -> bytes:
    # As ingest keys them: a journal's confirmations share a partition.
    return (event.idempotency_key if isinstance(event, Posting) else event.event_id).encode()


class Redrive:
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        refdata: ReferenceData,
        phi_secret: bytes,
        post_journal: Resubmit,
        *,
        dry_run: bool = False,
        timeout_s: float = 300.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._ctx = ParseContext(refdata=refdata, phi=PhiHasher(phi_secret))
        self._post = post_journal
        self._dry_run = dry_run
        self._timeout_s = timeout_s
        self._producer = DeliveryTracker(bootstrap)
        self.counts: Counter[str] = Counter()

    def run(self, stages: set[str]) -> Counter[str]:
        """Every dead letter from the group's position to the topic's current end."""
        consumer = Consumer(
            kafka_config(
                self._bootstrap,
                **{
                    "group.id": f"{self._topics.prefix}.redrive",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                },
            )
        )
        topic = self._topics.dead_letter
        try:
            ends = self._ends(consumer, topic)
            consumer.assign(
                [TopicPartition(topic, p) for p in ends]  # committed offsets, else earliest
            )
            deadline = time.monotonic() + self._timeout_s
            while ends:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: not read to its end in {self._timeout_s} s")
                done: list[TopicPartition] = []
                for msg in consumer.consume(500, timeout=0.5):
                    if msg.error() is not None:
                        continue
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    if partition not in ends:
                        continue
                    self._one(msg.value() or b"", stages)
                    done.append(TopicPartition(topic, partition, offset + 1))
                    if offset + 1 >= ends[partition]:
                        del ends[partition]
                if done:
                    self._producer.flush()  # acknowledged before the position moves
                    if not self._dry_run:
                        consumer.commit(offsets=done, asynchronous=False)
        finally:
            consumer.close()
        return self.counts

    @staticmethod
    def _ends(consumer: Consumer, topic: str) -> dict[int, int]:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ValueError(f"topic {topic} does not exist")
        ends: dict[int, int] = {}
        committed = consumer.committed([TopicPartition(topic, p) for p in meta.partitions], 10)
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = tp.offset if tp.offset >= 0 else low
            if start < high:
                ends[tp.partition] = high
        return ends

    def _one(self, raw: bytes, stages: set[str]) -> None:
        try:
            letter = DeadLetter.model_validate_json(raw)
        except ValidationError:
            self.counts["unreadable"] += 1  # not a dead letter record: leave it
            return
        if letter.stage not in stages:
            self.counts["skipped"] += 1
            return
        payload = letter.original()
        if letter.stage == "validate":
            self._validate(payload)
        elif letter.stage == "parse":
            self._parse(payload, letter.source.file)
        elif letter.stage == "post":
            self._journal(payload)
        else:
            self.counts["skipped"] += 1

    def _validate(self, payload: bytes) -> None:
        try:
            event = event_from_json(payload)
        except ValueError:  # ValidationError and orjson's JSONDecodeError alike
            self.counts["still_failing"] += 1
            return
        self._produce(event)
        self.counts["validate"] += 1

    def _parse(self, payload: bytes, file: str | None) -> None:
        events = []
        for item in parse_stream(io.BytesIO(payload), self._ctx.named(file or "redrive")):
            if isinstance(item, DeadLetter):
                self.counts["still_failing"] += 1
                return  # the fragment still does not read: nothing of it goes out
            if isinstance(item, Remittance | BankTransaction | Posting):
                events.append(item)
        for event in events:
            self._produce(event)
        self.counts["parse"] += 1

    def _journal(self, payload: bytes) -> None:
        try:
            journal = orjson.loads(payload)
            journal["idempotency_key"]
        except (ValueError, TypeError, KeyError):
            self.counts["still_failing"] += 1
            return
        if not self._dry_run:
            self._post(journal)
        self.counts["post"] += 1

    def _produce(self, event: Event) -> None:
        if not self._dry_run:
            self._producer.send(_topic_of(event, self._topics), _key(event), event_to_json(event))
