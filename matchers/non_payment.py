"""Zero-pay ERAs (BPR01=H or BPR04=NON) promise no cash: matched alone, never to a deposit."""

from __future__ import annotations

from collections.abc import Sequence

from matchers.base import Candidates, Decision


class NonPayment:
    rule = "non_payment"
    confidence = 1.0

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        return [
            Decision("matched", self.rule, self.confidence, (r,), ())
            for r in candidates.remittances
            if not r.expects_cash
        ]
