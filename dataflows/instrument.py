"""The reconciliation dataflow's metrics (:mod:`remitflow.metrics`), updated once per batch.

A Prometheus update costs about a microsecond (a lock; an mmap write in multiprocess mode), as
much as a good share of an item's whole trip through the graph. So the steps here count a batch
in plain Python and touch each labelled series once per batch:

* :func:`count_events_in`: events in, per stream (the first step after the input);
* :class:`PayerMeter`: remittances and bank lines decided, per stream, payer and outcome (the
  match step's output, where the routed payer is still known);
* :func:`count_records`: outcomes per outcome and rule (audit records), dead letters, duplicates,
  exception ages and variances (the records on their way to the sink);
* :class:`MatchMeter`: held by each key's match logic, it keeps the process's open-items gauge
  by deltas and times decisions from the arrival of their last item.

Each step returns its batch unchanged; an identity batch step costs Bytewax about 10 ns an item.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics import Counter as PromCounter

from remitflow.events import BankTransaction, Posting, Remittance
from remitflow.metrics import (
    DEAD_LETTERS,
    DECISION_LATENCY,
    DUPLICATES,
    EVENTS_IN,
    EXCEPTION_AGE,
    OPEN_ITEMS,
    OUTCOMES,
    PAYER_OUTCOMES,
    STREAMS,
    VARIANCE_AMOUNT,
    system_label,
)
from remitflow.refdata import ReferenceData
from state.items import OpenItem
from state.key_state import Decided, KeyState, Noted

# Children of the bounded label sets, bound once: every series exists (at 0) from the start.
_EVENTS_IN: dict[type, PromCounter] = {
    Remittance: EVENTS_IN.labels(stream="remittance"),
    BankTransaction: EVENTS_IN.labels(stream="bank_transaction"),
    Posting: EVENTS_IN.labels(stream="posting"),
}
_OPEN_REMITTANCES = OPEN_ITEMS.labels(stream="remittance")
_OPEN_DEPOSITS = OPEN_ITEMS.labels(stream="bank_transaction")
_AGE = {stream: EXCEPTION_AGE.labels(stream=stream) for stream in STREAMS}
VARIANCE_REASONS = ("fee", "amount_mismatch", "remit_unbalanced")
_VARIANCE = {reason: VARIANCE_AMOUNT.labels(reason=reason) for reason in VARIANCE_REASONS}
_VARIANCE_OTHER = VARIANCE_AMOUNT.labels(reason="other")


def count_events_in(batch: list[Any]) -> list[Any]:
    """Canonical events in, per stream; dead letters and parse issues are counted as records."""
    for kind, n in Counter(map(type, batch)).items():
        child = _EVENTS_IN.get(kind)
        if child is not None:
            child.inc(n)
    return batch


class PayerMeter:
    """Outcomes of remittances and bank lines per payer: a payer id that reference data knows,
    ``other`` for an id it does not know, ``unknown`` when no payer was recognised; bank text
    never becomes a label."""

    def __init__(self, refdata: ReferenceData) -> None:
        self._labels: dict[str, str] = {p.id: p.id for p in refdata.payers}

    def label(self, payer: str) -> str:
        return self._labels.get(payer) or ("unknown" if payer == "?" else "other")

    def __call__(
        self, batch: list[tuple[str, Decided | Noted]]
    ) -> list[tuple[str, Decided | Noted]]:
        counts: Counter[tuple[str, str, str]] = Counter()  # no list: a big one wakes the GC
        for _, result in batch:
            if isinstance(result, Decided):
                decided: str = result.decision.outcome
                for item in result.decision.items:
                    counts[(item.kind, item.payer, decided)] += 1
            else:
                counts[(result.item.kind, result.item.payer, result.outcome)] += 1
        for (stream, payer, outcome), n in counts.items():
            PAYER_OUTCOMES.labels(stream, self.label(payer), outcome).inc(n)
        return batch


def count_records(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Outcome, dead-letter, exception and variance metrics of the records bound for the sink."""
    outcomes: Counter[tuple[str, str | None]] = Counter()
    letters: Counter[tuple[str, str]] = Counter()
    for stem, record in batch:
        if stem == "audit":
            outcomes[(record["outcome"], record["rule"])] += 1
        elif stem == "unmatched":  # unmatched items and ERP confirmations that did not post
            age = record.get("age_business_days")
            child = _AGE.get(record.get("kind") or "")
            if child is not None and age is not None:
                child.observe(age)
        elif stem == "variance":
            variance = record.get("variance") or {}
            amount = variance.get("amount")
            if amount is not None:  # a metric sample is a float by definition; no money math
                reason = variance.get("reason")
                child = _VARIANCE.get(reason, _VARIANCE_OTHER) if reason else _VARIANCE_OTHER
                child.observe(abs(float(amount)))
        elif stem == "dead_letter":
            letters[(record.get("stage") or "other", system_label(record))] += 1
    for (outcome, rule), n in outcomes.items():
        OUTCOMES.labels(outcome, rule or "none").inc(n)
        if outcome == "duplicate":
            DUPLICATES.inc(n)
    for (stage, system), n in letters.items():
        DEAD_LETTERS.labels(stage, system).inc(n)
    return batch


class MatchMeter:
    """One per key's match logic: the process's open items by deltas, and decision latency.

    Arrival times are wall-clock (monotonic) moments at which items that stayed open reached
    the match step; they are not part of the key's snapshot, so items restored from one have
    none and their cases are not timed. An item decided in the batch it arrived in was decided
    on arrival: latency 0.
    """

    __slots__ = ("arrived", "deposits", "remittances")

    def __init__(self, state: KeyState) -> None:
        restored = (*state.remittances, *state.deposits)
        self.arrived: dict[str, float | None] = dict.fromkeys(restored)
        self.remittances = 0
        self.deposits = 0
        self._open(state)

    def _open(self, state: KeyState) -> None:
        remittances, deposits = len(state.remittances), len(state.deposits)
        if remittances != self.remittances:
            _OPEN_REMITTANCES.inc(remittances - self.remittances)
            self.remittances = remittances
        if deposits != self.deposits:
            _OPEN_DEPOSITS.inc(deposits - self.deposits)
            self.deposits = deposits

    def after(self, values: Iterable[Any], out: list[Decided | Noted], state: KeyState) -> None:
        """After a batch (or the end of input): ``values`` came in, ``out`` went out."""
        now = time.monotonic()
        arrived = self.arrived
        open_rems, open_deps = state.remittances, state.deposits
        for value in values:
            if isinstance(value, OpenItem):
                eid = value.event_id
                if eid not in arrived and (eid in open_rems or eid in open_deps):
                    arrived[eid] = now
        for result in out:
            if isinstance(result, Decided):
                decision = result.decision
                last: float | None = 0.0
                for item in decision.items:
                    arrival = arrived.pop(item.event_id, now)
                    if arrival is None or last is None:
                        last = None  # restored: its arrival is not known
                    elif arrival > last:
                        last = arrival
                if last is not None and decision.outcome != "unmatched":
                    DECISION_LATENCY.observe(now - last)
        self._open(state)
