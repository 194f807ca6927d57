"""Rules 1, 2 and 4 of the cascade: one remittance, one deposit, one trace, one amount.

``trace_exact``: the trace as written is the same on both sides; ``trace_normalized``: it is the
same only once case, whitespace, punctuation and leading zeros are ignored; ``check_number``:
the "trace" of a CHK remittance is its check number and the lockbox deposit's customer reference
carries it. Each pairs a trace group only when it is exactly one remittance and one deposit of
equal amount: anything else (two candidates, a different amount) is left for a later rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from matchers.base import Candidates, Decision
from state.items import OpenItem

CHECK_CATEGORIES = frozenset({"lockbox", "check_deposit"})


def trace_groups(
    candidates: Candidates,
) -> list[tuple[str, list[OpenItem], list[OpenItem]]]:
    """(trace key, remittances, deposits) for every trace seen on both sides, in key order."""
    rems: dict[str, list[OpenItem]] = defaultdict(list)
    deps: dict[str, list[OpenItem]] = defaultdict(list)
    for r in candidates.remittances:
        if r.trace_key and r.expects_cash:
            rems[r.trace_key].append(r)
    for d in candidates.deposits:
        if d.trace_key:
            deps[d.trace_key].append(d)
    return [(k, rems[k], deps[k]) for k in sorted(rems.keys() & deps.keys())]


def _raw(trace: str | None) -> str:
    return (trace or "").strip()


class _OnePair:
    rule: str
    confidence: float

    def accepts(self, r: OpenItem, d: OpenItem) -> bool:
        raise NotImplementedError

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        out: list[Decision] = []
        for _, rems, deps in trace_groups(candidates):
            if len(rems) != 1 or len(deps) != 1:
                continue
            r, d = rems[0], deps[0]
            if r.cents == d.cents and r.balanced and self.accepts(r, d):
                out.append(Decision("matched", self.rule, self.confidence, (r,), (d,)))
        return out


class TraceExact(_OnePair):
    rule = "trace_exact"
    confidence = 1.0

    def accepts(self, r: OpenItem, d: OpenItem) -> bool:
        return d.category not in CHECK_CATEGORIES and _raw(r.trace) == _raw(d.trace)


class TraceNormalized(_OnePair):
    rule = "trace_normalized"
    confidence = 0.95

    def accepts(self, r: OpenItem, d: OpenItem) -> bool:
        return d.category not in CHECK_CATEGORIES and _raw(r.trace) != _raw(d.trace)


class CheckNumber(_OnePair):
    rule = "check_number"
    confidence = 0.95

    def accepts(self, r: OpenItem, d: OpenItem) -> bool:
        return d.category in CHECK_CATEGORIES


class TraceSingleFit:
    """When the window closes: a trace group of one item on one side and several on the other,
    exactly one of which has the same amount, pairs those two (the others go on alone: a
    second deposit with the trace is not a share of a payment that is already whole)."""

    rule = "trace_single_fit"  # each decision carries the pair's own rule
    _rules = (TraceExact(), TraceNormalized(), CheckNumber())

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        out: list[Decision] = []
        for _, rems, deps in trace_groups(candidates):
            if len(rems) == 1 and len(deps) > 1:
                one, fits = rems[0], [d for d in deps if d.cents == rems[0].cents]
            elif len(deps) == 1 and len(rems) > 1:
                one, fits = deps[0], [r for r in rems if r.cents == deps[0].cents]
            else:
                continue
            if len(fits) != 1:
                continue
            r, d = (one, fits[0]) if one.is_remittance else (fits[0], one)
            if not r.balanced:
                continue
            for pair_rule in self._rules:
                if pair_rule.accepts(r, d):
                    out.append(
                        Decision("matched", pair_rule.rule, pair_rule.confidence, (r,), (d,))
                    )
                    break
        return out
