"""The matching state of one correlation key, with no Bytewax in it.

A key is one payer at one entity (or one entity's checks, or its non-payer bank lines; see
:mod:`dataflows.routing`). Its state holds the open remittances and deposits, indexed by trace,
and the ids it has seen (so a re-sent file is a duplicate, not a second case). It is plain,
picklable Python so that the Bytewax operator can snapshot it, the pure-Python benchmark can
drive it directly, and tests need no dataflow.

Time is event time, carried by :class:`Tick`. Early rules decide on arrival; closing rules and
"no counterpart" decide when a tick moves the key's watermark past an item's deadline, or at
the final tick (end of input in file mode), when everything still open is decided: late items
are ``no_counterpart``, the others ``end_of_input``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from matchers import cascade
from matchers.base import Candidates, Decision, MatchSettings
from remitflow.events import PAYER_CASH_CATEGORIES
from state.items import OpenItem

NO_COUNTERPART = "no_counterpart"
END_OF_INPUT = "end_of_input"
# A counterpart that arrives after its item was decided no_counterpart: the decision stands
# (nothing is re-opened silently) and the late item gets this outcome at once, so both sides
# are in the exception queue, side by side, for an operator.
LATE_COUNTERPART = "late_counterpart"


@dataclass(frozen=True, slots=True)
class Tick:
    """Event time has reached ``watermark`` (a business date) for every key."""

    watermark: date
    final: bool = False


@dataclass(frozen=True, slots=True)
class Noted:
    """A terminal outcome that makes no case: counted and audited, never matched."""

    item: OpenItem
    outcome: Literal["duplicate", "not_payer_cash"]
    rule: str


@dataclass(frozen=True, slots=True)
class Decided:
    """A cascade decision with the event time at which it was taken."""

    decision: Decision
    decided_on: date
    as_of: date  # for the age of unmatched items


Result = Decided | Noted
Snapshot = tuple[
    dict[str, OpenItem],
    dict[str, OpenItem],
    dict[str, date],
    date | None,
    dict[str, tuple[bool, date]],
]


class KeyState:
    """Open items and seen ids of one key. ``add`` and ``advance`` return what was decided."""

    __slots__ = ("by_trace", "deposits", "lapsed", "remittances", "seen", "watermark")

    def __init__(self) -> None:
        self.remittances: dict[str, OpenItem] = {}
        self.deposits: dict[str, OpenItem] = {}
        self.by_trace: dict[str, set[str]] = {}
        self.seen: dict[str, date] = {}
        # trace key → (was a remittance, its day) of items decided no_counterpart
        self.lapsed: dict[str, tuple[bool, date]] = {}
        self.watermark: date | None = None

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """An independent copy for recovery (items are never mutated, so shallow is enough)."""
        return (
            dict(self.remittances),
            dict(self.deposits),
            dict(self.seen),
            self.watermark,
            dict(self.lapsed),
        )

    @classmethod
    def restore(cls, snap: Snapshot) -> KeyState:
        state = cls()
        rems, deps, seen, watermark, lapsed = snap
        state.seen = dict(seen)
        state.lapsed = dict(lapsed)
        state.watermark = watermark
        for item in (*rems.values(), *deps.values()):
            state._open(item)
        return state

    @property
    def is_empty(self) -> bool:
        return not self.remittances and not self.deposits and not self.seen and not self.lapsed

    @property
    def open_items(self) -> int:
        return len(self.remittances) + len(self.deposits)

    # -- arrivals ------------------------------------------------------------------------------

    def add(self, item: OpenItem, settings: MatchSettings, *, early: bool = True) -> list[Result]:
        """Take an item; with ``early`` (continuous mode) decide what is certain already.

        Without ``early`` (file mode) every rule waits for the final tick, so no decision can
        depend on the order in which files were read: a 1:1 trace pair decided on arrival
        would otherwise miss a second ERA with the same trace that arrives later (ambiguous).
        """
        if item.event_id in self.seen:
            return [Noted(item, "duplicate", "duplicate")]
        self.seen[item.event_id] = item.day
        if item.kind == "bank_transaction" and item.category not in PAYER_CASH_CATEGORIES:
            return [Noted(item, "not_payer_cash", item.category or "other")]
        self._open(item)
        if not early:
            return []
        late = self._late(item)
        if late is not None:
            return [late]
        if item.is_remittance and not item.expects_cash:
            group = [item]
        elif item.trace_key:
            group = [self._get(eid) for eid in sorted(self.by_trace[item.trace_key])]
        else:
            return []
        rems = tuple(i for i in group if i.is_remittance)
        deps = tuple(i for i in group if not i.is_remittance)
        found = cascade.run(cascade.EARLY, Candidates(rems, deps, settings))
        return [Decided(d, max(i.day for i in d.items), item.day) for d in self._close(found)]

    # -- event time ----------------------------------------------------------------------------

    def advance(
        self, tick: Tick, settings: MatchSettings, seen_retention: int = 60
    ) -> list[Result]:
        """Move the watermark; decide what is due (everything, at the final tick)."""
        if self.watermark is None or tick.watermark > self.watermark:
            self.watermark = tick.watermark
        watermark = self.watermark
        results: list[Result] = []
        due = {
            eid
            for eid, item in (*self.remittances.items(), *self.deposits.items())
            if tick.final or item.deadline <= watermark
        }
        if due and tick.final:
            # Rules certain on presence first (all of them, when arrivals did not run them).
            found = cascade.run(cascade.EARLY, self._candidates(settings))
            for d in self._close(found):
                results.append(Decided(d, max(i.day for i in d.items), watermark))
        if due:
            found = cascade.run(cascade.CLOSING, self._candidates(settings))
            applied = [d for d in found if any(i.event_id in due for i in d.items)]
            for d in self._close(applied):
                decided_on = min(watermark, max(i.deadline for i in d.items))
                results.append(Decided(d, max(decided_on, *(i.day for i in d.items)), watermark))
            for eid in sorted(due):
                item = self.remittances.get(eid) or self.deposits.get(eid)
                if item is None:
                    continue  # decided above
                late = item.deadline <= watermark
                reason = NO_COUNTERPART if late else END_OF_INPUT
                if late and item.trace_key:
                    self.lapsed[item.trace_key] = (item.is_remittance, item.day)
                decision = Decision("unmatched", reason, None, *_sides(item), reason=reason)
                self._close([decision])
                results.append(Decided(decision, item.deadline if late else watermark, watermark))
        if not tick.final:
            horizon = watermark - timedelta(days=seen_retention)
            self.seen = {eid: day for eid, day in self.seen.items() if day >= horizon}
            self.lapsed = {k: v for k, v in self.lapsed.items() if v[1] >= horizon}
        else:
            self.seen.clear()
            self.lapsed.clear()
        return results

    # -- internals -----------------------------------------------------------------------------

    def _late(self, item: OpenItem) -> Decided | None:
        """The counterpart of an item already decided no_counterpart, with nothing else open to
        meet: unmatched ``late_counterpart`` now, rather than waiting out a window of its own."""
        trace = item.trace_key
        lapsed = self.lapsed.get(trace) if trace else None
        if trace is None or lapsed is None or lapsed[0] == item.is_remittance:
            return None
        others = self.by_trace.get(trace, set()) - {item.event_id}
        if any(self._get(e).is_remittance != item.is_remittance for e in others):
            return None  # a counterpart is still open: the cascade decides as usual
        decision = Decision(
            "unmatched", LATE_COUNTERPART, None, *_sides(item), reason=LATE_COUNTERPART
        )
        self._close([decision])
        return Decided(decision, item.day, item.day)

    def _candidates(self, settings: MatchSettings) -> Candidates:
        return Candidates(
            tuple(sorted(self.remittances.values(), key=_order)),
            tuple(sorted(self.deposits.values(), key=_order)),
            settings,
        )

    def _get(self, eid: str) -> OpenItem:
        return self.remittances.get(eid) or self.deposits[eid]

    def _open(self, item: OpenItem) -> None:
        (self.remittances if item.is_remittance else self.deposits)[item.event_id] = item
        if item.trace_key:
            self.by_trace.setdefault(item.trace_key, set()).add(item.event_id)

    def _close(self, decisions: list[Decision]) -> list[Decision]:
        for d in decisions:
            for item in d.items:
                (self.remittances if item.is_remittance else self.deposits).pop(item.event_id, None)
                if item.trace_key:
                    ids = self.by_trace.get(item.trace_key)
                    if ids is not None:
                        ids.discard(item.event_id)
                        if not ids:
                            del self.by_trace[item.trace_key]
        return decisions


def _order(item: OpenItem) -> tuple[date, str]:
    return item.day, item.event_id


def _sides(item: OpenItem) -> tuple[tuple[OpenItem, ...], tuple[OpenItem, ...]]:
    return ((item,), ()) if item.is_remittance else ((), (item,))
