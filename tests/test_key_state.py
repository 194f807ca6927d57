"""KeyState end to end, without Bytewax: arrivals, event time, duplicates, snapshots.

``MONDAY`` is 2024-03-04; an item's deadline is 4 business days after its day (an ERA of
Monday is late from Friday 2024-03-08 on).
"""

from __future__ import annotations

import copy
import itertools
import pickle
from collections.abc import Iterable
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.base import MatchSettings
from state.items import OpenItem
from state.key_state import Decided, KeyState, Noted, Result, Tick
from tests.factories import MONDAY, deposit, ids, payments, remittance, with_unique_ids

S = MatchSettings()
TUESDAY, WEDNESDAY, FRIDAY = (MONDAY + timedelta(days=n) for n in (1, 2, 4))
Event = OpenItem | Tick


def feed(state: KeyState, events: Iterable[Event], *, early: bool = True) -> list[Result]:
    out: list[Result] = []
    for event in events:
        if isinstance(event, Tick):
            out += state.advance(event, S)
        else:
            out += state.add(event, S, early=early)
    return out


def run(events: Iterable[Event], *, early: bool = True) -> list[Result]:
    return feed(KeyState(), events, early=early)


def outcomes(results: Iterable[Result]) -> list[tuple[object, ...]]:
    """What a decision says, and when (``as_of`` only dates the age of unmatched items)."""
    out: list[tuple[object, ...]] = []
    for r in results:
        if isinstance(r, Noted):
            out.append((r.outcome, r.rule, r.item.event_id))
        else:
            d = r.decision
            out.append((d.outcome, d.rule, d.reason, ids(d.items), r.decided_on))
    return sorted(out, key=repr)


def is_empty(state: KeyState) -> bool:
    return state.is_empty  # (a call, so that mypy does not narrow the property)


def only_decision(results: list[Result]) -> Decided:
    [result] = results
    assert isinstance(result, Decided)
    return result


# -- arrival order ---------------------------------------------------------------------------


def test_a_trace_match_is_decided_on_arrival_in_either_order() -> None:
    era, bank = remittance(trace="0012524965"), deposit(day=TUESDAY, trace="0012524965")
    for first, second in ((era, bank), (bank, era)):
        state = KeyState()
        assert state.add(first, S) == []
        got = only_decision(state.add(second, S))
        assert (got.decision.rule, ids(got.decision.items)) == (
            "trace_exact",
            frozenset({"r1", "d1"}),
        )
        assert got.decided_on == TUESDAY  # when the later item happened, whatever the order
        assert state.open_items == 0


@settings(max_examples=40, deadline=None)
@given(group=payments(exact=True).map(with_unique_ids), data=st.data())
def test_any_arrival_order_of_one_payment_gives_the_same_decisions(
    group: list[OpenItem], data: st.DataObject
) -> None:
    final = Tick(MONDAY + timedelta(days=30), final=True)
    results = run([*group, final])
    shuffled = data.draw(st.permutations(group))
    assert outcomes(run([*shuffled, final])) == outcomes(results)
    decided = [i for r in results if isinstance(r, Decided) for i in ids(r.decision.items)]
    assert sorted(decided) == sorted(i.event_id for i in group)  # each item decided once


def test_a_split_payment_is_decided_when_its_last_part_arrives() -> None:
    parts = [
        remittance("r1", 60_000, trace="EFT9"),
        remittance("r2", 40_000, trace="EFT9", day=TUESDAY),
        deposit("d1", 100_000, trace="EFT9", day=WEDNESDAY),
    ]
    state = KeyState()
    assert state.add(parts[2], S) == [] and state.add(parts[0], S) == []
    got = only_decision(state.add(parts[1], S))
    assert (got.decision.rule, got.decided_on) == ("consolidated", WEDNESDAY)


def test_a_zero_pay_era_is_decided_on_arrival() -> None:
    got = only_decision(KeyState().add(remittance(cents=0, expects_cash=False), S))
    assert (got.decision.outcome, got.decision.rule) == ("matched", "non_payment")


def test_a_second_era_with_the_same_trace_is_ambiguous_whatever_the_arrival_order() -> None:
    """A corrected ERA re-issued with the payment's trace: two equally good ERAs, one deposit.

    In file mode (no early decisions) the three are decided together at the end, in every
    arrival order: ambiguous (rule 7, never guess).
    """
    r1 = remittance("r1", 10_000, trace="EFT5")
    r2 = remittance("r2", 10_000, trace="EFT5", day=TUESDAY)
    d1 = deposit("d1", 10_000, trace="EFT5", day=TUESDAY)
    final = Tick(MONDAY + timedelta(days=14), final=True)
    for order in itertools.permutations([r1, r2, d1]):
        assert [o[:4] for o in outcomes(run([*order, final], early=False))] == [
            ("unmatched", "ambiguous", "ambiguous", frozenset({"r1", "r2", "d1"}))
        ], [i.event_id for i in order]


def test_in_continuous_mode_an_early_pair_is_decided_before_a_late_twin() -> None:
    """The price of deciding on arrival, documented: the first complete pair is matched."""
    r1 = remittance("r1", 10_000, trace="EFT5")
    r2 = remittance("r2", 10_000, trace="EFT5", day=TUESDAY)
    d1 = deposit("d1", 10_000, trace="EFT5", day=TUESDAY)
    got = outcomes(run([r1, d1, r2, Tick(MONDAY + timedelta(days=14), final=True)]))
    assert got[0][:4] == ("matched", "trace_exact", None, frozenset({"r1", "d1"}))
    assert got[1][:4] == ("unmatched", "no_counterpart", "no_counterpart", frozenset({"r2"}))


# -- duplicates and bank lines that are not payer cash ----------------------------------------


def test_a_duplicate_is_noted_and_changes_nothing() -> None:
    state = KeyState()
    era = remittance()
    assert state.add(era, S) == []
    before = state.snapshot()
    assert state.add(copy.deepcopy(era), S) == [Noted(era, "duplicate", "duplicate")]
    assert state.snapshot() == before
    # Still a duplicate once its first copy has been decided: a re-sent file is no new case.
    assert len(state.add(deposit(trace="12524965"), S)) == 1
    assert state.add(era, S) == [Noted(era, "duplicate", "duplicate")]
    assert state.open_items == 0


def test_a_bank_line_that_is_not_payer_cash_is_noted_never_opened() -> None:
    state = KeyState()
    sweep = deposit("z1", category="zba")
    assert state.add(sweep, S) == [Noted(sweep, "not_payer_cash", "zba")]
    assert state.open_items == 0
    assert state.add(sweep, S) == [Noted(sweep, "duplicate", "duplicate")]
    assert state.advance(Tick(MONDAY + timedelta(days=30), final=True), S) == []


# -- event time ------------------------------------------------------------------------------


def test_closing_rules_wait_for_a_tick_past_the_deadline() -> None:
    era = remittance("r1", 12_345, trace="EFT1")  # deadline Friday
    bank = deposit("d1", 12_345, day=TUESDAY)  # no addenda: payer + amount + date
    state = KeyState()
    assert feed(state, [era, bank, Tick(TUESDAY), Tick(MONDAY + timedelta(days=3))]) == []
    got = only_decision(state.advance(Tick(FRIDAY), S))
    assert (got.decision.rule, ids(got.decision.items)) == (
        "payer_amount_date",
        frozenset({"r1", "d1"}),
    )
    assert got.decided_on == FRIDAY
    assert state.open_items == 0


def test_a_variance_is_decided_when_the_window_closes_not_on_arrival() -> None:
    state = KeyState()
    assert feed(state, [remittance(cents=10_000), deposit(cents=9_950, trace="12524965")]) == []
    got = only_decision(state.advance(Tick(FRIDAY), S))
    assert (got.decision.outcome, got.decision.reason, got.decision.variance_cents) == (
        "variance",
        "fee",
        -50,
    )


def test_no_counterpart_when_the_deadline_passes() -> None:
    state = KeyState()
    feed(state, [remittance()])
    assert state.advance(Tick(MONDAY + timedelta(days=3)), S) == []
    got = only_decision(state.advance(Tick(MONDAY + timedelta(days=9)), S))
    assert (got.decision.outcome, got.decision.reason) == ("unmatched", "no_counterpart")
    assert (got.decided_on, got.as_of) == (FRIDAY, MONDAY + timedelta(days=9))


def test_the_final_tick_closes_late_items_as_no_counterpart_and_recent_ones_as_end_of_input() -> (
    None
):
    late = remittance("r1", 10_000, trace="EFT1")  # Monday: late from Friday
    recent = deposit("d1", 77_777, day=MONDAY + timedelta(days=7), trace="EFT2")
    state = KeyState()
    feed(state, [late, recent])
    watermark = MONDAY + timedelta(days=8)
    results = state.advance(Tick(watermark, final=True), S)
    by_item = {next(iter(ids(r.decision.items))): r for r in results if isinstance(r, Decided)}
    assert len(results) == 2
    assert by_item["r1"].decision.reason == "no_counterpart"
    assert by_item["r1"].decided_on == FRIDAY
    assert by_item["d1"].decision.reason == "end_of_input"
    assert by_item["d1"].decided_on == watermark
    assert all(r.decision.rule == r.decision.reason for r in by_item.values())
    assert {r.as_of for r in by_item.values()} == {watermark}
    assert state.is_empty


def test_the_watermark_never_goes_back() -> None:
    state = KeyState()
    state.advance(Tick(FRIDAY), S)
    state.advance(Tick(MONDAY), S)
    assert state.watermark == FRIDAY


# -- snapshots -------------------------------------------------------------------------------


def _busy_state() -> tuple[KeyState, list[Event]]:
    """A state with open items of every kind, and what happens to it next."""
    state = KeyState()
    feed(
        state,
        [
            remittance("r1", 60_000, trace="EFT1"),
            deposit("d1", 100_000, trace="EFT1", day=TUESDAY),
            remittance("r3", 12_345, trace="EFT3"),
            remittance("r4", 5_000, trace="EFT4"),
            deposit("z1", category="fee"),
            Tick(MONDAY),
        ],
    )
    later: list[Event] = [
        remittance("r1", 60_000, trace="EFT1"),  # duplicate
        remittance("r2", 40_000, trace="EFT1", day=TUESDAY),  # completes EFT1
        deposit("d3", 12_345, day=WEDNESDAY),  # payer + amount + date for r3
        Tick(FRIDAY),
        deposit("d9", 1_000, day=FRIDAY, trace="EFT9"),  # late from Thursday 14th
        Tick(FRIDAY + timedelta(days=3), final=True),
    ]
    return state, later


def test_a_restored_snapshot_behaves_like_the_original() -> None:
    state, later = _busy_state()
    restored = KeyState.restore(pickle.loads(pickle.dumps(state.snapshot())))
    assert restored.by_trace == state.by_trace and restored.watermark == state.watermark
    expected = feed(state, later)
    assert feed(restored, later) == expected
    assert {d.decision.rule for d in expected if isinstance(d, Decided)} == {
        "consolidated",
        "payer_amount_date",
        "no_counterpart",
        "end_of_input",
    }


def test_a_snapshot_is_independent_of_later_changes() -> None:
    state, later = _busy_state()
    snap = state.snapshot()
    frozen = copy.deepcopy(snap)
    feed(state, later)
    assert state.is_empty
    assert snap == frozen
    assert KeyState.restore(snap).open_items == 4


# -- seen ids and an empty state -------------------------------------------------------------


def test_seen_ids_outlive_the_items_then_expire_after_the_retention() -> None:
    state = KeyState()
    era = remittance()
    feed(state, [era, deposit(trace="12524965"), Tick(FRIDAY)])
    assert state.open_items == 0 and not is_empty(state)  # kept to spot a re-sent file
    state.advance(Tick(MONDAY + timedelta(days=60)), S)
    assert state.add(era, S) == [Noted(era, "duplicate", "duplicate")]
    state.advance(Tick(MONDAY + timedelta(days=61)), S)
    assert state.is_empty
    assert state.add(era, S) == []  # forgotten: a new open item
    assert state.open_items == 1


def test_retention_is_configurable_and_the_final_tick_forgets_everything() -> None:
    state = KeyState()
    feed(state, [remittance(expects_cash=False)])
    state.advance(Tick(MONDAY + timedelta(days=2)), S, seen_retention=1)
    assert state.is_empty
    state = KeyState()
    feed(state, [remittance(expects_cash=False)])
    state.advance(Tick(MONDAY, final=True), S)
    assert state.is_empty


def test_days_used_here() -> None:
    assert date(2024, 3, 8) == FRIDAY and remittance().deadline == FRIDAY


def test_a_counterpart_after_its_items_window_closed_reopens_nothing_and_is_flagged_late() -> None:
    """DESIGN §3 decides no_counterpart when the window closes; the ERA that arrives after that
    must not silently re-open the deposit's case: it is unmatched ``late_counterpart`` at once,
    so both sides sit in the exception queue together."""
    state = KeyState()
    feed(state, [deposit(trace="12524965")])
    lapsed = only_decision(state.advance(Tick(MONDAY + timedelta(days=9)), S))
    assert lapsed.decision.reason == "no_counterpart"
    late = only_decision(state.add(remittance(day=MONDAY + timedelta(days=10)), S))
    assert (late.decision.outcome, late.decision.rule) == ("unmatched", "late_counterpart")
    assert ids(late.decision.items) == {"r1"} and state.open_items == 0
    # Another deposit with that trace is no counterpart of the lapsed deposit: it waits as usual.
    assert state.add(deposit("d2", trace="12524965", day=MONDAY + timedelta(days=10)), S) == []
    # The memory survives a snapshot and ends with the retention of seen ids.
    restored = KeyState.restore(pickle.loads(pickle.dumps(state.snapshot())))
    assert restored.lapsed == state.lapsed
    restored.advance(Tick(MONDAY + timedelta(days=120)), S)
    assert restored.lapsed == {}


def test_a_late_counterpart_with_an_open_twin_is_matched_as_usual() -> None:
    state = KeyState()
    feed(state, [deposit(trace="12524965")])
    state.advance(Tick(MONDAY + timedelta(days=9)), S)
    later = MONDAY + timedelta(days=10)
    feed(state, [deposit("d2", trace="12524965", day=later)])
    got = only_decision(state.add(remittance(day=later), S))
    assert got.decision.outcome == "matched" and ids(got.decision.items) == {"d2", "r1"}
