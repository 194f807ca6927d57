"""Rule 5: a deposit without a trace, matched by payer, amount and date; rule 7: never guess.

The payer is recognised upstream (payer id in the addenda or company id, else the company name
against the payer master with rapidfuzz, see :mod:`matchers.payer_recognition`), so candidates
share a payer by construction; a deposit whose payer was not recognised (payer ``?``) is never
matched here: an equal amount alone is never enough. A remittance is a candidate when no deposit
carries its trace, it expects cash, its amount is equal and its date is within the window.
Exactly one candidate on each side → matched with lower confidence; anything more → every item
involved is ``unmatched`` / ``ambiguous``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from matchers.base import Candidates, Decision, cash_match, ordered
from remitflow.calendar import business_days_between
from state.items import OpenItem

AMBIGUOUS = "ambiguous"


def eligible_pairs(
    candidates: Candidates,
) -> tuple[list[tuple[OpenItem, OpenItem]], list[OpenItem]]:
    """(deposit, remittance) pairs of equal amount within the window; the trace-less deposits."""
    s = candidates.settings
    deposit_traces = {d.trace_key for d in candidates.deposits if d.trace_key}
    deposits = [
        d
        for d in candidates.deposits
        if not d.trace_key and d.category not in ("lockbox", "check_deposit")
    ]
    by_amount: dict[int, list[OpenItem]] = defaultdict(list)
    for r in candidates.remittances:
        if r.expects_cash and r.trace_key not in deposit_traces:
            by_amount[r.cents].append(r)
    pairs = [
        (d, r)
        for d in deposits
        if d.payer != "?"
        for r in by_amount.get(d.cents, ())
        if abs(business_days_between(r.day, d.day)) <= s.window_business_days
    ]
    return pairs, deposits


class PayerAmountDate:
    rule = "payer_amount_date"
    confidence = 0.8

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        pairs, _ = eligible_pairs(candidates)
        by_dep: dict[str, list[OpenItem]] = defaultdict(list)
        by_rem: dict[str, list[OpenItem]] = defaultdict(list)
        items: dict[str, OpenItem] = {}
        for d, r in pairs:
            by_dep[d.event_id].append(r)
            by_rem[r.event_id].append(d)
            items[d.event_id] = d
            items[r.event_id] = r
        out: list[Decision] = []
        seen: set[str] = set()
        # Connected components of the candidate graph, in a canonical order.
        for start in sorted(by_dep, key=lambda i: (items[i].day, i)):
            if start in seen:
                continue
            comp_d: dict[str, OpenItem] = {}
            comp_r: dict[str, OpenItem] = {}
            stack = [("d", start)]
            while stack:
                side, eid = stack.pop()
                if side == "d":
                    if eid in comp_d:
                        continue
                    comp_d[eid] = items[eid]
                    stack.extend(("r", r.event_id) for r in by_dep[eid])
                else:
                    if eid in comp_r:
                        continue
                    comp_r[eid] = items[eid]
                    stack.extend(("d", d.event_id) for d in by_rem[eid])
            seen.update(comp_d)
            rems = tuple(ordered(list(comp_r.values())))
            deps = tuple(ordered(list(comp_d.values())))
            if len(rems) == 1 and len(deps) == 1:
                out.append(cash_match(self.rule, self.confidence, rems, deps))
            else:
                out.append(Decision("unmatched", AMBIGUOUS, None, rems, deps, reason=AMBIGUOUS))
        return out
