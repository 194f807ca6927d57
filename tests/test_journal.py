"""ERP journals: balanced to the cent, every difference on its own account, stable keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.base import Decision
from remitflow.identity import idempotency_key
from remitflow.outcomes import ErpPosting
from remitflow.refdata import BankAccount, Entity, GLMapping, Payer, ReferenceData
from sinks.journal import JournalImbalance, journal_record
from sinks.records import case_id
from state.items import OpenItem, money_text
from tests.test_records import MONDAY, decide, deposit, remittance, wire

DECIDED = datetime(2025, 3, 18, tzinfo=UTC)
EMITTED = datetime(2025, 3, 18, 14, 30, 5, tzinfo=UTC)
ACME_TRN03 = "1111111111"  # a payer with no clearing account of its own

REFDATA = ReferenceData(
    entities=[
        Entity(
            id="NORTH",
            name="North General Hospital",
            facility="NORTH MAIN CAMPUS",
            accounts=[
                BankAccount(number="000123456789", gl_cash="1010-CASH-NORTH"),
                BankAccount(number="555000111", gl_cash="1011-CASH-NORTH-LOCKBOX"),
            ],
        ),
        Entity(id="SOUTH", name="South Clinic", facility=None),
    ],
    payers=[
        Payer(
            id="RUSHMORE",
            name="RUSHMORE LIFE",
            payer_ids=["1935665544"],
            clearing_account="1200-CLEARING-RUSHMORE",
        ),
        Payer(id="ACME", name="ACME HEALTH", payer_ids=[ACME_TRN03]),
    ],
)
GL = REFDATA.gl
CASH = "1010-CASH-NORTH"
CLEARING = "1200-CLEARING-RUSHMORE"


def journal(decision: Decision, refdata: ReferenceData = REFDATA) -> dict[str, Any]:
    record = journal_record(decision, refdata, decided_at=DECIDED, emitted_at=EMITTED)
    assert record is not None
    ErpPosting.model_validate(wire(record))
    assert _signed_total(record) == 0
    return record


def _signed_total(record: dict[str, Any]) -> Decimal:
    return sum((Decimal(x["debit"]) - Decimal(x["credit"]) for x in record["lines"]), Decimal(0))


def lines(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(account, debit, credit) of each line, in the journal's order."""
    return [(x["account"], x["debit"], x["credit"]) for x in record["lines"]]


def test_plain_case() -> None:
    era = remittance("rem-1", 94500)
    cash = deposit("bank-1", 94500)
    record = journal(decide("matched", (era,), (cash,), confidence=1.0))
    assert list(record) == [
        "record",
        "case_id",
        "entity",
        "rule",
        "confidence",
        "decided_at",
        "emitted_at",
        "remittances",
        "bank_transactions",
        "idempotency_key",
        "journal_date",
        "currency",
        "lines",
    ]
    assert record["record"] == "erp_posting"
    assert record["case_id"] == case_id(["rem-1", "bank-1"])
    assert record["idempotency_key"] == idempotency_key("NORTH", ["rem-1", "bank-1"])
    assert record["journal_date"] == "2025-03-17"
    assert record["currency"] == "USD"
    assert record["remittances"] == [era.ref] and record["bank_transactions"] == [cash.ref]
    assert lines(record) == [(CASH, "945.00", "0.00"), (CLEARING, "0.00", "945.00")]
    for line in record["lines"]:
        assert line["dimensions"] == {
            "entity": "NORTH",
            "payer": "RUSHMORE",
            "facility": "NORTH MAIN CAMPUS",
        }
    assert record["lines"][0]["memo"] == "Cash received, bank account ending 6789"
    assert record["lines"][1]["memo"] == "Claims paid, ERA trace 12524965"


def test_interest_plb_l6_is_a_credit() -> None:
    # Claims 1,000.00 and L6 interest −10.30 (a negative PLB increases the payment): 1,010.30.
    era = remittance("rem-1", 100000, plb=(("L6", -1030),))
    assert era.cents == 101030
    record = journal(decide("matched", (era,), (deposit("bank-1", 101030),)))
    assert lines(record) == [
        (CASH, "1010.30", "0.00"),
        (CLEARING, "0.00", "1000.00"),
        ("4800-INTEREST-INCOME", "0.00", "10.30"),
    ]
    assert record["lines"][2]["memo"] == "PLB L6"


def test_recoupment_plb_wo_is_a_debit() -> None:
    era = remittance("rem-1", 100000, plb=(("WO", 25000),))
    record = journal(decide("matched", (era,), (deposit("bank-1", 75000),)))
    assert lines(record) == [
        (CASH, "750.00", "0.00"),
        (CLEARING, "0.00", "1000.00"),
        ("1210-RECOUPMENTS", "250.00", "0.00"),
    ]


def test_plb_reasons_are_summed_per_reason_and_unknown_codes_go_to_the_default() -> None:
    era = remittance("rem-1", 100000, plb=(("WO", 10000), ("ZZ", 500), ("WO", 2000)))
    record = journal(decide("matched", (era,), (deposit("bank-1", 87500),)))
    assert lines(record)[2:] == [
        ("1210-RECOUPMENTS", "120.00", "0.00"),
        ("1290-PROVIDER-ADJUSTMENTS", "5.00", "0.00"),
    ]
    assert [x["memo"] for x in record["lines"][2:]] == ["PLB WO", "PLB ZZ"]


def test_reversals_netting_claims_below_zero_debit_clearing() -> None:
    # A reversal (CLP02=22, −400.00) and its correction (+300.00) net −100.00 in claims; the
    # payer releases a 200.00 forward balance (PLB FB −200.00), so 100.00 reaches the bank.
    era = remittance("rem-1", -40000 + 30000, plb=(("FB", -20000),))
    assert era.cents == 10000
    record = journal(decide("matched", (era,), (deposit("bank-1", 10000),)))
    assert lines(record) == [
        (CASH, "100.00", "0.00"),
        (CLEARING, "100.00", "0.00"),
        ("1210-RECOUPMENTS", "0.00", "200.00"),
    ]


def test_fee_variance() -> None:
    era = remittance("rem-1", 100000)
    record = journal(decide("variance", (era,), (deposit("bank-1", 99500),), reason="fee"))
    assert lines(record) == [
        (CASH, "995.00", "0.00"),
        (CLEARING, "0.00", "1000.00"),
        ("6100-BANK-AND-VENDOR-FEES", "5.00", "0.00"),
    ]
    assert record["lines"][2]["memo"] == "Fee withheld from the deposit"


@pytest.mark.parametrize(
    ("deposited", "expected", "memo"),
    [
        (90000, ("1295-CASH-VARIANCE", "100.00", "0.00"), "Deposit short of the remittance advice"),
        (110000, ("1295-CASH-VARIANCE", "0.00", "100.00"), "Deposit over the remittance advice"),
    ],
)
def test_amount_mismatch_both_directions(
    deposited: int, expected: tuple[str, str, str], memo: str
) -> None:
    era = remittance("rem-1", 100000)
    decision = decide("variance", (era,), (deposit("bank-1", deposited),), reason="amount_mismatch")
    record = journal(decision)
    assert lines(record)[2] == expected
    assert record["lines"][2]["memo"] == memo


def test_a_bank_over_the_advice_is_never_a_fee() -> None:
    era = remittance("rem-1", 100000)
    record = journal(decide("variance", (era,), (deposit("bank-1", 100300),), reason="fee"))
    assert lines(record)[2] == ("1295-CASH-VARIANCE", "0.00", "3.00")


@pytest.mark.parametrize(
    ("diff", "expected"),
    [
        (1234, ("1296-REMIT-VARIANCE", "0.00", "12.34")),  # pays more than its claims explain
        (-1234, ("1296-REMIT-VARIANCE", "12.34", "0.00")),  # pays less
    ],
)
def test_unbalanced_era(diff: int, expected: tuple[str, str, str]) -> None:
    era = remittance("rem-1", 100000, diff=diff)
    decision = decide(
        "variance", (era,), (deposit("bank-1", era.cents),), reason="remit_unbalanced"
    )
    record = journal(decision)
    assert lines(record)[:2] == [
        (CASH, money_text(era.cents), "0.00"),
        (CLEARING, "0.00", "1000.00"),
    ]
    assert lines(record)[2] == expected
    assert "does not balance" in record["lines"][2]["memo"]


def test_consolidated_many_remittances_one_deposit() -> None:
    eras = (
        remittance("rem-1", 30000, day=MONDAY),
        remittance("rem-2", 20000, plb=(("L6", -150),), day=MONDAY),
        remittance("rem-3", 45000, payer_id=ACME_TRN03, payer="ACME", trace="ACME-77"),
    )
    total = sum(r.cents for r in eras)
    decision = decide("matched", eras, (deposit("bank-1", total),), rule="consolidated")
    record = journal(decision)
    assert lines(record) == [
        (CASH, "951.50", "0.00"),
        (CLEARING, "0.00", "500.00"),
        # ACME has no clearing account of its own: the default.
        ("1200-PAYER-CLEARING", "0.00", "450.00"),
        ("4800-INTEREST-INCOME", "0.00", "1.50"),
    ]
    assert [x["dimensions"]["payer"] for x in record["lines"]] == [
        None,  # two payers in the case: no single payer for the cash line
        "RUSHMORE",
        "ACME",
        "RUSHMORE",
    ]
    assert record["lines"][1]["memo"] == "Claims paid, ERA trace 12524965"  # quoted once
    assert record["idempotency_key"] == idempotency_key(
        "NORTH", ["bank-1", "rem-3", "rem-2", "rem-1"]
    )


def test_split_one_remittance_over_deposits_in_two_accounts() -> None:
    era = remittance("rem-1", 300000)
    deposits = (
        deposit("bank-1", 100000, account="123456789"),  # the bank dropped the leading zeros
        deposit("bank-2", 150000, account="000123456789", day=MONDAY + timedelta(days=1)),
        deposit("bank-3", 50000, account="555000111", day=MONDAY + timedelta(days=2)),
    )
    record = journal(decide("matched", (era,), deposits, rule="consolidated"))
    assert lines(record) == [
        (CASH, "2500.00", "0.00"),
        ("1011-CASH-NORTH-LOCKBOX", "500.00", "0.00"),
        (CLEARING, "0.00", "3000.00"),
    ]
    assert record["journal_date"] == "2025-03-19"  # the latest deposit


def test_unknown_bank_account_goes_to_unapplied_cash() -> None:
    era = remittance("rem-1", 94500)
    record = journal(decide("matched", (era,), (deposit("bank-1", 94500, account="9990001"),)))
    assert lines(record)[0] == ("2190-UNAPPLIED-CASH", "945.00", "0.00")
    assert "not in reference data: unapplied cash" in record["lines"][0]["memo"]
    record = journal(decide("matched", (era,), (deposit("bank-1", 94500, account=None),)))
    assert lines(record)[0] == ("2190-UNAPPLIED-CASH", "945.00", "0.00")


def test_accounts_come_from_reference_data() -> None:
    custom = REFDATA.model_copy(
        update={
            "gl": GLMapping(
                currency="CAD",
                clearing_default="AR-1",
                plb={"L6": "INT-1"},
                plb_default="PLB-OTHER",
                variances={"fee": "FEES-1"},
                unapplied_cash="SUSPENSE",
            )
        }
    )
    eras = (
        remittance("rem-1", 100000, plb=(("L6", -100), ("WO", 200)), payer_id=ACME_TRN03),
        remittance("rem-2", 1000, diff=5, payer_id=None, payer="?"),
    )
    cash = deposit("bank-1", sum(r.cents for r in eras) - 300, account="555000111")
    record = journal(decide("variance", eras, (cash,), reason="fee"), custom)
    assert record["currency"] == "CAD"
    assert lines(record) == [
        ("1011-CASH-NORTH-LOCKBOX", "1006.05", "0.00"),
        ("AR-1", "0.00", "10.00"),
        ("AR-1", "0.00", "1000.00"),
        ("INT-1", "0.00", "1.00"),
        ("PLB-OTHER", "2.00", "0.00"),
        ("SUSPENSE", "0.00", "0.05"),  # no remit_unbalanced account configured
        ("FEES-1", "3.00", "0.00"),
    ]
    assert [x["dimensions"]["payer"] for x in record["lines"]][1:3] == [None, "ACME"]


def test_no_journal_without_cash_or_for_exceptions() -> None:
    zero_pay = remittance("rem-1", 0)
    non_payment = decide("matched", (zero_pay,), (), rule="non_payment")
    assert journal_record(non_payment, REFDATA, decided_at=DECIDED, emitted_at=EMITTED) is None
    era, cash = remittance("rem-2", 1000), deposit("bank-2", 1000)
    unmatched = decide("unmatched", (era,), (cash,), rule="ambiguity", reason="ambiguous")
    assert journal_record(unmatched, REFDATA, decided_at=DECIDED, emitted_at=EMITTED) is None


def test_key_and_lines_do_not_depend_on_item_order() -> None:
    eras = (
        remittance("rem-1", 30000, plb=(("WO", 100),)),
        remittance("rem-2", 20000, plb=(("L6", -50),), payer_id=ACME_TRN03, payer="ACME"),
    )
    deposits = (deposit("bank-1", 20000), deposit("bank-2", 29950, account="555000111"))
    forward = journal(decide("matched", eras, deposits, rule="consolidated"))
    backward = journal(decide("matched", eras[::-1], deposits[::-1], rule="consolidated"))
    assert forward == backward
    assert forward["idempotency_key"] == idempotency_key(
        "NORTH", ["rem-2", "bank-2", "bank-1", "rem-1"]
    )
    assert forward["idempotency_key"] != idempotency_key(
        "SOUTH", ["rem-1", "rem-2", "bank-1", "bank-2"]
    )


def test_items_that_disagree_with_their_balance_cannot_post() -> None:
    era = remittance("rem-1", 100000, diff=500)
    broken = replace(era, balance_diff_cents=0)  # BPR02 says 1,005.00, the rest says 1,000.00
    with pytest.raises(JournalImbalance, match="debits"):
        journal_record(
            decide("matched", (broken,), (deposit("bank-1", broken.cents),)),
            REFDATA,
            decided_at=DECIDED,
            emitted_at=EMITTED,
        )


# --- property: any case balances --------------------------------------------------------------

PLB_REASONS = ("L6", "WO", "FB", "CT", "IR", "LE", "72", "ZZ")
ACCOUNTS = ("000123456789", "123456789", "555000111", "424242", None)
PAYERS = (("1935665544", "RUSHMORE"), (ACME_TRN03, "ACME"), ("1999999999", "?"), (None, "?"))


@st.composite
def remittances(draw: st.DrawFn, index: int) -> OpenItem:
    payer_id, payer = draw(st.sampled_from(PAYERS))
    claims = draw(st.lists(st.integers(-500_000, 5_000_000), min_size=1, max_size=6))
    plb = draw(
        st.lists(
            st.tuples(st.sampled_from(PLB_REASONS), st.integers(-200_000, 200_000)), max_size=4
        )
    )
    diff = draw(st.one_of(st.just(0), st.integers(-10_000, 10_000)))
    return remittance(
        f"rem-{index}",
        sum(claims),
        plb=tuple(plb),
        diff=diff,
        payer_id=payer_id,
        payer=payer,
        day=MONDAY + timedelta(days=draw(st.integers(0, 6))),
        trace=draw(st.sampled_from(("T1", "T2", None))),
    )


@st.composite
def cases(draw: st.DrawFn) -> Decision:
    n = draw(st.integers(0, 4))
    eras = tuple(draw(remittances(i)) for i in range(n))
    variance = draw(st.one_of(st.just(0), st.integers(-50_000, 50_000)))
    total = sum(r.cents for r in eras) + variance
    cuts = sorted(draw(st.lists(st.integers(0, max(total, 0)), max_size=3)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    deposits = tuple(
        deposit(
            f"bank-{i}",
            part,
            account=draw(st.sampled_from(ACCOUNTS)),
            entity=draw(st.sampled_from(("NORTH", "SOUTH", None))),
            day=MONDAY + timedelta(days=draw(st.integers(0, 6))),
        )
        for i, part in enumerate(parts)
    )
    outcome = draw(st.sampled_from(("matched", "variance")))
    reason = draw(st.sampled_from(("fee", "amount_mismatch", "remit_unbalanced")))
    return decide(outcome, eras, deposits, rule="consolidated", reason=reason)


@settings(max_examples=200, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_any_case_balances(decision: Decision, rnd: Any) -> None:
    record = journal_record(decision, REFDATA, decided_at=DECIDED, emitted_at=EMITTED)
    if record is None:  # every amount of the case is zero: nothing to post
        assert sum(d.cents for d in decision.deposits) == 0
        return
    ErpPosting.model_validate(wire(record))
    assert _signed_total(record) == 0
    assert all((x["debit"] == "0.00") != (x["credit"] == "0.00") for x in record["lines"])
    cash_accounts = {CASH, "1011-CASH-NORTH-LOCKBOX", GL.unapplied_cash}
    cash = sum(
        Decimal(x["debit"]) - Decimal(x["credit"])
        for x in record["lines"]
        if x["account"] in cash_accounts
    )
    assert cash * 100 == sum(d.cents for d in decision.deposits)
    ids = [i.event_id for i in decision.items]
    assert record["idempotency_key"] == idempotency_key(record["entity"], ids)
    shuffled = list(decision.remittances), list(decision.deposits)
    rnd.shuffle(shuffled[0])
    rnd.shuffle(shuffled[1])
    again = journal_record(
        decide(
            decision.outcome,
            tuple(shuffled[0]),
            tuple(shuffled[1]),
            rule=decision.rule,
            reason=decision.reason,
        ),
        REFDATA,
        decided_at=DECIDED,
        emitted_at=EMITTED,
    )
    assert again == record
