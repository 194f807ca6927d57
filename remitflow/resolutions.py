"""Operators resolve exceptions; the resolution goes out through the normal sink path.

Two resolutions, each an operator's decision about items that are open ``unmatched`` cases:

* **confirm a pair**: a remittance and a deposit belong together. The items are rebuilt as the
  dataflow built them (their canonical events read back from the input topics, routed by
  :class:`dataflows.routing.Router`), decided with rule ``operator_confirmed`` (``matched`` when
  the amounts agree, else a ``variance`` with ``fee`` or ``amount_mismatch`` as the cascade
  would say), and the case's records and balanced journal are written by
  :class:`sinks.kafka.KafkaRecordSink`: the ERP idempotency ledger claims the journal, so a
  repeated resolution posts nothing twice and an event whose cash another journal carries is
  refused rather than posted again.
* **non-payer cash**: a deposit is not a payer's payment (a grant, a refund, a transfer). Its
  outcome is ``not_payer_cash`` (rule ``operator_non_payer_cash``), as the dataflow audits bank
  lines it classifies so; nothing is posted.

Each writes a ``resolution`` record (operator, reason, when, the cases it resolves) to the audit
stream, which the case index folds into every case involved: the lineage says who decided and
why. Resolutions are serialised per event with short Redis locks, and a resolution already made
is answered with what it made, never made again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition

from dataflows.routing import Router
from matchers.base import Decision, cash_match
from matchers.payer_recognition import PayerRecognizer
from matchers.variance import AMOUNT_MISMATCH, FEE, is_fee
from remitflow.config import Config
from remitflow.events import BankTransaction, Remittance, event_from_json
from remitflow.settings import Settings, Topics
from remitflow.stores import kafka_config, redis_client
from sinks.journal import JournalImbalance, journal_record
from sinks.records import RECORD_FILE, case_id, decision_records, iso
from state.case_index import CaseIndex
from state.items import OpenItem

log = logging.getLogger("remitflow.resolutions")

CONFIRMED = "operator_confirmed"
NON_PAYER_CASH = "operator_non_payer_cash"
Action = Literal["confirm_pair", "non_payer_cash"]
MAX_REASON = 500
LOCK_S = 120  # a resolution that crashed holding its lock frees it after this long
LOOKUP_TIMEOUT_S = 60.0

Record = tuple[str, dict[str, Any]]
E = TypeVar("E", Remittance, BankTransaction)
Writer = Callable[[list[Record]], None]


class ResolutionError(Exception):
    """Why a resolution cannot be made; ``status`` is the HTTP status that says so."""

    status = 409


class CaseNotFound(ResolutionError):
    status = 404


class InvalidResolution(ResolutionError):
    status = 422


class Unavailable(ResolutionError):
    """A server (Kafka, Redis) did not answer, or no configuration is loaded: try again."""

    status = 503


@dataclass(frozen=True)
class Resolved:
    case_id: str  # the case the resolution made (or, for non-payer cash, closed)
    action: Action
    outcome: str
    resolves: tuple[str, ...]
    idempotency_key: str | None = None  # of the journal, when there is one
    already: bool = False  # resolved before, with the same items: nothing was written


def clean_reason(reason: str) -> str:
    """The operator's reason, one line, printable, at most :data:`MAX_REASON` characters."""
    text = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    if not text:
        raise InvalidResolution("a reason is required")
    if len(text) > MAX_REASON:
        raise InvalidResolution(f"the reason is longer than {MAX_REASON} characters")
    return text


class EventArchive:
    """Canonical events read back from an input topic by event id.

    ``remitflow ingest`` keys each event by its id, and librdkafka's default partitioner puts
    a keyed message on ``crc32(key) % partitions``: that partition is read first, the others
    only when the event is not there (another producer). A partition is read from its first
    retained offset to its end; an event older than the topic's retention cannot be found.
    """

    def __init__(self, bootstrap: str, timeout_s: float = LOOKUP_TIMEOUT_S) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s

    def find(self, topic: str, wanted: Mapping[str, Mapping[str, Any] | None]) -> dict[str, bytes]:
        """``event id → message value`` for the ids of ``wanted`` that ``topic`` holds. Where a
        re-sent file put an event in the topic twice, the copy read from ``wanted[id]`` (a
        source) is preferred, so the case quotes the source its first decision quoted."""
        consumer = Consumer(
            kafka_config(
                self._bootstrap,
                **{"group.id": "remitflow-resolutions", "enable.auto.commit": False},
            )
        )
        deadline = time.monotonic() + self._timeout_s
        found: dict[str, bytes] = {}
        exact: set[str] = set()
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise ResolutionError(f"topic {topic} does not exist")
            partitions = sorted(meta.partitions)
            keys = {eid.encode(): eid for eid in wanted}
            first = {zlib.crc32(k) % len(partitions) for k in keys} if partitions else set()
            for partition in sorted(partitions, key=lambda p: (p not in first, p)):
                if exact == set(wanted):
                    break
                self._scan(
                    consumer, TopicPartition(topic, partition), keys, wanted, deadline, found, exact
                )
        except KafkaException as exc:
            raise Unavailable(f"Kafka: {exc.args[0].str()}") from None
        finally:
            consumer.close()
        return found

    def _scan(
        self,
        consumer: Consumer,
        tp: TopicPartition,
        keys: Mapping[bytes, str],
        wanted: Mapping[str, Mapping[str, Any] | None],
        deadline: float,
        found: dict[str, bytes],
        exact: set[str],
    ) -> None:
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        if high <= low:
            return
        consumer.assign([TopicPartition(tp.topic, tp.partition, low)])
        position = low
        try:
            while position < high and exact != set(wanted):
                if time.monotonic() > deadline:
                    raise Unavailable(f"reading {tp.topic} took longer than {self._timeout_s} s")
                for msg in consumer.consume(500, timeout=0.05):
                    if msg.error() is not None:
                        continue
                    eid = keys.get(msg.key() or b"")
                    if eid is None or eid in exact:
                        continue
                    value = msg.value() or b""
                    if eid not in found:
                        found[eid] = value
                    if _source_of(value) == _plain(wanted[eid]):
                        found[eid] = value
                        exact.add(eid)
                # The fetch position (past control records too), not the last message seen.
                at = consumer.position([tp])[0].offset
                position = max(position, at if at is not None else position)
        finally:
            consumer.unassign()


def _plain(source: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(source) if source is not None else None


def _source_of(value: bytes) -> dict[str, Any] | None:
    try:
        event = event_from_json(value)
    except ValueError:
        return None
    return event.source.model_dump()


# Deletes a lock only if it is still the caller's (one that outlived LOCK_S may be another's).
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""


class _Locks:
    """One short Redis lock per event: two resolutions of one item cannot run at once."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = redis_client(url)
        self._prefix = f"{prefix}:resolving:"
        self._release: Any = self._redis.register_script(_RELEASE)

    def acquire(self, event_ids: Sequence[str]) -> tuple[str, list[str]]:
        """(this holder's token, the keys it holds); raises when another holds one."""
        token = secrets.token_hex(16)
        taken: list[str] = []
        for eid in sorted(event_ids):
            if not self._redis.set(self._prefix + eid, token, nx=True, ex=LOCK_S):
                self.release((token, taken))
                raise ResolutionError("another resolution of these items is under way")
            taken.append(self._prefix + eid)
        return token, taken

    def release(self, held: tuple[str, list[str]]) -> None:
        token, keys = held
        if keys:
            self._release(keys=keys, args=[token])


class Resolver:
    """Makes resolutions; ``write`` is the sink path (a :class:`KafkaRecordSink` partition's
    ``write_batch``), ``config`` gives the deployment's reference data and matching settings."""

    def __init__(
        self,
        settings: Settings,
        cases: CaseIndex,
        ledger_owner: Callable[[str], str | None],
        config: Callable[[], Config],
        write: Writer,
        archive: EventArchive | None = None,
    ) -> None:
        self._topics = Topics(settings.topic_prefix)
        self._cases = cases
        self._owner = ledger_owner
        self._config = config
        self._write = write
        self._archive = archive or EventArchive(settings.kafka_bootstrap)
        self._locks = _Locks(settings.redis_url, settings.topic_prefix)

    # -- confirm a pair ------------------------------------------------------------------------

    def confirm_pair(
        self, remittance_case: str, deposit_case: str, *, operator: str, reason: str
    ) -> Resolved:
        why = clean_reason(reason)
        rem_case, dep_case = self._case(remittance_case), self._case(deposit_case)
        rem_ref = _single(rem_case, "remittances")
        dep_ref = _single(dep_case, "bank_transactions")
        made = case_id([rem_ref["event_id"], dep_ref["event_id"]])
        previous = self._previous(made, "confirm_pair")
        if previous is not None:
            return previous
        _check_open(rem_case, "remittances")
        _check_open(dep_case, "bank_transactions")
        if rem_case.get("entity") != dep_case.get("entity"):
            raise ResolutionError(
                f"the remittance is of entity {rem_case.get('entity') or '?'} and the deposit "
                f"of {dep_case.get('entity') or '?'}: a pair is one entity's"
            )
        ids = [rem_ref["event_id"], dep_ref["event_id"]]
        taken = self._locks.acquire(ids)
        try:
            # Checked again under the lock: a concurrent resolution may just have finished.
            previous = self._previous(made, "confirm_pair")
            if previous is not None:
                return previous
            _check_open(self._case(remittance_case), "remittances")
            _check_open(self._case(deposit_case), "bank_transactions")
            refdata, settings = self._loaded_config()
            rem, dep = self._items(rem_ref, dep_ref, refdata, settings)
            decision = _pair_decision(rem, dep, settings)
            now = datetime.now(UTC)
            records: list[Record] = [
                (RECORD_FILE[r["record"]], r)
                for r in decision_records(
                    decision, decided_at=now, emitted_at=now, as_of=now.date()
                )
            ]
            try:
                journal = journal_record(decision, refdata, decided_at=now, emitted_at=now)
            except JournalImbalance as exc:
                raise ResolutionError(f"the pair's journal does not balance: {exc}") from None
            key = journal["idempotency_key"] if journal is not None else None
            for eid in ids:
                owner = self._owner(eid)
                if owner is not None and owner != key:
                    raise ResolutionError(
                        f"event {eid} is already journaled under {owner}; nothing was posted"
                    )
            if journal is not None:
                records.append(("erp_postings", journal))
            resolves = (remittance_case, deposit_case)
            records += _audits(decision.items, decision.outcome, CONFIRMED, made)
            records.append(
                _resolution(
                    "confirm_pair",
                    made,
                    decision.outcome,
                    CONFIRMED,
                    resolves,
                    ids,
                    operator,
                    why,
                    now,
                )
            )
            self._write(records)
        finally:
            self._locks.release(taken)
        log.info("operator confirmed a pair (%s)", decision.outcome, extra={"case_id": made})
        return Resolved(made, "confirm_pair", decision.outcome, resolves, key)

    def _items(
        self,
        rem_ref: Mapping[str, Any],
        dep_ref: Mapping[str, Any],
        refdata: Any,
        settings: Any,
    ) -> tuple[OpenItem, OpenItem]:
        """The two items as the dataflow built them, from their canonical events."""
        router = Router(
            PayerRecognizer(refdata, settings.payer_name_score), settings, refdata.gl.currency
        )
        rem_event = self._event(self._topics.remittances, rem_ref, Remittance)
        dep_event = self._event(self._topics.bank_transactions, dep_ref, BankTransaction)
        _, rem = router.route(rem_event)
        _, dep = router.route(dep_event)
        if not rem.expects_cash:
            raise ResolutionError("a zero-pay remittance expects no cash: it pairs with no deposit")
        return rem, dep

    def _event(self, topic: str, ref: Mapping[str, Any], kind: type[E]) -> E:
        eid = str(ref["event_id"])
        found = self._archive.find(topic, {eid: ref.get("source")})
        if eid not in found:
            raise ResolutionError(
                f"event {eid} is no longer in {topic} (past its retention?): it cannot be "
                "journaled from here"
            )
        event = event_from_json(found[eid])
        if not isinstance(event, kind) or event.event_id != eid:
            raise ResolutionError(f"{topic} holds something else under {eid}")
        return event

    # -- non-payer cash ------------------------------------------------------------------------

    def non_payer_cash(self, deposit_case: str, *, operator: str, reason: str) -> Resolved:
        why = clean_reason(reason)
        case = self._case(deposit_case)
        ref = _single(case, "bank_transactions")
        previous = self._previous(deposit_case, "non_payer_cash")
        if previous is not None:
            return previous
        _check_open(case, "bank_transactions")
        eid = str(ref["event_id"])
        taken = self._locks.acquire([eid])
        try:
            previous = self._previous(deposit_case, "non_payer_cash")
            if previous is not None:
                return previous
            _check_open(self._case(deposit_case), "bank_transactions")
            owner = self._owner(eid)
            if owner is not None:
                raise ResolutionError(f"the deposit's cash is journaled under {owner}")
            now = datetime.now(UTC)
            audit = {
                "record": "audit",
                "event_id": eid,
                "kind": "bank_transaction",
                "outcome": "not_payer_cash",
                "rule": NON_PAYER_CASH,
                "case_id": deposit_case,
            }
            resolution = _resolution(
                "non_payer_cash",
                deposit_case,
                "not_payer_cash",
                NON_PAYER_CASH,
                (deposit_case,),
                [eid],
                operator,
                why,
                now,
            )
            self._write([("audit", audit), resolution])
        finally:
            self._locks.release(taken)
        log.info("operator marked a deposit non-payer cash", extra={"case_id": deposit_case})
        return Resolved(deposit_case, "non_payer_cash", "not_payer_cash", (deposit_case,))

    # -- shared --------------------------------------------------------------------------------

    def _case(self, cid: str) -> dict[str, Any]:
        case = self._cases.get(cid)
        if case is None:
            raise CaseNotFound(f"no case {cid}")
        return case

    def _previous(self, made: str, action: Action) -> Resolved | None:
        """The resolution that already made ``made`` with this action, if any."""
        case = self._cases.get(made)
        resolution = (case or {}).get("resolution")
        if (
            not resolution
            or resolution.get("action") != action
            or resolution.get("case_id") != made
        ):
            return None
        assert case is not None
        return Resolved(
            made,
            action,
            str(resolution.get("outcome")),
            tuple(resolution.get("resolves") or ()),
            case.get("idempotency_key"),
            already=True,
        )

    def _loaded_config(self) -> Config:
        try:
            return self._config()
        except LookupError as exc:
            raise Unavailable(str(exc)) from None


def _single(case: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    """The one item of an unmatched case, which must be on ``side``."""
    items = [*case.get("remittances", []), *case.get("bank_transactions", [])]
    mine = case.get(side) or []
    what = "remittance" if side == "remittances" else "deposit"
    if len(items) != 1 or len(mine) != 1:
        raise InvalidResolution(f"case {case['case_id']} is not one {what}")
    item: Mapping[str, Any] = mine[0]
    return item


def _check_open(case: Mapping[str, Any], side: str) -> None:
    _single(case, side)
    if case.get("outcome") != "unmatched" or case.get("status") != "unmatched":
        done = case.get("resolution") or {}
        how = f" by {done['operator']}" if done.get("operator") else ""
        raise ResolutionError(
            f"case {case['case_id']} is not an open unmatched item (it is {case.get('status')}"
            f"{how})"
        )


def _pair_decision(rem: OpenItem, dep: OpenItem, settings: Any) -> Decision:
    if rem.cents == dep.cents:
        return cash_match(CONFIRMED, 1.0, (rem,), (dep,))
    reason = FEE if is_fee(rem.cents, dep.cents, settings) else AMOUNT_MISMATCH
    return Decision(
        "variance",
        CONFIRMED,
        1.0,
        (rem,),
        (dep,),
        reason=reason,
        variance_cents=dep.cents - rem.cents,
    )


def _audits(items: Collection[OpenItem], outcome: str, rule: str, made: str) -> list[Record]:
    return [
        (
            "audit",
            {
                "record": "audit",
                "event_id": item.event_id,
                "kind": item.kind,
                "outcome": outcome,
                "rule": rule,
                "case_id": made,
            },
        )
        for item in items
    ]


def _resolution(
    action: Action,
    made: str,
    outcome: str,
    rule: str,
    resolves: Sequence[str],
    event_ids: Sequence[str],
    operator: str,
    reason: str,
    now: datetime,
) -> Record:
    return (
        "audit",
        {
            "record": "resolution",
            "case_id": made,
            "action": action,
            "outcome": outcome,
            "rule": rule,
            "resolves": sorted(resolves),
            "event_ids": sorted(event_ids),
            "operator": operator,
            "reason": reason,
            "resolved_at": iso(now),
        },
    )


class SinkWriter:
    """The sink path of ``remitflow serve``: one :class:`KafkaRecordSink` partition, built on
    first use (reads need no broker) and used by one request at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._partition: Any = None

    def __call__(self, records: list[Record]) -> None:
        from redis.exceptions import RedisError

        from sinks.kafka import DeliveryError

        with self._lock:
            try:
                if self._partition is None:
                    self._partition = self._build()
                self._partition.write_batch(records)
            except (DeliveryError, RedisError, KafkaException) as exc:
                raise Unavailable(f"{type(exc).__name__}: {exc}") from None

    def _build(self) -> Any:
        from sinks.kafka import KafkaRecordSink, ensure_topics

        s = self._settings
        sink = KafkaRecordSink.of(s)
        ensure_topics(s.kafka_bootstrap, sink.topics(), s.partitions)
        return sink.build("serve", 0, 1)
