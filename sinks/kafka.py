"""Producing to Kafka so that a lost message is an error, never a log line.

Bytewax's KafkaSink registers no delivery callback: a message the broker never acknowledged is
silently gone. This producer is idempotent (no duplicates from its own retries, order kept per
partition), waits for every in-sync replica, records the outcome of every message in a delivery
callback, and :meth:`DeliveryTracker.flush` raises when any message failed or is still
unacknowledged at the deadline.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

# NewTopic is confluent_kafka.admin's public name; its stub does not list the re-export.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from remitflow.events import Source
from remitflow.metrics import ERP_POST_ATTEMPTS, dead_letter_written, journals_acknowledged
from remitflow.records import DeadLetter
from remitflow.stores import kafka_config, retrying, wait_budget_s
from sinks.erp_http import PostingFailed

log = logging.getLogger("remitflow.sinks.kafka")

if TYPE_CHECKING:
    from remitflow.settings import Settings
    from sinks.erp_http import RetryPolicy
    from sinks.erp_ledger import Claim


class Ledger(Protocol):
    """What the sink needs of the ERP idempotency ledger (:mod:`sinks.erp_ledger`)."""

    def claim_many(self, journals: Sequence[tuple[str, Sequence[str]]]) -> list[Claim]: ...

    def mark_posted_many(self, idempotency_keys: Sequence[str], response: str) -> None: ...


class CaseWriter(Protocol):
    """What the sink needs of the case index (:mod:`state.case_index`)."""

    def apply(self, records: Iterable[tuple[str, dict[str, Any]]]) -> int: ...


class ErpAdapter(Protocol):
    """Posts one journal; returns the ERP's acknowledgement, raises when it will not take it."""

    def post(self, journal: dict[str, Any]) -> str: ...


class DeliveryError(RuntimeError):
    """Messages the broker did not acknowledge (the count and the first reasons)."""


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    return {
        **kafka_config(bootstrap),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "lz4",
        "message.max.bytes": DEAD_LETTER_MAX_BYTES + 65536,  # the largest: a dead letter
        # A broker restart is waited out as long as a Redis one (REMITFLOW_STORE_WAIT_S):
        # librdkafka keeps retrying each message until then, then it is a delivery error.
        "message.timeout.ms": int(wait_budget_s() * 1000) or 1,
        **overrides,
    }


class DeliveryTracker:
    """A producer whose every message is accounted for."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        self._producer = Producer(producer_config(bootstrap, **overrides))
        self.delivered: Counter[str] = Counter()
        self.failed: list[str] = []
        self.pending = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self.pending -= 1
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err.str()}")
        else:
            self.delivered[msg.topic() or "?"] += 1

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                self.pending += 1
                break
            except BufferError:  # local queue full: serve callbacks, then try again
                self._producer.poll(0.5)
        self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every message's outcome (a little past the messages' own timeout)."""
        left = self._producer.flush(wait_budget_s() + 30 if timeout_s is None else timeout_s)
        if self.failed or left:
            reasons = "; ".join(sorted(set(self.failed))[:3])
            raise DeliveryError(
                f"{len(self.failed)} message(s) not delivered, {left} unacknowledged"
                + (f": {reasons}" if reasons else "")
            )


# A dead letter carries its message's bytes in base64 (4/3 of them) plus its record: for a
# message at the broker's default limit (1 MiB) the dead letter must be allowed more.
DEAD_LETTER_MAX_BYTES = 4 * 1024 * 1024
_DEAD_LETTER_TOPIC = {"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}


def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, timeout_s: float = 5.0
) -> list[str]:
    """Create the topics that do not exist yet (auto-creation is off on remitflow's brokers)."""
    admin = AdminClient(kafka_config(bootstrap))
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise DeliveryError(f"Kafka at {bootstrap} does not answer: {exc.args[0].str()}") from None
    wanted = [t for t in topics if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=1,
                config=_DEAD_LETTER_TOPIC if t.endswith(".dead-letter") else {},
            )
            for t in wanted
        ]
    )
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return wanted


# Output record families (the JSONL sink's file stems) and their topics (DESIGN.md §6).
# Parse issues and the per-item audit are remitflow's additions.
TOPIC_OF_STEM = {
    "matched": "matched",
    "variance": "variances",
    "unmatched": "unmatched",
    "erp_postings": "erp-postings",
    "dead_letter": "dead-letter",
    "parse_issues": "parse-issues",
    "audit": "audit",
}


def record_key(record: dict[str, Any]) -> bytes | None:
    """A case's records share a partition (and so an order); journals go by idempotency key."""
    key = record.get("idempotency_key") or record.get("case_id") or record.get("event_id")
    return str(key).encode() if key else None


def _event_ids(journal: dict[str, Any]) -> list[str]:
    return [
        item["event_id"]
        for side in ("remittances", "bank_transactions")
        for item in journal.get(side) or ()
    ]


def _journal_note(journal: dict[str, Any], status: str, reason: str | None) -> tuple[str, Any]:
    """What the sink did with a case's journal, for the case index (never a topic record)."""
    note = {"record": "journal_status", "case_id": journal.get("case_id"), "status": status}
    if reason is not None:
        note["reason"] = reason
    return ("case_note", note)


class _RecordPartition(StatelessSinkPartition[tuple[str, dict[str, Any]]]):
    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        overrides: dict[str, Any],
        ledger: Ledger | None,
        erp: ErpAdapter | None,
        cases: CaseWriter | None,
    ) -> None:
        self._producer = DeliveryTracker(bootstrap, **overrides)
        self._prefix = prefix
        self._ledger = ledger
        self._erp = erp
        self._cases = cases
        self.suppressed = 0  # journals not sent again: their key was posted before

    def _send(self, stem: str, record: dict[str, Any]) -> None:
        topic = f"{self._prefix}.{TOPIC_OF_STEM[stem]}"
        self._producer.send(topic, record_key(record), orjson.dumps(record))

    def write_batch(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            self._write_batch(items)
        except Exception:
            # Bytewax turns an error raised here into a panic that does not carry the Python
            # error: say what it was, then stop loudly (recovery resumes the run later).
            log.exception("the sink could not write a batch", extra={"count": len(items)})
            raise

    def _claims(self, items: list[tuple[str, dict[str, Any]]]) -> Iterator[Claim]:
        """The batch's journals claimed in one round trip, in the order they come."""
        ledger = self._ledger
        if ledger is None:
            return iter(())
        journals = [
            (record["idempotency_key"], _event_ids(record))
            for stem, record in items
            if stem == "erp_postings"
        ]
        if not journals:
            return iter(())
        # Redis down: wait for it; never post what could not be recorded first.
        return iter(
            retrying(partial(ledger.claim_many, journals), store="redis", what="claiming journals")
        )

    def _write_batch(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        claimed: list[str] = []
        acknowledged: list[dict[str, Any]] = []  # journals the topic takes: the ERP's ack
        notes: list[tuple[str, dict[str, Any]]] = []  # what became of journals, for the index
        claims = self._claims(items)
        for stem, record in items:
            if stem == "erp_postings" and self._ledger is not None:
                key = record["idempotency_key"]
                claim = next(claims)
                if claim.state == "posted":
                    self.suppressed += 1
                    ERP_POST_ATTEMPTS.labels(result="suppressed").inc()
                    continue
                if claim.state == "conflict":
                    ERP_POST_ATTEMPTS.labels(result="conflict").inc()
                    reason = f"its events are already journaled under {claim.other_key}"
                    self._dead_letter(record, reason, notes)
                    continue
                if self._erp is not None:  # the HTTP adapter instead of the topic
                    self._post(key, record, notes)
                    continue
                claimed.append(key)
                acknowledged.append(record)
                notes.append(_journal_note(record, "posted", None))
            self._send(stem, record)
        # Every batch is acknowledged before the dataflow goes on: a failure stops it loudly
        # (and recovery replays from the last snapshot) instead of losing records.
        self._producer.flush()
        self._mark_posted(claimed, "acknowledged by the erp-postings topic")
        journals_acknowledged(acknowledged, count_posted=True)
        log.debug("batch acknowledged by the broker", extra={"count": len(items)})
        cases = self._cases
        if cases is not None:  # after the topics have the records: they are the truth
            retrying(lambda: cases.apply([*items, *notes]), store="redis", what="updating cases")

    def _mark_posted(self, keys: Sequence[str], response: str) -> None:
        ledger = self._ledger
        if ledger is not None and keys:
            retrying(
                lambda: ledger.mark_posted_many(keys, response),
                store="redis",
                what="recording posts",
            )

    def _post(
        self, key: str, journal: dict[str, Any], notes: list[tuple[str, dict[str, Any]]]
    ) -> None:
        assert self._erp is not None and self._ledger is not None
        try:
            response = self._erp.post(journal)
        except PostingFailed as exc:  # refused, or the budget is spent: the operator decides
            self._dead_letter(journal, str(exc), notes)
            return
        self._mark_posted([key], response)
        journals_acknowledged([journal], count_posted=False)  # the adapter counted its attempts
        notes.append(_journal_note(journal, "posted", None))
        log.info(
            "journal posted to the ERP",
            extra={"case_id": journal.get("case_id"), "idempotency_key": key},
        )

    def _dead_letter(
        self, journal: dict[str, Any], reason: str, notes: list[tuple[str, dict[str, Any]]]
    ) -> None:
        letter = DeadLetter.of(
            "post",
            reason,
            Source(system="erp", file=None, record=journal.get("case_id"), offset=None),
            orjson.dumps(journal),
        )
        record = letter.model_dump(mode="json")
        self._send("dead_letter", record)
        dead_letter_written(record)
        notes.append(_journal_note(journal, "failed", reason))
        log.warning(
            "journal dead-lettered: %s",
            reason,
            extra={"case_id": journal.get("case_id"), "stage": "post"},
        )

    def close(self) -> None:
        self._producer.flush()


class KafkaRecordSink(DynamicSink[tuple[str, dict[str, Any]]]):
    """``(stem, record)`` pairs to ``<prefix>.<topic>``; each worker produces its own."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        *,
        ledger: Ledger | None = None,
        cases: CaseWriter | None = None,
        producer: dict[str, Any] | None = None,
        erp_url: str | None = None,
        erp_token: str | None = None,
        erp_policy: RetryPolicy | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._erp_url = erp_url  # journals over HTTP (sinks.erp_http) instead of the topic
        self._erp_token = erp_token
        self._erp_policy = erp_policy
        self._ledger = ledger  # journals: each idempotency key once, ever (sinks.erp_ledger)
        self._cases = cases  # where each case stands, by case id and trace (state.case_index)
        self._overrides = producer or {}  # producer settings (librdkafka names)

    @classmethod
    def of(cls, settings: Settings) -> KafkaRecordSink:
        """The deployment's sink: its topics, ledger, case index and ERP adapter settings."""
        from sinks.erp_http import RetryPolicy
        from sinks.erp_ledger import IdempotencyLedger
        from state.case_index import CaseIndex

        return cls(
            settings.kafka_bootstrap,
            settings.topic_prefix,
            ledger=IdempotencyLedger(settings.redis_url, settings.topic_prefix),
            cases=CaseIndex(settings.redis_url, settings.topic_prefix),
            erp_url=settings.erp_url,
            erp_token=settings.erp_token,
            erp_policy=RetryPolicy.of(settings),
        )

    def topics(self) -> list[str]:
        return [f"{self._prefix}.{t}" for t in TOPIC_OF_STEM.values()]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RecordPartition:
        erp = None
        if self._erp_url:
            from sinks.erp_http import HttpErpAdapter

            erp = HttpErpAdapter(self._erp_url, token=self._erp_token, policy=self._erp_policy)
        return _RecordPartition(
            self._bootstrap, self._prefix, self._overrides, self._ledger, erp, self._cases
        )
