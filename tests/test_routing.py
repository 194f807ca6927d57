"""Correlation keys: both sides of a payment must land in one key, and the rest elsewhere.

Facts from the example reference data: aetna is TRN03 ``1673696652`` ("AETNA LIFE INSUR" in
NACHA company names), and H001's account is ``764508371122``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from dataflows.routing import Router
from matchers.base import MatchSettings
from matchers.payer_recognition import PayerRecognizer
from remitflow.calendar import add_business_days
from remitflow.events import BankTransaction, Remittance, Source, midnight_utc
from remitflow.refdata import example_reference_data_path, load_reference_data
from state.key_state import Decided, KeyState, Noted

DAY = date(2024, 3, 4)
S = MatchSettings()


@pytest.fixture(scope="module")
def router() -> Router:
    refdata = load_reference_data(example_reference_data_path())
    return Router(PayerRecognizer(refdata), S)


def era(**fields: Any) -> Remittance:
    values: dict[str, Any] = {
        "event_id": "rem-1",
        "entity": "H001",
        "occurred_at": midnight_utc(DAY),
        "source": Source(system="x12-835", file="era.835", record="0001", offset=0),
        "handling_code": "I",
        "amount": Decimal("1234.56"),
        "method": "ACH",
        "effective_date": DAY,
        "trace_number": "0012524965",
        "trace_normalized": "12524965",
        "payer_id": "1673696652",
        "payer_name": "AETNA LIFE INSURANCE COMPANY",
    }
    return Remittance(**{**values, **fields})


def bank(**fields: Any) -> BankTransaction:
    values: dict[str, Any] = {
        "event_id": "bank-1",
        "entity": "H001",
        "occurred_at": midnight_utc(DAY),
        "source": Source(system="bai2", file="bank.bai2", record="16", offset=120),
        "account": "764508371122",
        "bank_reference": "BR0001",
        "type_code": "165",
        "direction": "credit",
        "category": "claim_payment",
        "amount": Decimal("1234.56"),
        "as_of_date": DAY,
        "trace_number": "12524965",
        "trace_normalized": "12524965",
        "payer_id": "1673696652",
        "company_name": "AETNA LIFE INSUR",
    }
    return BankTransaction(**{**values, **fields})


# -- ACH -------------------------------------------------------------------------------------


def test_an_ach_era_and_its_deposit_share_a_payer_key(router: Router) -> None:
    rem_key, rem = router.route(era())
    dep_key, dep = router.route(bank())
    assert rem_key == dep_key == "pay|H001|aetna"
    assert (rem.payer, dep.payer) == ("aetna", "aetna")
    assert rem.trace_key == dep.trace_key == "12524965"
    assert (rem.trace, dep.trace) == ("0012524965", "12524965")
    assert rem.cents == dep.cents == 123_456
    assert rem.deadline == dep.deadline == add_business_days(DAY, S.late_after_business_days)


@pytest.mark.parametrize(
    "deposit",
    [
        pytest.param(bank(payer_id="673696652"), id="bare EIN in the addenda"),
        pytest.param(bank(payer_id=None, company_id="1673696652"), id="company id"),
        pytest.param(bank(payer_id=None, trace_number=None, trace_normalized=None), id="name"),
        pytest.param(bank(category="ach_credit", type_code="142"), id="ach credit"),
        pytest.param(bank(category="wire", type_code="195"), id="wire"),
    ],
)
def test_every_way_a_deposit_names_the_payer_leads_to_the_same_key(
    router: Router, deposit: BankTransaction
) -> None:
    key, item = router.route(deposit)
    assert key == "pay|H001|aetna" and item.payer == "aetna"


def test_an_unknown_payer_id_still_brings_both_sides_together(router: Router) -> None:
    rem_key, _ = router.route(era(payer_id="1999999999", payer_name="SMALL TPA"))
    dep_key, _ = router.route(bank(payer_id="999999999", company_name="SMALL TPA"))
    assert rem_key == dep_key == "pay|H001|id:999999999"


def test_an_era_without_an_id_is_keyed_by_its_payer_name(router: Router) -> None:
    assert router.route(era(payer_id=None))[0] == "pay|H001|aetna"


def test_a_deposit_from_an_unknown_payer_goes_to_the_unknown_payer_key(router: Router) -> None:
    key, item = router.route(
        bank(payer_id=None, trace_number=None, trace_normalized=None, company_name="ACME PAYMENTS")
    )
    assert key == "pay|H001|?" and item.payer == "?"
    assert router.route(bank(entity=None, payer_id=None, company_name=None))[0] == "pay|?|?"


def test_an_era_and_its_deposit_at_another_entity_do_not_meet(router: Router) -> None:
    assert router.route(bank(entity="H002"))[0] == "pay|H002|aetna" != router.route(era())[0]


# -- checks ----------------------------------------------------------------------------------


def test_a_chk_era_and_its_lockbox_deposit_share_the_entitys_check_key(router: Router) -> None:
    rem_key, rem = router.route(
        era(method="CHK", trace_number="000123456", trace_normalized="123456")
    )
    dep_key, dep = router.route(
        bank(
            category="lockbox",
            type_code="115",
            customer_reference=" 123456 ",
            trace_number=None,
            trace_normalized=None,
            payer_id=None,
            company_name=None,
        )
    )
    assert rem_key == dep_key == "chk|H001"
    assert rem.payer == "aetna" and dep.payer == "?"  # a lockbox line names no payer
    assert (dep.trace, dep.trace_key) == ("123456", "123456")
    state = KeyState()
    assert state.add(rem, S) == []
    [decided] = state.add(dep, S)
    assert isinstance(decided, Decided) and decided.decision.rule == "check_number"


def test_a_lockbox_deposit_without_a_check_number_has_no_trace(router: Router) -> None:
    key, item = router.route(bank(category="check_deposit", type_code="175", customer_reference=""))
    assert key == "chk|H001"
    assert item.trace is None and item.trace_key is None


# -- bank lines that are not payer cash ------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "category", "type_code"),
    [
        ("debit", "debit", "475"),  # a check paid
        ("credit", "zba", "275"),  # a sweep in
        ("debit", "zba", "575"),
        ("debit", "fee", "698"),
        ("credit", "other_credit", "354"),  # interest
        ("credit", "return", "258"),
    ],
)
def test_non_payer_lines_go_to_the_entitys_npc_key_and_are_noted(
    router: Router, direction: str, category: str, type_code: str
) -> None:
    line = bank(direction=direction, category=category, type_code=type_code)
    key, item = router.route(line)
    assert key == "npc|H001"
    assert item.payer == "?" and item.trace is None and item.trace_key is None
    [noted] = KeyState().add(item, S)
    assert isinstance(noted, Noted) and noted.outcome == "not_payer_cash"


def test_a_debit_is_never_payer_cash_whatever_its_category(router: Router) -> None:
    """The canonical model accepts a debit with a payer-cash category (e.g. from Kafka)."""
    line = bank(direction="debit", category="claim_payment", type_code="165")
    assert not line.is_payer_cash
    key, item = router.route(line)
    assert key == "npc|H001"
    [noted] = KeyState().add(item, S)
    assert isinstance(noted, Noted) and noted.outcome == "not_payer_cash"
