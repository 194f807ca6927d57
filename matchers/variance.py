"""Rule 6: the trace says these belong together, the amounts say something happened.

``remit_unbalanced`` (decided at once): the deposit equals the ERA's payment but the ERA does
not balance internally (BPR02 ≠ ΣCLP04 − ΣPLB, or a claim that does not add up); it is matched
for cash and flagged for the remittance. ``fee`` / ``amount_mismatch`` (decided when the window
closes, since another remittance or deposit with the trace may still complete the group): the
deposit is short by at most the configured tolerance (vendor and bank fees), or differs by more.
Two or more single items on one side that each fit the other side alone are ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence

from matchers.base import Candidates, Decision, MatchSettings, ordered
from matchers.payer_amount_date import AMBIGUOUS
from matchers.trace import trace_groups
from state.items import OpenItem

REMIT_UNBALANCED = "remit_unbalanced"
FEE = "fee"
AMOUNT_MISMATCH = "amount_mismatch"


def is_fee(remittance_cents: int, bank_cents: int, s: MatchSettings) -> bool:
    short = remittance_cents - bank_cents
    if short <= 0:
        return False
    pct = int(s.fee_tolerance_pct * remittance_cents)
    return short <= max(s.fee_tolerance_abs_cents, pct)


class RemitUnbalanced:
    rule = REMIT_UNBALANCED
    confidence = 0.9

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        out: list[Decision] = []
        for _, rems, deps in trace_groups(candidates):
            if all(r.balanced for r in rems):
                continue
            if sum(r.cents for r in rems) != sum(d.cents for d in deps):
                continue
            out.append(
                Decision(
                    "variance",
                    self.rule,
                    self.confidence,
                    tuple(ordered(rems)),
                    tuple(ordered(deps)),
                    reason=REMIT_UNBALANCED,
                    variance_cents=0,
                )
            )
        return out


class AmountVariance:
    rule = "amount_variance"  # the decision's rule is its reason: fee or amount_mismatch

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        s = candidates.settings
        out: list[Decision] = []
        for _, rems, deps in trace_groups(candidates):
            total_r = sum(r.cents for r in rems)
            total_d = sum(d.cents for d in deps)
            if total_r == total_d:
                continue
            if len(deps) == 1 and len([r for r in rems if r.cents == deps[0].cents]) > 1:
                out.append(_ambiguous(rems, deps))
                continue
            if len(rems) == 1 and len([d for d in deps if d.cents == rems[0].cents]) > 1:
                out.append(_ambiguous(rems, deps))
                continue
            reason = FEE if is_fee(total_r, total_d, s) else AMOUNT_MISMATCH
            out.append(
                Decision(
                    "variance",
                    reason,
                    0.9 if reason == FEE else 0.6,
                    tuple(ordered(rems)),
                    tuple(ordered(deps)),
                    reason=reason,
                    variance_cents=total_d - total_r,
                )
            )
        return out


def _ambiguous(rems: list[OpenItem], deps: list[OpenItem]) -> Decision:
    return Decision(
        "unmatched", AMBIGUOUS, None, tuple(ordered(rems)), tuple(ordered(deps)), reason=AMBIGUOUS
    )
