"""Rule 3: several remittances for one deposit, or one remittance paid in several deposits.

By trace (decided as soon as the amounts add up exactly): every remittance and deposit sharing
a trace, when there are at least three of them and both sides sum to the same cents.

By payer and date (decided only when the window closes, so every candidate is in): a deposit
with no trace and no single equal remittance, and exactly one set of the payer's open
remittances within the window that sums to it. The subset search is bounded
(``max_subset_candidates`` nearest by date, sets of at most ``max_subset_size``): a payer with
hundreds of open ERAs must not turn one deposit into an exponential search. Two sets that fit
are ambiguous, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from matchers.base import Candidates, Decision, cash_match, ordered
from matchers.payer_amount_date import AMBIGUOUS, eligible_pairs
from matchers.trace import trace_groups
from remitflow.calendar import business_days_between
from state.items import OpenItem


class ConsolidatedByTrace:
    rule = "consolidated"
    confidence = 0.95

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        out: list[Decision] = []
        for _, rems, deps in trace_groups(candidates):
            if len(rems) + len(deps) < 3:
                continue
            if sum(r.cents for r in rems) != sum(d.cents for d in deps):
                continue
            if not all(r.balanced for r in rems):
                continue  # the unbalanced-remittance rule reports it
            out.append(
                Decision(
                    "matched",
                    self.rule,
                    self.confidence,
                    tuple(ordered(rems)),
                    tuple(ordered(deps)),
                )
            )
        return out


class ConsolidatedByPayerDate:
    rule = "consolidated"
    confidence = 0.7

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        s = candidates.settings
        pool, deposits = eligible_pairs(candidates)
        singles = {d.event_id for d, r in pool}  # deposits that have a single-amount candidate
        deposit_traces = {d.trace_key for d in candidates.deposits if d.trace_key}
        rems = [
            r
            for r in candidates.remittances
            if r.expects_cash and r.cents > 0 and r.trace_key not in deposit_traces
        ]
        out: list[Decision] = []
        used: set[str] = set()
        for d in ordered(deposits):
            if d.event_id in singles or d.payer == "?":
                continue
            near = [
                r
                for r in rems
                if r.event_id not in used
                and 0 < r.cents < d.cents
                and abs(business_days_between(r.day, d.day)) <= s.window_business_days
            ]
            near.sort(key=lambda r: (abs((r.day - d.day).days), r.event_id))
            near = near[: s.max_subset_candidates]
            fits = _subsets_summing_to(near, d.cents, s.max_subset_size)
            if len(fits) == 1:
                group = fits[0]
                used.update(r.event_id for r in group)
                out.append(cash_match(self.rule, self.confidence, tuple(ordered(group)), (d,)))
            elif len(fits) > 1:
                involved = {r.event_id: r for g in fits for r in g if r.event_id not in used}
                used.update(involved)
                out.append(
                    Decision(
                        "unmatched",
                        AMBIGUOUS,
                        None,
                        tuple(ordered(list(involved.values()))),
                        (d,),
                        reason=AMBIGUOUS,
                    )
                )
        return out


def _subsets_summing_to(
    items: list[OpenItem], target: int, max_size: int
) -> list[tuple[OpenItem, ...]]:
    fits: list[tuple[OpenItem, ...]] = []
    for size in range(2, min(max_size, len(items)) + 1):
        for combo in combinations(items, size):
            if sum(i.cents for i in combo) == target:
                fits.append(combo)
                if len(fits) > 1:
                    return fits
    return fits
