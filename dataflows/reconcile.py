"""The reconciliation dataflow: the same graph in embedded (files) and continuous (Kafka) mode.

::

    parsed ──┬─ dead letters ─────────────────────────────────────────────┐
             ├─ parse issues ─────────────────────────────────────────────┤
             ├─ postings ─(key: idempotency key)─┐                        │
             └─ events ─ route ─(key: payer@entity)─┬─ match ─ records ─┬─┼─ sink
                                │                   │                   │ │
                                └─ batch summaries ─ clock ─ ticks ─────┘ │
                                                      journals ─ confirm ─┘

``match`` holds :class:`state.key_state.KeyState` per key. Event time reaches every key through
``clock``: each batch reports its latest event date and the keys it touched to one clock key,
which broadcasts :class:`Tick` items to every key it has seen (bytewax clocks are per key, so a
quiet key would otherwise never see time pass). In file mode nothing is decided on arrival and
the clock ticks once, at end of input, with the latest event date of the whole input: every
rule then sees every candidate, so outcomes do not depend on the order in which files are read.
In continuous mode certain pairs are decided on arrival and the clock ticks whenever that date
moves to a new day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from dataflows import instrument
from dataflows.routing import Router
from matchers.base import MatchSettings
from matchers.payer_recognition import PayerRecognizer
from remitflow import shutdown
from remitflow.events import BankTransaction, Posting, Remittance, midnight_utc
from remitflow.events import Source as Origin
from remitflow.records import DeadLetter, ParseIssue
from remitflow.refdata import ReferenceData
from sinks.journal import JournalImbalance, journal_record
from sinks.records import (
    RECORD_FILE,
    case_header,
    case_id,
    decision_records,
    iso,
    posting_outcome_record,
)
from sources.base import Parsed
from state.items import OpenItem
from state.key_state import Decided, KeyState, Noted, Tick

CLOCK_KEY = "clock"
Record = tuple[str, dict[str, Any]]  # (output file stem, record)


@dataclass(frozen=True)
class FlowConfig:
    refdata: ReferenceData = field(default_factory=ReferenceData)
    settings: MatchSettings = field(default_factory=MatchSettings)
    continuous: bool = False  # tick as event time advances (Kafka) or only at end (files)
    # Continuous mode only (wall clock, since confirmations carry the ERP's clock, not ours):
    # an ERP confirmation with no journal of ours after this long is an orphan ...
    orphan_after: timedelta = timedelta(hours=1)
    # ... and a case's confirmation state is kept this long after its last confirmation, to
    # recognise a second journal for the key (older duplicates become orphans instead).
    confirm_retention: timedelta = timedelta(days=35)


def _now() -> datetime:
    return datetime.now(UTC)


class MatchLogic(StatefulBatchLogic[Any, Decided | Noted, Any]):
    """Values are routed items and ticks (merged streams are untyped in Bytewax)."""

    def __init__(self, settings: MatchSettings, early: bool, snapshot: Any | None) -> None:
        self.settings = settings
        self.early = early  # decide on arrival (continuous); file mode waits for the end
        self.final: Tick | None = None
        self.state = KeyState.restore(snapshot) if snapshot is not None else KeyState()
        self.meter = instrument.MatchMeter(self.state)

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Decided | Noted], bool]:
        out: list[Decided | Noted] = []
        state, settings = self.state, self.settings
        ticks = [v for v in values if isinstance(v, Tick)]
        # Items before ticks: streams merged from several workers interleave freely, and an
        # item must not miss the tick that closes its window because it came a little later.
        for value in values:
            if not isinstance(value, Tick):
                out.extend(state.add(value, settings, early=self.early))
                if self.final is not None:  # after the end: decide it now, never leave it open
                    out.extend(state.advance(self.final, settings))
        for tick in ticks:
            out.extend(state.advance(tick, settings))
            if tick.final:
                self.final = tick
        self.meter.after(values, out, state)
        return out, (StatefulBatchLogic.DISCARD if state.is_empty else StatefulBatchLogic.RETAIN)

    def on_eof(self) -> tuple[Iterable[Decided | Noted], bool]:
        """File mode: whatever is still open when input ends is decided now (the final tick
        normally got here first; this is the guarantee that nothing stays open unseen)."""
        state = self.state
        if self.early or not state.open_items or shutdown.requested():
            return [], StatefulBatchLogic.RETAIN  # a stop is not the end of the input
        watermark = state.watermark or max(
            i.day for i in (*state.remittances.values(), *state.deposits.values())
        )
        out = state.advance(Tick(watermark, final=True), self.settings)
        self.meter.after((), out, state)
        return out, StatefulBatchLogic.DISCARD

    def snapshot(self) -> Any:
        return self.state.snapshot()


# -- clock -------------------------------------------------------------------------------------


@dataclass
class _ClockState:
    watermark: date | None = None
    ticked: date | None = None
    keys: dict[str, date] = field(default_factory=dict)  # key → latest day it had an item


class ClockLogic(StatefulBatchLogic[tuple[date, tuple[str, ...]], tuple[str, Tick], _ClockState]):
    """Broadcasts event time to every key that may still hold something.

    In continuous mode a key that has had no item for ``forget_after`` days is forgotten: by
    then its items were decided (lateness) and its seen ids expired, so it holds nothing
    and needs no more ticks. Without this the clock would remember every key ever seen.
    """

    def __init__(
        self, continuous: bool, settings: MatchSettings, snapshot: _ClockState | None
    ) -> None:
        self.continuous = continuous
        # Seen ids are kept 60 days (KeyState.advance); lateness in business days is at most
        # twice as long in calendar days, holidays included.
        self.forget_after = timedelta(days=60 + 2 * settings.late_after_business_days + 14)
        self.state = snapshot or _ClockState()

    def on_batch(
        self, values: list[tuple[date, tuple[str, ...]]]
    ) -> tuple[Iterable[tuple[str, Tick]], bool]:
        s = self.state
        for day, keys in values:
            for key in keys:
                if s.keys.get(key, date.min) < day:
                    s.keys[key] = day
            if s.watermark is None or day > s.watermark:
                s.watermark = day
        if self.continuous and s.watermark is not None and s.watermark != s.ticked:
            s.ticked = s.watermark
            tick = Tick(s.watermark)
            targets = sorted(s.keys)
            horizon = s.watermark - self.forget_after
            s.keys = {k: d for k, d in s.keys.items() if d >= horizon}
            return [(k, tick) for k in targets], StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[tuple[str, Tick]], bool]:
        s = self.state
        if self.continuous or s.watermark is None or shutdown.requested():
            return [], StatefulBatchLogic.RETAIN
        tick = Tick(s.watermark, final=True)
        return [(k, tick) for k in sorted(s.keys)], StatefulBatchLogic.DISCARD

    def snapshot(self) -> _ClockState:
        s = self.state
        return _ClockState(s.watermark, s.ticked, dict(s.keys))


def _batch_summary(
    batch: list[tuple[str, OpenItem]],
) -> list[tuple[str, tuple[date, tuple[str, ...]]]]:
    if not batch:
        return []
    return [(CLOCK_KEY, (max(item.day for _, item in batch), tuple({k for k, _ in batch})))]


# -- confirmations -----------------------------------------------------------------------------


_CASE_FIELDS = ("case_id", "entity", "rule", "remittances", "bank_transactions")


@dataclass
class _ConfirmState:
    case: dict[str, Any] | None = None
    seen: set[str] = field(default_factory=set)
    first_posted: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    pending_since: datetime | None = None  # wall clock: when the oldest pending one came
    last_seen: datetime | None = None  # wall clock: the latest journal or confirmation


class ConfirmLogic(StatefulBatchLogic[tuple[str, dict[str, Any]], Record, _ConfirmState]):
    """ERP confirmations against the journals remitflow sent, by idempotency key.

    A confirmation that comes before its journal waits. At end of input (files,
    ``--until-end``) what still waits is an orphan; in continuous mode it is one after
    ``orphan_after``, and a key's state is dropped ``confirm_retention`` after it went quiet.
    """

    def __init__(self, config: FlowConfig, snapshot: _ConfirmState | None) -> None:
        self.continuous = config.continuous
        self.orphan_after = config.orphan_after
        self.retention = config.confirm_retention
        self.state = snapshot or _ConfirmState()

    def on_batch(self, values: list[tuple[str, dict[str, Any]]]) -> tuple[Iterable[Record], bool]:
        s = self.state
        out: list[Record] = []
        s.last_seen = _now()
        for kind, value in values:
            if kind == "journal":
                if s.case is None:
                    # Only what confirmation records quote: not the journal's lines.
                    s.case = {k: value[k] for k in _CASE_FIELDS if k in value}
                    for posting in s.pending:
                        out.extend(self._confirm(posting))
                    s.pending.clear()
                    s.pending_since = None
            elif value["event_id"] in s.seen:
                out.append(_audit_posting(value, "duplicate", "duplicate", None))
            else:
                s.seen.add(value["event_id"])
                if s.case is None:
                    s.pending.append(value)
                    s.pending_since = s.pending_since or s.last_seen
                else:
                    out.extend(self._confirm(value))
        return out, StatefulBatchLogic.RETAIN

    def _confirm(self, posting: dict[str, Any]) -> list[Record]:
        s = self.state
        status = posting["status"]
        if status == "posted":
            if s.first_posted is None or s.first_posted == posting["posting_id"]:
                s.first_posted = posting["posting_id"]
                kind = "posted"
            else:
                kind = "duplicate_posting"
        elif status == "rejected":
            kind = "posting_rejected"
        else:
            kind = "posting_reversed"
        return self._emit(kind, posting)

    def _emit(self, kind: str, posting: dict[str, Any]) -> list[Record]:
        s = self.state
        decided_at = datetime.fromisoformat(posting["posted_at"])
        record = posting_outcome_record(
            kind,  # type: ignore[arg-type]
            posting=posting,
            case=s.case,
            decided_at=decided_at,
            emitted_at=_now(),
        )
        rule = s.case.get("rule") if s.case else None
        return [
            (RECORD_FILE[kind], record),
            _audit_posting(posting, kind, rule, s.case.get("case_id") if s.case else None),
        ]

    def _orphans(self) -> list[Record]:
        s = self.state
        out: list[Record] = []
        for posting in s.pending:
            out.extend(self._emit("orphan_posting", posting))
        s.pending.clear()
        s.pending_since = None
        return out

    def notify_at(self) -> datetime | None:
        s = self.state
        if not self.continuous:
            return None
        if s.pending_since is not None:
            return s.pending_since + self.orphan_after
        return s.last_seen + self.retention if s.last_seen is not None else None

    def on_notify(self) -> tuple[Iterable[Record], bool]:
        s = self.state
        if s.pending_since is not None:
            return self._orphans(), StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.DISCARD  # quiet for the whole retention

    def on_eof(self) -> tuple[Iterable[Record], bool]:
        """End of input decides waiting confirmations in file mode; a continuous run (or a
        replay) leaves them to the clock, since their journal may still come."""
        if self.continuous or shutdown.requested():
            return [], StatefulBatchLogic.RETAIN
        return self._orphans(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> _ConfirmState:
        s = self.state
        return _ConfirmState(
            s.case, set(s.seen), s.first_posted, list(s.pending), s.pending_since, s.last_seen
        )


def _audit_posting(
    posting: dict[str, Any], outcome: str, rule: str | None, case: str | None
) -> Record:
    return (
        "audit",
        {
            "record": "audit",
            "event_id": posting["event_id"],
            "kind": "posting",
            "outcome": outcome,
            "rule": rule,
            "case_id": case,
        },
    )


# -- formatting --------------------------------------------------------------------------------


class _Formatter:
    def __init__(self, refdata: ReferenceData) -> None:
        self.refdata = refdata

    def batch(self, keyed: list[tuple[str, Decided | Noted]]) -> list[tuple[str, Any]]:
        """A batch's records, all stamped with one emission time (one clock read per batch)."""
        now = _now()
        out: list[tuple[str, Any]] = []
        for one in keyed:
            out.extend(self(one, now))
        return out

    def __call__(
        self, keyed: tuple[str, Decided | Noted], now: datetime | None = None
    ) -> list[tuple[str, Any]]:
        _, result = keyed
        now = now or _now()
        if isinstance(result, Noted):
            item = result.item
            return [
                (
                    "audit",
                    {
                        "record": "audit",
                        "event_id": item.event_id,
                        "kind": item.kind,
                        "outcome": result.outcome,
                        "rule": result.rule,
                        "case_id": None,
                    },
                )
            ]
        decision = result.decision
        decided_at = midnight_utc(result.decided_on)
        # A case's record and its journal start with the same header: build it once.
        header = (
            None
            if decision.outcome == "unmatched"
            else case_header(decision, decision.outcome, iso(decided_at), iso(now))
        )
        out: list[tuple[str, Any]] = [
            (RECORD_FILE[r["record"]], r)
            for r in decision_records(
                decision, decided_at=decided_at, emitted_at=now, as_of=result.as_of, header=header
            )
        ]
        if decision.outcome == "unmatched":
            cases = {i.event_id: case_id([i.event_id]) for i in decision.items}
        else:
            shared = case_id([i.event_id for i in decision.items])
            cases = {i.event_id: shared for i in decision.items}
        for item in decision.items:
            out.append(
                (
                    "audit",
                    {
                        "record": "audit",
                        "event_id": item.event_id,
                        "kind": item.kind,
                        "outcome": decision.outcome,
                        "rule": decision.rule,
                        "case_id": cases[item.event_id],
                    },
                )
            )
        try:
            journal = journal_record(
                decision, self.refdata, decided_at=decided_at, emitted_at=now, header=header
            )
        except JournalImbalance as exc:
            # Never crash the flow over one case: the operator gets it, with its items.
            letter = DeadLetter.of(
                "post",
                f"journal does not balance: {exc}",
                Origin(
                    system="remitflow",
                    file=None,
                    record=case_id([i.event_id for i in decision.items]),
                ),
                orjson.dumps([i.ref for i in decision.items]),
            )
            out.append(("dead_letter", letter.model_dump(mode="json")))
            return out
        if journal is not None:
            out.append(("erp_postings", journal))
            out.append(("__journal__", journal))
        return out


def _posting_by_key(event: Parsed) -> tuple[str, tuple[str, dict[str, Any]]]:
    assert isinstance(event, Posting)
    return event.idempotency_key, ("posting", event.model_dump(mode="json"))


# -- the graph ---------------------------------------------------------------------------------


def build_flow(
    name: str, source: Source[Parsed], sink: Sink[tuple[str, dict[str, Any]]], config: FlowConfig
) -> Dataflow:
    """The graph over a source of parsed items (files in embedded mode)."""
    flow = Dataflow(name)
    reconcile_stream(op.input("parsed", flow, source), sink, config)
    return flow


def reconcile_stream(
    parsed: Stream[Parsed], sink: Sink[tuple[str, dict[str, Any]]], config: FlowConfig
) -> None:
    """Everything after the input: the same steps whatever produced the parsed items."""
    settings = config.settings
    parsed = op.flat_map_batch("metrics_in", parsed, instrument.count_events_in)
    router = Router(
        PayerRecognizer(config.refdata, settings.payer_name_score),
        settings,
        config.refdata.gl.currency,
    )

    letters = op.branch("is_dead_letter", parsed, lambda x: isinstance(x, DeadLetter))
    dead_records = op.map(
        "dead_letter_records", letters.trues, lambda x: ("dead_letter", x.model_dump(mode="json"))
    )
    issues_or_events = op.branch("is_issue", letters.falses, lambda x: isinstance(x, ParseIssue))
    issue_records = op.map(
        "issue_records",
        issues_or_events.trues,
        lambda x: ("parse_issues", x.model_dump(mode="json")),
    )
    postings_or_cash = op.branch(
        "is_posting", issues_or_events.falses, lambda x: isinstance(x, Posting)
    )

    def route(event: Parsed) -> tuple[str, OpenItem]:
        assert isinstance(event, Remittance | BankTransaction)
        return router.route(event)

    routed = op.map("route", postings_or_cash.falses, route)
    summaries = op.flat_map_batch("batch_summary", routed, _batch_summary)
    ticks = op.stateful_batch(
        "clock", summaries, lambda snap: ClockLogic(config.continuous, settings, snap)
    )
    ticks_by_key = op.map("tick_targets", ticks, lambda kv: kv[1])
    matched = op.stateful_batch(
        "match",
        op.merge("items_and_ticks", routed, ticks_by_key),
        lambda snap: MatchLogic(settings, config.continuous, snap),
    )
    metered = op.flat_map_batch("metrics_decided", matched, instrument.PayerMeter(config.refdata))
    records = op.flat_map_batch("format", metered, _Formatter(config.refdata).batch)

    journals = op.branch("is_journal", records, lambda kv: kv[0] == "__journal__")
    journal_keyed = op.map(
        "journal_by_key", journals.trues, lambda kv: (kv[1]["idempotency_key"], ("journal", kv[1]))
    )
    posting_keyed = op.map(
        "posting_by_key",
        postings_or_cash.trues,
        _posting_by_key,
    )
    confirmations = op.stateful_batch(
        "confirm",
        op.merge("journals_and_postings", journal_keyed, posting_keyed),
        lambda snap: ConfirmLogic(config, snap),
    )
    confirmation_records = op.map("confirmation_records", confirmations, lambda kv: kv[1])

    out = op.merge(
        "all_records", dead_records, issue_records, journals.falses, confirmation_records
    )
    op.output("sink", op.flat_map_batch("metrics_out", out, instrument.count_records), sink)
