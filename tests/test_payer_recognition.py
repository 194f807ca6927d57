"""Who paid: payer ids through the payer master, else the company name in bank text.

Facts from the shipped example reference data (``remitflow/data/refdata.example.toml``): aetna is
TRN03 ``1673696652``, named "AETNA LIFE INSURANCE COMPANY", aliases "AETNA" and "AETNA LIFE
INSUR"; palmetto is "PALMETTO GBA MEDICARE PART A", aliases "PALMETTO GBA" and "PGBA MEDICARE";
kaiser is "KAISER FOUNDATION HEALTH PLAN"; five payers have "BLUE CROSS" in their names.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from matchers.payer_recognition import UNKNOWN, PayerRecognizer
from remitflow.events import BankTransaction, Remittance, Source, midnight_utc
from remitflow.refdata import (
    Payer,
    ReferenceData,
    example_reference_data_path,
    load_reference_data,
)

DAY = date(2024, 3, 4)


@pytest.fixture(scope="module")
def recognizer() -> PayerRecognizer:
    return PayerRecognizer(load_reference_data(example_reference_data_path()))


def era(payer_id: str | None, payer_name: str | None = None) -> Remittance:
    return Remittance(
        event_id="rem-1",
        occurred_at=midnight_utc(DAY),
        source=Source(system="x12-835", file="era.835", record="0001"),
        handling_code="I",
        amount=Decimal("100.00"),
        method="ACH",
        effective_date=DAY,
        trace_number="12524965",
        trace_normalized="12524965",
        payer_id=payer_id,
        payer_name=payer_name,
    )


def credit(
    payer_id: str | None = None, company_id: str | None = None, company_name: str | None = None
) -> BankTransaction:
    return BankTransaction(
        event_id="bank-1",
        occurred_at=midnight_utc(DAY),
        source=Source(system="bai2", file="bank.bai2", record="16"),
        account="764508371122",
        type_code="165",
        direction="credit",
        category="claim_payment",
        amount=Decimal("100.00"),
        as_of_date=DAY,
        payer_id=payer_id,
        company_id=company_id,
        company_name=company_name,
    )


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("payer_id", ["1673696652", "673696652", " 1673696652 "])
def test_payer_ids_resolve_through_the_payer_master(
    recognizer: PayerRecognizer, payer_id: str
) -> None:
    """TRN03 is "1" + EIN; some payers put the bare EIN in the CCD+ addenda."""
    assert recognizer.for_remittance(era(payer_id)) == "aetna"
    assert recognizer.for_deposit(credit(payer_id=payer_id)) == "aetna"
    assert recognizer.for_deposit(credit(company_id=payer_id)) == "aetna"


def test_unknown_ids_are_used_as_written_so_both_sides_still_meet(
    recognizer: PayerRecognizer,
) -> None:
    assert recognizer.for_remittance(era("1999999999")) == "id:999999999"
    assert recognizer.for_deposit(credit(payer_id="999999999")) == "id:999999999"
    assert recognizer.for_remittance(era("xyz-42")) == "id:XYZ42"


def test_an_id_wins_over_a_name(recognizer: PayerRecognizer) -> None:
    assert recognizer.for_remittance(era("1348908466", "AETNA")) == "humana"
    assert recognizer.for_deposit(credit(payer_id="1348908466", company_name="AETNA")) == "humana"
    assert recognizer.for_deposit(credit(company_id="1999999999", company_name="AETNA")) == (
        "id:999999999"
    )


def test_without_an_id_the_name_decides(recognizer: PayerRecognizer) -> None:
    assert recognizer.for_remittance(era(None, "AETNA LIFE INSURANCE COMPANY")) == "aetna"
    assert recognizer.for_remittance(era("  ", "HUMANA INSURANCE COMPANY")) == "humana"
    assert recognizer.for_deposit(credit(company_name="HUMANA INS CO")) == "humana"
    assert recognizer.for_deposit(credit()) == UNKNOWN


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "payer"),
    [
        ("AETNA LIFE INSURANCE COMPANY", "aetna"),  # the payer's name
        ("aetna life insurance company", "aetna"),  # any case
        ("Aetna Life Insurance Co.", "aetna"),  # and a small difference
        ("PGBA MEDICARE", "palmetto"),  # an alias
        ("AETNA LIFE INSUR", "aetna"),  # an alias that is the NACHA-truncated name
        ("KAISER FOUNDATIO", "kaiser"),  # NACHA truncation of the name, no such alias
        ("PALMETTO GBA MED", "palmetto"),
        ("TRICARE EAST REG", "tricare"),
        ("UMR", "umr"),  # a short name, exactly
    ],
)
def test_names_aliases_and_truncated_names_are_recognised(
    recognizer: PayerRecognizer, name: str, payer: str
) -> None:
    assert recognizer.by_name(name) == payer


@pytest.mark.parametrize(
    "name",
    [
        "MEDICARE",  # a word of "PGBA MEDICARE" and "PALMETTO GBA MEDICARE PART A"
        "HEALTH PLAN",  # in the names of kaiser, geisinger, tufts, wellcare...
        "BLUE CROSS BLUE SHIELD",  # anthem, horizon, highmark
        "HUMANA",  # too short a part of "HUMANA INS CO" to be sure
        "UMR INC",
        "ACME PAYMENTS LLC",
        "",
    ],
)
def test_a_shared_word_or_a_stranger_is_not_a_payer(recognizer: PayerRecognizer, name: str) -> None:
    assert recognizer.by_name(name) == UNKNOWN


@pytest.mark.parametrize("name", ["BLUE CROSS", "NEW YORK"])
def test_the_first_words_of_one_payers_name_are_not_enough(
    recognizer: PayerRecognizer, name: str
) -> None:
    """ "BLUE CROSS" is in five payers' names (only bcbs-nc's starts with it); "NEW YORK" is a
    place. Neither is a 16-character truncated company name, so neither names a payer."""
    assert recognizer.by_name(name) == UNKNOWN


def _master(*payers: tuple[str, str, list[str]]) -> ReferenceData:
    return ReferenceData(payers=[Payer(id=i, name=n, aliases=a) for i, n, a in payers])


def test_a_tie_between_two_payers_is_unknown() -> None:
    both_truncated = PayerRecognizer(
        _master(
            ("acme-oh", "ACME HEALTH PLAN OF OHIO", []),
            ("acme-tx", "ACME HEALTH PLAN OF TEXAS", []),
        )
    )
    assert both_truncated.by_name("ACME HEALTH PLAN") == UNKNOWN  # 16 characters: both fit
    assert both_truncated.by_name("ACME HEALTH PLAN OF OHIO") == "acme-oh"
    shared_alias = PayerRecognizer(
        _master(("one", "FIRST HEALTH", ["BCBS"]), ("two", "SECOND HEALTH", ["BCBS"]))
    )
    assert shared_alias.by_name("BCBS") == UNKNOWN
    assert shared_alias.by_name("FIRST HEALTH") == "one"


def test_two_names_of_one_payer_are_no_tie() -> None:
    r = PayerRecognizer(_master(("acme", "ACME HEALTH PLAN OF OHIO", ["ACME HEALTH PLAN"])))
    assert r.by_name("ACME HEALTH PLAN") == "acme"


def test_the_score_cutoff_is_honoured() -> None:
    master = _master(("aetna", "AETNA LIFE INSURANCE COMPANY", []))
    assert PayerRecognizer(master).by_name("AETNA LIFE INSURANSE COMPANY") == "aetna"
    assert PayerRecognizer(master, score_cutoff=100).by_name("AETNA LIFE INSURANSE COMPANY") == (
        UNKNOWN
    )


def test_no_payer_master_means_no_name_is_recognised() -> None:
    assert PayerRecognizer(ReferenceData()).by_name("AETNA") == UNKNOWN
