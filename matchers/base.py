"""The small interface every matcher implements, and the decision it returns.

A matcher is a pure function of the candidates it is shown: it never mutates them, never looks
at anything else (no clock, no I/O), and returns the same decisions for the same candidates in
any order. The cascade (:mod:`matchers.cascade`) decides which candidates each matcher sees and
removes what a decision consumes. ``tests/test_matcher_contract.py`` holds every matcher to this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from state.items import OpenItem

Outcome = Literal["matched", "variance", "unmatched"]


@dataclass(frozen=True, slots=True)
class MatchSettings:
    """Tunables of the cascade (DESIGN.md §3); the defaults are the design's."""

    window_business_days: int = 3
    late_after_business_days: int = 4
    fee_tolerance_abs_cents: int = 1000  # a deposit short by at most $10.00 ...
    fee_tolerance_pct: Decimal = Decimal("0.05")  # ... or 5 % of the remittance is a fee
    payer_name_score: float = 88.0  # rapidfuzz score (0-100) to recognise a payer in bank text
    max_subset_candidates: int = 12  # consolidation search: candidates considered at most
    max_subset_size: int = 4  # and remittances in one group at most


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: str
    confidence: float | None
    remittances: tuple[OpenItem, ...]
    deposits: tuple[OpenItem, ...]
    reason: str | None = None  # variance reason, or why unmatched
    variance_cents: int | None = None  # bank − remittance

    @property
    def items(self) -> tuple[OpenItem, ...]:
        return self.remittances + self.deposits


@dataclass(frozen=True, slots=True)
class Candidates:
    """What a matcher may look at: open remittances and deposits of one correlation key."""

    remittances: tuple[OpenItem, ...]
    deposits: tuple[OpenItem, ...]
    settings: MatchSettings


class Matcher(Protocol):
    rule: str

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        """Decisions over disjoint sets of candidates (an item is in at most one)."""
        ...


def cash_match(
    rule: str, confidence: float, rems: tuple[OpenItem, ...], deps: tuple[OpenItem, ...]
) -> Decision:
    """Equal amounts matched; an ERA that does not balance is flagged, never silently matched."""
    if all(r.balanced for r in rems):
        return Decision("matched", rule, confidence, rems, deps)
    return Decision(
        "variance", rule, confidence, rems, deps, reason="remit_unbalanced", variance_cents=0
    )


def ordered(items: Sequence[OpenItem]) -> list[OpenItem]:
    """A canonical order (date, then id) so decisions never depend on arrival order."""
    if len(items) < 2:  # most cases: one ERA, one deposit (called several times per case)
        return list(items)
    return sorted(items, key=lambda i: (i.day, i.event_id))
