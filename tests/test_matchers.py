"""Each rule of the cascade (DESIGN.md §3) on hand-built cases, and the cascade's order.

Dates: ``MONDAY`` is 2024-03-04; the Fed calendar has no holiday in the weeks around it, so
"n business days later" is plain weekday counting here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import pytest

from matchers import cascade
from matchers.base import Candidates, Decision, Matcher, MatchSettings
from matchers.consolidated import ConsolidatedByPayerDate, ConsolidatedByTrace
from matchers.non_payment import NonPayment
from matchers.payer_amount_date import PayerAmountDate
from matchers.trace import CheckNumber, TraceExact, TraceNormalized, TraceSingleFit
from matchers.variance import AmountVariance, RemitUnbalanced, is_fee
from remitflow.calendar import business_days_between
from state.items import OpenItem
from tests.factories import MONDAY, candidates, deposit, ids, remittance

TUESDAY, THURSDAY, FRIDAY = (MONDAY + timedelta(days=n) for n in (1, 3, 4))


def day_plus(n: int) -> date:
    return MONDAY + timedelta(days=n)


def summary(decisions: Sequence[Decision]) -> list[tuple[str, str, frozenset[str]]]:
    return sorted((d.outcome, d.rule, ids(d.items)) for d in decisions)


def test_the_dates_used_here_are_plain_weekdays() -> None:
    assert business_days_between(MONDAY, THURSDAY) == 3
    assert business_days_between(MONDAY, FRIDAY) == 4
    assert business_days_between(MONDAY, day_plus(7)) == 5  # next Monday


# -- trace_exact / trace_normalized ----------------------------------------------------------


def test_same_trace_same_amount_is_trace_exact() -> None:
    c = candidates(remittance(trace="0012524965"), deposit(trace="0012524965"))
    [d] = TraceExact().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "trace_exact", 1.0)
    assert ids(d.remittances) == {"r1"} and ids(d.deposits) == {"d1"}
    assert TraceNormalized().decide(c) == []  # an exact trace is never "normalised"


@pytest.mark.parametrize(
    ("era_trace", "bank_trace"),
    [
        ("0012524965", "12524965"),  # leading zeros
        ("1qg11111111", "1QG11111111"),  # case
        ("12 524 965", "12524965"),  # spaces inside
        ("12-524-965", "012524965"),  # punctuation and zeros together
    ],
)
def test_trace_equal_only_once_normalised_is_trace_normalized(
    era_trace: str, bank_trace: str
) -> None:
    c = candidates(remittance(trace=era_trace), deposit(trace=bank_trace))
    assert TraceExact().decide(c) == []
    [d] = TraceNormalized().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "trace_normalized", 0.95)
    assert ids(d.items) == {"r1", "d1"}


T = "12524965"


@pytest.mark.parametrize("matcher", [TraceExact(), TraceNormalized()], ids=lambda m: m.rule)
@pytest.mark.parametrize(
    "items",
    [
        pytest.param((remittance(cents=100_000), deposit(cents=99_000, trace=T)), id="amounts"),
        pytest.param((remittance(), deposit(trace="99999999")), id="traces differ"),
        pytest.param((remittance(), deposit("d1", trace=T), deposit("d2", trace=T)), id="2 deps"),
        pytest.param((remittance("r1"), remittance("r2"), deposit(trace=T)), id="2 eras"),
        pytest.param((remittance(balanced=False), deposit(trace=T)), id="unbalanced era"),
        pytest.param((remittance(expects_cash=False), deposit(trace=T)), id="zero-pay era"),
        pytest.param((remittance(), deposit(trace=T, category="lockbox")), id="lockbox"),
    ],
)
def test_trace_rules_leave_everything_else_to_later_rules(
    matcher: Matcher, items: tuple[OpenItem, ...]
) -> None:
    assert matcher.decide(candidates(*items)) == []


# -- check_number ----------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["lockbox", "check_deposit"])
def test_check_number_pairs_a_chk_era_with_a_check_deposit(category: str) -> None:
    c = candidates(
        remittance(trace="000123456", cents=25_000, payer_id=None),
        deposit(trace="123456", cents=25_000, category=category, payer="?"),
    )
    [d] = CheckNumber().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "check_number", 0.95)
    assert ids(d.items) == {"r1", "d1"}
    assert TraceExact().decide(c) == [] and TraceNormalized().decide(c) == []


def test_check_number_is_only_for_lockbox_and_check_deposits() -> None:
    c = candidates(remittance(trace="123456"), deposit(trace="123456", category="claim_payment"))
    assert CheckNumber().decide(c) == []
    assert [d.rule for d in TraceExact().decide(c)] == ["trace_exact"]


def test_check_number_needs_the_amount_too() -> None:
    c = candidates(remittance(trace="123456"), deposit(trace="123456", cents=1, category="lockbox"))
    assert CheckNumber().decide(c) == []


# -- consolidated by trace -------------------------------------------------------------------


def test_several_eras_for_one_deposit_by_trace() -> None:
    c = candidates(
        remittance("r1", 60_000, trace="EFT77"),
        remittance("r2", 30_000, trace="eft77"),
        remittance("r3", 10_000, trace="EFT 77"),
        deposit("d1", 100_000, trace="0EFT77"),
    )
    [d] = ConsolidatedByTrace().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "consolidated", 0.95)
    assert ids(d.remittances) == {"r1", "r2", "r3"} and ids(d.deposits) == {"d1"}


def test_one_era_split_over_several_deposits_by_trace() -> None:
    c = candidates(
        remittance("r1", 100_000, trace="EFT77"),
        deposit("d1", 70_000, trace="EFT77"),
        deposit("d2", 30_000, trace="EFT77", day=TUESDAY),
    )
    [d] = ConsolidatedByTrace().decide(c)
    assert ids(d.remittances) == {"r1"} and ids(d.deposits) == {"d1", "d2"}
    assert [x.event_id for x in d.deposits] == ["d1", "d2"]  # canonical order


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(
            (
                remittance("r1", 60_000, trace="EFT77"),
                remittance("r2", 40_000, trace="EFT77"),
                deposit("d1", 99_999, trace="EFT77"),
            ),
            id="N:1 one cent short",
        ),
        pytest.param(
            (
                remittance("r1", 100_000, trace="EFT77"),
                deposit("d1", 70_000, trace="EFT77"),
                deposit("d2", 30_001, trace="EFT77"),
            ),
            id="1:N one cent over",
        ),
        pytest.param(
            (remittance("r1", 100_000, trace="EFT77"), deposit("d1", 100_000, trace="EFT77")),
            id="1:1 is not a consolidation",
        ),
        pytest.param(
            (
                remittance("r1", 60_000, trace="EFT77", balanced=False),
                remittance("r2", 40_000, trace="EFT77"),
                deposit("d1", 100_000, trace="EFT77"),
            ),
            id="an unbalanced era in the group",
        ),
    ],
)
def test_no_consolidation_by_trace_unless_the_sums_are_exact(items: tuple[OpenItem, ...]) -> None:
    assert ConsolidatedByTrace().decide(candidates(*items)) == []


# -- consolidated by payer and date ----------------------------------------------------------


def test_one_subset_of_the_payers_eras_adds_up_to_a_traceless_deposit() -> None:
    c = candidates(
        remittance("r1", 100_000, trace="A1"),
        remittance("r2", 50_000, trace="A2", day=TUESDAY),
        remittance("r3", 70_000, trace="A3"),
        deposit("d1", 150_000, day=TUESDAY),
    )
    [d] = ConsolidatedByPayerDate().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "consolidated", 0.7)
    assert ids(d.remittances) == {"r1", "r2"} and ids(d.deposits) == {"d1"}


def test_two_subsets_that_fit_are_ambiguous() -> None:
    c = candidates(
        remittance("r1", 100_000, trace="A1"),
        remittance("r2", 50_000, trace="A2"),
        remittance("r3", 70_000, trace="A3"),
        remittance("r4", 80_000, trace="A4"),
        deposit("d1", 150_000, day=TUESDAY),
    )
    [d] = ConsolidatedByPayerDate().decide(c)
    assert (d.outcome, d.rule, d.reason, d.confidence) == (
        "unmatched",
        "ambiguous",
        "ambiguous",
        None,
    )
    assert ids(d.items) == {"r1", "r2", "r3", "r4", "d1"}


def test_consolidation_by_payer_date_keeps_to_the_window() -> None:
    far = remittance("r2", 50_000, trace="A2", day=day_plus(7))  # 5 business days after r1
    c = candidates(remittance("r1", 100_000, trace="A1"), far, deposit("d1", 150_000))
    assert ConsolidatedByPayerDate().decide(c) == []
    wide = MatchSettings(window_business_days=5)
    assert (
        len(
            ConsolidatedByPayerDate().decide(candidates(*c.remittances, *c.deposits, settings=wide))
        )
        == 1
    )


def test_consolidation_by_payer_date_needs_a_recognised_payer_and_no_single_match() -> None:
    rems = (remittance("r1", 100_000, trace="A1"), remittance("r2", 50_000, trace="A2"))
    unknown = candidates(*rems, deposit("d1", 150_000, payer="?"))
    assert ConsolidatedByPayerDate().decide(unknown) == []
    single = candidates(*rems, remittance("r3", 150_000, trace="A3"), deposit("d1", 150_000))
    assert ConsolidatedByPayerDate().decide(single) == []  # payer_amount_date's case
    traced = candidates(*rems, deposit("d1", 150_000, trace="ZZ"))
    assert ConsolidatedByPayerDate().decide(traced) == []


def test_consolidation_by_payer_date_leaves_eras_whose_trace_is_on_a_deposit() -> None:
    """r1's trace is on d1 (short by a $1 fee): r1 belongs to d1, not to d2 = r1 + r2."""
    c = candidates(
        remittance("r1", 10_000, trace="T1"),
        deposit("d1", 9_900, trace="T1"),
        remittance("r2", 5_000, trace="T2"),
        deposit("d2", 15_000, day=TUESDAY),
    )
    assert ConsolidatedByPayerDate().decide(c) == []
    found = cascade.run(cascade.CLOSING, c)
    assert ("variance", "fee", frozenset({"r1", "d1"})) in summary(found)


# -- payer_amount_date -----------------------------------------------------------------------


def test_unique_payer_amount_and_date_is_matched_with_lower_confidence() -> None:
    c = candidates(
        remittance("r1", 12_345, trace="EFT1"),
        remittance("r2", 99_999, trace="EFT2"),
        deposit("d1", 12_345, day=TUESDAY),
    )
    [d] = PayerAmountDate().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "payer_amount_date", 0.8)
    assert ids(d.items) == {"r1", "d1"}


def test_two_eras_and_two_deposits_of_one_amount_are_all_ambiguous() -> None:
    c = candidates(
        remittance("r1", 12_345, trace="EFT1"),
        remittance("r2", 12_345, trace="EFT2", day=TUESDAY),
        deposit("d1", 12_345, day=TUESDAY),
        deposit("d2", 12_345, day=THURSDAY),
    )
    [d] = PayerAmountDate().decide(c)
    assert (d.outcome, d.rule, d.reason, d.confidence) == (
        "unmatched",
        "ambiguous",
        "ambiguous",
        None,
    )
    assert ids(d.remittances) == {"r1", "r2"} and ids(d.deposits) == {"d1", "d2"}


def test_one_deposit_two_candidate_eras_is_ambiguous() -> None:
    c = candidates(
        remittance("r1", 12_345, trace="EFT1"),
        remittance("r2", 12_345, trace="EFT2"),
        deposit("d1", 12_345),
    )
    [d] = PayerAmountDate().decide(c)
    assert d.outcome == "unmatched" and d.reason == "ambiguous"
    assert ids(d.items) == {"r1", "r2", "d1"}


@pytest.mark.parametrize(
    ("deposit_day", "matched"),
    [
        (THURSDAY, True),  # 3 business days after
        (FRIDAY, False),  # 4
        (MONDAY - timedelta(days=3), True),  # the Friday before: 1 business day before
        (MONDAY - timedelta(days=7), False),  # 5 business days before
    ],
)
def test_payer_amount_date_window(deposit_day: date, matched: bool) -> None:
    c = candidates(remittance(trace="EFT1"), deposit(day=deposit_day))
    assert bool(PayerAmountDate().decide(c)) is matched


@pytest.mark.parametrize(
    "dep",
    [
        pytest.param(deposit(payer="?"), id="payer not recognised"),
        pytest.param(deposit(trace="OTHER1"), id="deposit carries a trace"),
        pytest.param(deposit(category="lockbox"), id="lockbox deposit"),
    ],
)
def test_payer_amount_date_never_uses(dep: OpenItem) -> None:
    c = candidates(remittance(trace="EFT1"), dep)
    assert PayerAmountDate().decide(c) == []


def test_payer_amount_date_skips_eras_whose_trace_is_on_a_deposit_and_zero_pay_eras() -> None:
    c = candidates(
        remittance("r1", trace="EFT1"),
        deposit("d9", 1, trace="eft1"),  # r1's own (short) deposit
        remittance("r2", trace="EFT2", expects_cash=False),
        deposit("d1"),
    )
    assert PayerAmountDate().decide(c) == []


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(
            (remittance("r1", 10_000, trace="E1", balanced=False), deposit("d1", 10_000)),
            id="payer_amount_date",
        ),
        pytest.param(
            (
                remittance("r1", 6_000, trace="E1", balanced=False),
                remittance("r2", 4_000, trace="E2"),
                deposit("d1", 10_000),
            ),
            id="consolidated",
        ),
    ],
)
def test_an_unbalanced_era_is_never_silently_matched(items: tuple[OpenItem, ...]) -> None:
    """DESIGN §1/§3: an unbalanced 835 is flagged (variance remit_unbalanced), never 'fixed'."""
    found = cascade.run(cascade.ALL, candidates(*items))
    assert found
    for d in found:
        if any(not r.balanced for r in d.remittances):
            assert (d.outcome, d.reason) == ("variance", "remit_unbalanced")


# -- variances -------------------------------------------------------------------------------


def variance_of(rem_cents: int, bank_cents: int, s: MatchSettings | None = None) -> Decision:
    c = candidates(
        remittance(cents=rem_cents, trace="EFT1"),
        deposit(cents=bank_cents, trace="EFT1"),
        settings=s,
    )
    [d] = AmountVariance().decide(c)
    return d


def test_short_within_the_absolute_tolerance_is_a_fee() -> None:
    d = variance_of(10_000, 9_000)  # $10.00 short of $100.00 (5 % would be $5.00)
    assert (d.outcome, d.rule, d.reason, d.confidence) == ("variance", "fee", "fee", 0.9)
    assert d.variance_cents == -1_000
    assert variance_of(10_000, 8_999).reason == "amount_mismatch"


def test_short_within_the_percent_tolerance_is_a_fee() -> None:
    d = variance_of(1_000_000, 950_000)  # $500 short of $10,000: 5 %, far above $10
    assert d.reason == "fee" and d.variance_cents == -50_000
    assert variance_of(1_000_000, 949_999).reason == "amount_mismatch"


def test_beyond_the_tolerance_is_an_amount_mismatch() -> None:
    d = variance_of(100_000, 50_000)
    assert (d.outcome, d.rule, d.reason, d.confidence) == (
        "variance",
        "amount_mismatch",
        "amount_mismatch",
        0.6,
    )
    assert d.variance_cents == -50_000


def test_the_bank_paying_more_is_never_a_fee() -> None:
    d = variance_of(100_000, 100_001)
    assert d.reason == "amount_mismatch" and d.variance_cents == 1


def test_tolerances_come_from_the_settings() -> None:
    strict = MatchSettings(fee_tolerance_abs_cents=0, fee_tolerance_pct=Decimal(0))
    assert variance_of(10_000, 9_999, strict).reason == "amount_mismatch"
    assert is_fee(10_000, 9_999, MatchSettings())
    assert not is_fee(10_000, 10_000, MatchSettings())


def test_a_group_variance_is_over_the_whole_trace_group() -> None:
    c = candidates(
        remittance("r1", 60_000, trace="EFT1"),
        remittance("r2", 40_000, trace="EFT1"),
        deposit("d1", 99_500, trace="EFT1"),
    )
    [d] = AmountVariance().decide(c)
    assert d.reason == "fee" and d.variance_cents == -500 and ids(d.items) == {"r1", "r2", "d1"}


def test_two_eras_each_fitting_the_deposit_are_ambiguous_not_a_variance() -> None:
    c = candidates(
        remittance("r1", 10_000, trace="EFT1"),
        remittance("r2", 10_000, trace="EFT1"),
        deposit("d1", 10_000, trace="EFT1"),
    )
    [d] = AmountVariance().decide(c)
    assert (d.outcome, d.reason) == ("unmatched", "ambiguous")


def test_an_unbalanced_era_paid_in_full_is_remit_unbalanced() -> None:
    c = candidates(remittance(balanced=False, trace="EFT1"), deposit(trace="EFT1"))
    [d] = RemitUnbalanced().decide(c)
    assert (d.outcome, d.rule, d.reason, d.confidence) == (
        "variance",
        "remit_unbalanced",
        "remit_unbalanced",
        0.9,
    )
    assert d.variance_cents == 0
    assert TraceExact().decide(c) == []  # never matched as if balanced


def test_an_unbalanced_era_not_paid_in_full_is_left_to_the_amount_rules() -> None:
    c = candidates(remittance(balanced=False, trace="EFT1"), deposit(cents=1, trace="EFT1"))
    assert RemitUnbalanced().decide(c) == []
    assert [d.reason for d in AmountVariance().decide(c)] == ["amount_mismatch"]


# -- non_payment -----------------------------------------------------------------------------


def test_zero_pay_eras_are_matched_alone_and_never_to_cash() -> None:
    c = candidates(
        remittance("r0", 0, trace="EFT1", expects_cash=False),
        remittance("r1", 10_000, trace="EFT2"),
        deposit("d1", 10_000, trace="EFT1"),
    )
    [d] = NonPayment().decide(c)
    assert (d.outcome, d.rule, d.confidence) == ("matched", "non_payment", 1.0)
    assert ids(d.remittances) == {"r0"} and d.deposits == ()
    everything = cascade.run(cascade.ALL, c)
    assert all("d1" not in ids(x.items) or "r0" not in ids(x.items) for x in everything)


# -- the cascade -----------------------------------------------------------------------------


@dataclass
class Spy:
    """A matcher that decides nothing and remembers what it was shown."""

    rule: str = "spy"
    seen: list[frozenset[str]] = field(default_factory=list)

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        self.seen.append(ids(candidates.remittances + candidates.deposits))
        return []


def test_the_cascade_hides_what_a_rule_consumed_from_later_rules() -> None:
    spy = Spy()
    c = candidates(
        remittance("r1", trace="EFT1"),
        deposit("d1", trace="EFT1"),
        remittance("r2", 5_000, trace="EFT2"),
    )
    found = cascade.run([TraceExact(), spy], c)
    assert summary(found) == [("matched", "trace_exact", frozenset({"r1", "d1"}))]
    assert spy.seen == [frozenset({"r2"})]


def test_the_cascade_stops_once_everything_is_decided() -> None:
    spy = Spy()
    cascade.run([TraceExact(), spy], candidates(remittance(), deposit(trace="12524965")))
    assert spy.seen == []


def test_an_era_matched_by_an_earlier_rule_is_not_grouped_by_a_later_one() -> None:
    """Alone, the subset rule would pay d2 with r1 + r2; in the cascade, r1 already went to d1."""
    c = candidates(
        remittance("r1", 10_000, trace="T1"),
        remittance("r2", 5_000, trace="T2"),
        deposit("d1", 10_000),
        deposit("d2", 15_000, day=TUESDAY),
    )
    assert summary(ConsolidatedByPayerDate().decide(c)) == [
        ("matched", "consolidated", frozenset({"r1", "r2", "d2"}))
    ]
    assert summary(cascade.run(cascade.ALL, c)) == [
        ("matched", "payer_amount_date", frozenset({"r1", "d1"}))
    ]


def test_the_rules_run_in_the_designs_order() -> None:
    assert [m.rule for m in cascade.EARLY] == [
        "non_payment",
        "trace_exact",
        "trace_normalized",
        "check_number",
        "consolidated",
        "remit_unbalanced",
    ]
    assert [m.rule for m in cascade.CLOSING] == [
        "payer_amount_date",
        "consolidated",
        "trace_single_fit",
        "amount_variance",
    ]


def test_a_single_fitting_deposit_is_matched_and_the_extra_one_left_alone() -> None:
    c = candidates(
        remittance("r1", 10_000, trace="EFT1"),
        deposit("d1", 10_000, trace="EFT1"),
        deposit("d2", 2_500, trace="EFT1"),
    )
    [d] = TraceSingleFit().decide(c)
    assert (d.outcome, d.rule, ids(d.items)) == ("matched", "trace_exact", frozenset({"r1", "d1"}))
    # Through the closing cascade the extra deposit stays open (no variance, no guess).
    closing = cascade.run(cascade.CLOSING, c)
    assert [(x.rule, ids(x.items)) for x in closing] == [("trace_exact", frozenset({"r1", "d1"}))]


def test_two_fitting_items_are_not_a_single_fit() -> None:
    c = candidates(
        remittance("r1", 10_000, trace="EFT1"),
        remittance("r2", 10_000, trace="EFT1"),
        deposit("d1", 10_000, trace="EFT1"),
    )
    assert TraceSingleFit().decide(c) == []
