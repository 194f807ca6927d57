"""Lifecycles of the ``confirm`` and ``clock`` steps, driven directly (no dataflow).

``ConfirmLogic`` pairs ERP confirmations with the journals remitflow sent: in file mode what
still waits at end of input is an orphan; in continuous mode the wall clock decides (orphan
after ``orphan_after``, state dropped ``confirm_retention`` after the key went quiet).
``ClockLogic`` broadcasts event time to the keys that may still hold something. Wall-clock time
is ``dataflows.reconcile._now``, replaced here by a clock the tests move by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import dataflows.reconcile as reconcile
from dataflows.reconcile import ClockLogic, ConfirmLogic, FlowConfig, MatchLogic
from matchers.base import Decision, MatchSettings
from remitflow.events import Posting, Source, midnight_utc
from remitflow.refdata import ReferenceData
from sinks.journal import journal_record
from sinks.records import case_id
from state.key_state import Decided, Tick
from tests.factories import MONDAY, deposit, remittance

T0 = datetime(2024, 3, 4, 9, 30, tzinfo=UTC)
DISCARD, RETAIN = True, False  # StatefulBatchLogic.DISCARD / RETAIN
CONTINUOUS = FlowConfig(continuous=True)
FILES = FlowConfig(continuous=False)
GRACE = CONTINUOUS.orphan_after
RETENTION = CONTINUOUS.confirm_retention


@dataclass
class WallClock:
    now: datetime = T0

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    clock = WallClock()
    monkeypatch.setattr(reconcile, "_now", lambda: clock.now)
    return clock


# -- builders: real journals and confirmations, as the dataflow feeds them ------------------


def matched_case(tag: str = "a", cents: int = 100_000) -> Decision:
    r = remittance(f"r-{tag}", cents, trace="12524965")
    d = deposit(f"d-{tag}", cents, trace="0012524965")
    return Decision("matched", "trace_exact", 1.0, (r,), (d,))


def journal_of(decision: Decision) -> dict[str, Any]:
    journal = journal_record(
        decision, ReferenceData(), decided_at=midnight_utc(MONDAY), emitted_at=T0
    )
    assert journal is not None
    return journal


def posting(
    key: str,
    event_id: str = "p1",
    *,
    posting_id: str = "ERP-1",
    status: str = "posted",
    posted_at: datetime = T0,
    entity: str | None = "H001",
) -> dict[str, Any]:
    """An ERP confirmation as ``_posting_by_key`` passes it on: dumped in JSON mode."""
    event = Posting.model_validate(
        {
            "event_id": event_id,
            "entity": entity,
            "occurred_at": posted_at,
            "source": Source(system="postings", file="erp.jsonl", record=event_id),
            "posting_id": posting_id,
            "idempotency_key": key,
            "status": status,
            "amount": Decimal("1000.00"),
            "posted_at": posted_at,
        }
    )
    return event.model_dump(mode="json")


def journal_msg(journal: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("journal", journal)


def posting_msg(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("posting", value)


def run(
    result: tuple[Iterable[tuple[str, dict[str, Any]]], bool],
) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    out, discard = result
    return list(out), discard


def kinds(out: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """(output stem, outcome) of each record; audit lines by their outcome."""
    return [(stem, rec["outcome"] if stem == "audit" else rec["record"]) for stem, rec in out]


# -- ConfirmLogic: file mode --------------------------------------------------------------


def test_file_mode_a_confirmation_without_journal_waits_then_is_an_orphan_at_end(
    wall: WallClock,
) -> None:
    journal = journal_of(matched_case())
    waiting = posting(journal["idempotency_key"])
    logic = ConfirmLogic(FILES, None)

    assert run(logic.on_batch([posting_msg(waiting)])) == ([], RETAIN)
    assert logic.notify_at() is None  # file mode never uses the wall clock

    wall.advance(timedelta(days=3))  # however long: only end of input decides
    out, _ = run(logic.on_eof())
    assert kinds(out) == [("unmatched", "orphan_posting"), ("audit", "orphan_posting")]
    orphan, audit = out[0][1], out[1][1]
    # No journal named it: the case is the confirmation's own, under the ERP's entity.
    assert orphan["case_id"] == case_id(["p1"]) != journal["case_id"]
    assert (orphan["entity"], orphan["rule"], orphan["reason"]) == ("H001", None, "orphan_posting")
    assert orphan["idempotency_key"] == journal["idempotency_key"]
    assert orphan["posting"]["event_id"] == "p1" and orphan["posting"]["amount"] == "1000.00"
    assert orphan["remittances"] == [] and orphan["bank_transactions"] == []
    assert orphan["emitted_at"] == wall.now.isoformat()
    assert audit == {
        "record": "audit",
        "event_id": "p1",
        "kind": "posting",
        "outcome": "orphan_posting",
        "rule": None,
        "case_id": None,
    }
    assert run(logic.on_eof())[0] == []  # decided once
    assert logic.notify_at() is None


def test_file_mode_a_journal_later_in_the_input_confirms_the_waiting_posting(
    wall: WallClock,
) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(FILES, None)
    logic.on_batch([posting_msg(posting(journal["idempotency_key"]))])
    out, _ = run(logic.on_batch([journal_msg(journal)]))
    assert kinds(out) == [("matched", "posted"), ("audit", "posted")]
    assert run(logic.on_eof())[0] == []


# -- ConfirmLogic: continuous mode --------------------------------------------------------


def test_continuous_end_of_input_leaves_waiting_confirmations_to_the_clock(
    wall: WallClock,
) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(CONTINUOUS, None)
    logic.on_batch([posting_msg(posting(journal["idempotency_key"]))])
    wall.advance(timedelta(minutes=5))
    assert run(logic.on_eof()) == ([], RETAIN)
    assert logic.notify_at() == T0 + GRACE  # from the arrival, not from end of input
    assert len(logic.snapshot().pending) == 1


def test_continuous_a_confirmation_without_journal_is_an_orphan_after_the_grace(
    wall: WallClock,
) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(CONTINUOUS, None)
    logic.on_batch([posting_msg(posting(journal["idempotency_key"]))])
    assert logic.notify_at() == T0 + GRACE

    wall.advance(GRACE)
    out, discard = run(logic.on_notify())
    assert kinds(out) == [("unmatched", "orphan_posting"), ("audit", "orphan_posting")]
    assert out[0][1]["case_id"] == case_id(["p1"])
    assert discard is RETAIN  # the event id is still remembered, for duplicates
    state = logic.snapshot()
    assert state.pending == [] and state.pending_since is None
    # Nothing waits any more: the key is kept for the retention after its last activity.
    assert logic.notify_at() == T0 + RETENTION
    assert run(logic.on_batch([posting_msg(posting(journal["idempotency_key"]))])) == (
        [("audit", {**out[1][1], "outcome": "duplicate", "rule": "duplicate"})],
        RETAIN,
    )


@pytest.mark.parametrize(
    ("status", "stem", "kind"),
    [
        ("posted", "matched", "posted"),
        ("rejected", "unmatched", "posting_rejected"),
        ("reversed", "unmatched", "posting_reversed"),
    ],
)
def test_continuous_a_journal_within_the_grace_confirms_then_the_key_expires(
    wall: WallClock, status: str, stem: str, kind: str
) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(CONTINUOUS, None)
    logic.on_batch([posting_msg(posting(journal["idempotency_key"], status=status))])

    arrived = wall.advance(GRACE - timedelta(minutes=1))
    out, discard = run(logic.on_batch([journal_msg(journal)]))
    assert kinds(out) == [(stem, kind), ("audit", kind)]
    assert discard is RETAIN
    record, audit = out[0][1], out[1][1]
    assert record["case_id"] == journal["case_id"] == audit["case_id"]
    assert record["rule"] == journal["rule"] == audit["rule"] == "trace_exact"
    assert record["entity"] == journal["entity"]
    assert record["remittances"] == journal["remittances"]
    assert record["bank_transactions"] == journal["bank_transactions"]
    assert record["confidence"] == (1.0 if kind == "posted" else None)
    assert record["decided_at"] == T0.isoformat()  # the ERP's posted_at, not our clock
    assert record["emitted_at"] == arrived.isoformat()
    assert "lines" not in record  # confirmations quote the case, not its journal

    # Nothing waits: the next wake-up is the end of the retention, which drops the key.
    assert logic.snapshot().pending_since is None
    assert logic.notify_at() == arrived + RETENTION
    wall.advance(RETENTION)
    assert run(logic.on_notify()) == ([], DISCARD)


def test_continuous_activity_pushes_the_retention_back(wall: WallClock) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(CONTINUOUS, None)
    assert logic.notify_at() is None  # nothing seen yet
    assert run(logic.on_batch([journal_msg(journal)])) == ([], RETAIN)
    assert logic.notify_at() == T0 + RETENTION

    later = wall.advance(timedelta(days=2))
    out, _ = run(logic.on_batch([posting_msg(posting(journal["idempotency_key"]))]))
    assert kinds(out) == [("matched", "posted"), ("audit", "posted")]  # on arrival
    assert logic.notify_at() == later + RETENTION


def test_a_second_erp_posting_for_the_same_key_is_a_duplicate_posting(wall: WallClock) -> None:
    journal = journal_of(matched_case())
    key = journal["idempotency_key"]
    logic = ConfirmLogic(CONTINUOUS, None)
    first = posting(key, "p1", posting_id="ERP-1")
    second = posting(key, "p2", posting_id="ERP-2", posted_at=T0 + timedelta(hours=2))
    # Both wait for the journal, which comes in the same batch after them.
    out, _ = run(logic.on_batch([posting_msg(first), posting_msg(second), journal_msg(journal)]))
    assert kinds(out) == [
        ("matched", "posted"),
        ("audit", "posted"),
        ("unmatched", "duplicate_posting"),
        ("audit", "duplicate_posting"),
    ]
    duplicate = out[2][1]
    assert duplicate["case_id"] == journal["case_id"]
    assert duplicate["posting"]["posting_id"] == "ERP-2"
    assert duplicate["reason"] == "duplicate_posting"
    # The ERP's first posting stays the one: a third id later is a duplicate too.
    third = posting(key, "p3", posting_id="ERP-3")
    assert kinds(run(logic.on_batch([posting_msg(third)]))[0]) == [
        ("unmatched", "duplicate_posting"),
        ("audit", "duplicate_posting"),
    ]


def test_the_same_confirmation_event_twice_is_an_audit_duplicate(wall: WallClock) -> None:
    journal = journal_of(matched_case())
    confirmation = posting(journal["idempotency_key"])
    logic = ConfirmLogic(CONTINUOUS, None)
    duplicate_audit = (
        "audit",
        {
            "record": "audit",
            "event_id": "p1",
            "kind": "posting",
            "outcome": "duplicate",
            "rule": "duplicate",
            "case_id": None,
        },
    )
    # Twice while waiting: one waits, the other is only audited.
    out, _ = run(logic.on_batch([posting_msg(confirmation), posting_msg(confirmation)]))
    assert out == [duplicate_audit]
    assert len(logic.snapshot().pending) == 1
    out, _ = run(logic.on_batch([journal_msg(journal)]))
    assert kinds(out) == [("matched", "posted"), ("audit", "posted")]  # confirmed once
    # Once more after confirmation (a replayed topic): still only audited.
    assert run(logic.on_batch([posting_msg(confirmation)])) == ([duplicate_audit], RETAIN)


def test_a_second_journal_for_the_key_changes_nothing(wall: WallClock) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(CONTINUOUS, None)
    logic.on_batch([journal_msg(journal)])
    replayed = {**journal, "emitted_at": (T0 + timedelta(hours=1)).isoformat()}
    assert run(logic.on_batch([journal_msg(replayed)])) == ([], RETAIN)
    out, _ = run(logic.on_batch([posting_msg(posting(journal["idempotency_key"]))]))
    assert out[0][1]["case_id"] == journal["case_id"]


# -- ConfirmLogic: snapshots --------------------------------------------------------------


def test_a_snapshot_restores_waiting_confirmations_and_their_clocks(wall: WallClock) -> None:
    journal = journal_of(matched_case())
    key = journal["idempotency_key"]
    logic = ConfirmLogic(CONTINUOUS, None)
    logic.on_batch([posting_msg(posting(key, "p1", status="rejected"))])
    wall.advance(timedelta(minutes=20))
    logic.on_batch([posting_msg(posting(key, "p2", posting_id="ERP-2"))])
    snap = logic.snapshot()
    assert (snap.pending_since, snap.last_seen) == (T0, T0 + timedelta(minutes=20))

    # The original goes on (the journal comes); the snapshot must not follow it.
    wall.advance(timedelta(minutes=10))
    confirmed, _ = run(logic.on_batch([journal_msg(journal)]))
    assert kinds(confirmed) == [
        ("unmatched", "posting_rejected"),
        ("audit", "posting_rejected"),
        ("matched", "posted"),
        ("audit", "posted"),
    ]

    restored = ConfirmLogic(CONTINUOUS, snap)
    again = restored.snapshot()
    assert (again.pending_since, again.last_seen) == (T0, T0 + timedelta(minutes=20))
    assert [p["event_id"] for p in again.pending] == ["p1", "p2"]
    assert restored.notify_at() == T0 + GRACE
    # Recovery replays the same input: the restored logic decides exactly as the original.
    assert run(restored.on_batch([journal_msg(journal)]))[0] == confirmed
    assert restored.notify_at() == wall.now + RETENTION == logic.notify_at()
    # Seen ids survived too: a replayed confirmation is a duplicate.
    assert kinds(run(restored.on_batch([posting_msg(posting(key, "p2"))]))[0]) == [
        ("audit", "duplicate")
    ]


def test_a_restored_key_orphans_its_confirmations_when_the_original_grace_ends(
    wall: WallClock,
) -> None:
    journal = journal_of(matched_case())
    logic = ConfirmLogic(CONTINUOUS, None)
    logic.on_batch([posting_msg(posting(journal["idempotency_key"]))])
    wall.advance(timedelta(minutes=45))  # a restart 45 minutes in
    restored = ConfirmLogic(CONTINUOUS, logic.snapshot())
    assert restored.notify_at() == T0 + GRACE  # not 45 minutes later than the original's
    wall.advance(timedelta(minutes=15))
    assert run(restored.on_notify())[0] == run(logic.on_notify())[0] != []


# -- ClockLogic ---------------------------------------------------------------------------


def ticks(result: tuple[Iterable[tuple[str, Tick]], bool]) -> list[tuple[str, Tick]]:
    return list(result[0])


def run_eof(clock: ClockLogic) -> tuple[list[tuple[str, Tick]], bool]:
    out, discard = clock.on_eof()
    return list(out), discard


def test_continuous_clock_ticks_every_key_seen_when_event_time_moves() -> None:
    clock = ClockLogic(True, MatchSettings(), None)
    day = MONDAY
    assert ticks(clock.on_batch([(day, ("pay|H001|aetna", "chk|H001"))])) == [
        ("chk|H001", Tick(day)),
        ("pay|H001|aetna", Tick(day)),
    ]
    # Same day again (a new key included): event time did not move, so no tick.
    assert ticks(clock.on_batch([(day, ("npc|H001",))])) == []
    # An older day (a late file) never moves time back.
    assert ticks(clock.on_batch([(day - timedelta(days=3), ("pay|H002|uhc",))])) == []
    # The next day reaches every key seen so far, quiet ones included.
    later = day + timedelta(days=1)
    out = ticks(clock.on_batch([(later, ("chk|H001",)), (day, ("pay|H003|bcbs",))]))
    assert out == [
        (k, Tick(later))
        for k in ("chk|H001", "npc|H001", "pay|H001|aetna", "pay|H002|uhc", "pay|H003|bcbs")
    ]
    assert run_eof(clock) == ([], RETAIN)  # continuous: end of input is not the end


def test_continuous_clock_forgets_a_key_quiet_for_longer_than_forget_after() -> None:
    clock = ClockLogic(True, MatchSettings(), None)
    forget = clock.forget_after
    assert forget >= timedelta(days=60)  # past the seen-id retention of KeyState.advance
    clock.on_batch([(MONDAY, ("quiet", "busy"))])

    def tick_to(day: date) -> list[str]:
        return [k for k, t in ticks(clock.on_batch([(day, ("busy",))])) if t == Tick(day)]

    assert tick_to(MONDAY + forget) == ["busy", "quiet"]  # exactly forget_after: kept
    # More than forget_after: "quiet" still gets this tick (so its state can expire) ...
    assert tick_to(MONDAY + forget + timedelta(days=1)) == ["busy", "quiet"]
    # ... and no more after it, while "busy", which keeps having items, keeps getting them.
    assert tick_to(MONDAY + forget + timedelta(days=2)) == ["busy"]
    assert tick_to(MONDAY + forget + timedelta(days=30)) == ["busy"]
    assert "quiet" not in clock.snapshot().keys
    # An item for it later makes it a key like any other again.
    day = MONDAY + forget + timedelta(days=31)
    assert [k for k, _ in ticks(clock.on_batch([(day, ("quiet",))]))] == ["busy", "quiet"]


@pytest.mark.parametrize("jump", [False, True], ids=["daily", "one-jump"])
def test_a_forgotten_key_was_left_empty_by_its_last_tick(jump: bool) -> None:
    """What the clock forgets needs no more time: its last tick decided and expired it all."""
    settings = MatchSettings()
    clock = ClockLogic(True, settings, None)
    key = "pay|H001|aetna"
    match = MatchLogic(settings, True, None)
    out, discard = match.on_batch([remittance("r-alone", day=MONDAY, trace="77777")])
    assert (list(out), discard) == ([], RETAIN)
    ticks_for_key: list[Tick] = []
    last = MONDAY + clock.forget_after + timedelta(days=3)
    span = (last - MONDAY).days
    later = [last] if jump else [MONDAY + timedelta(days=n) for n in range(1, span + 1)]
    for day in [MONDAY, *later]:
        got = ticks(clock.on_batch([(day, (key,) if day == MONDAY else ("other",))]))
        ticks_for_key += [t for k, t in got if k == key]
    assert key not in clock.snapshot().keys
    decided: list[Decided] = []
    for tick in ticks_for_key:
        results, discard = match.on_batch([tick])
        decided += [r for r in results if isinstance(r, Decided)]
    assert discard is DISCARD and match.state.is_empty
    assert [(d.decision.outcome, d.decision.reason) for d in decided] == [
        ("unmatched", "no_counterpart")
    ]


def test_file_mode_clock_ticks_once_at_end_of_input_to_every_key() -> None:
    clock = ClockLogic(False, MatchSettings(), None)
    far = MONDAY + clock.forget_after * 3  # file mode forgets nothing
    assert ticks(clock.on_batch([(MONDAY, ("a", "b"))])) == []
    assert ticks(clock.on_batch([(far, ("c",)), (MONDAY, ("d",))])) == []
    final = Tick(far, final=True)
    assert run_eof(clock) == ([(k, final) for k in "abcd"], DISCARD)


def test_file_mode_clock_without_input_sends_nothing() -> None:
    assert run_eof(ClockLogic(False, MatchSettings(), None)) == ([], RETAIN)


def test_a_restored_clock_ticks_the_keys_it_had_seen() -> None:
    clock = ClockLogic(True, MatchSettings(), None)
    clock.on_batch([(MONDAY, ("a", "b"))])
    snap = clock.snapshot()
    clock.on_batch([(MONDAY + timedelta(days=1), ("c",))])  # the snapshot must not see this
    restored = ClockLogic(True, MatchSettings(), snap)
    assert ticks(restored.on_batch([(MONDAY, ("d",))])) == []  # same day: already ticked
    next_day = MONDAY + timedelta(days=1)
    assert ticks(restored.on_batch([(next_day, ("e",))])) == [(k, Tick(next_day)) for k in "abde"]
