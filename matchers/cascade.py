"""The order in which the rules of DESIGN.md §3 look at a key's open items.

``EARLY`` rules are certain the moment their items are present (a trace with equal amounts, an
exact consolidation, a zero-pay ERA), so they run on every arrival, over the arriving item's
trace group only. ``CLOSING`` rules weigh alternatives (payer + amount + date, subsets,
variances, ambiguity), so they run only when the window of the oldest item involved has closed
in event time, over every open item of the key: by then every candidate has arrived, and the
outcome does not depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Sequence

from matchers.base import Candidates, Decision, Matcher
from matchers.consolidated import ConsolidatedByPayerDate, ConsolidatedByTrace
from matchers.non_payment import NonPayment
from matchers.payer_amount_date import PayerAmountDate
from matchers.trace import CheckNumber, TraceExact, TraceNormalized, TraceSingleFit
from matchers.variance import AmountVariance, RemitUnbalanced

EARLY: tuple[Matcher, ...] = (
    NonPayment(),
    TraceExact(),
    TraceNormalized(),
    CheckNumber(),
    ConsolidatedByTrace(),
    RemitUnbalanced(),
)
CLOSING: tuple[Matcher, ...] = (
    PayerAmountDate(),
    ConsolidatedByPayerDate(),
    TraceSingleFit(),
    AmountVariance(),
)
ALL: tuple[Matcher, ...] = EARLY + CLOSING


def run(matchers: Sequence[Matcher], candidates: Candidates) -> list[Decision]:
    """Apply ``matchers`` in order; what a decision consumes is hidden from the next rules."""
    decisions: list[Decision] = []
    rems, deps = candidates.remittances, candidates.deposits
    for matcher in matchers:
        if not rems and not deps:
            break
        found = matcher.decide(Candidates(rems, deps, candidates.settings))
        if not found:
            continue
        decisions.extend(found)
        used = {i.event_id for d in found for i in d.items}
        rems = tuple(r for r in rems if r.event_id not in used)
        deps = tuple(d for d in deps if d.event_id not in used)
    return decisions
