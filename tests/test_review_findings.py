"""Regressions for defects found in review: money bounds, currency, payer ids, output folder."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from remitflow.cli import main
from remitflow.config import ConfigError, load_config
from remitflow.events import Remittance
from remitflow.money import AmountError, parse_money
from remitflow.records import DeadLetter
from remitflow.refdata import Payer, ReferenceData, payer_id_key
from sources.base import ParseContext
from sources.x12 import parse_bytes
from tests.conftest import SAMPLES, sample_bytes


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@pytest.mark.parametrize("text", ["1E5000", "1e3", "1_000", "NaN", "100.005", "9" * 16, "--1"])
def test_money_that_is_not_dollars_and_cents_is_refused(text: str) -> None:
    with pytest.raises(AmountError):
        parse_money(text)


@pytest.mark.parametrize(("text", "value"), [("945", "945"), ("-1.27", "-1.27"), (".5", "0.5")])
def test_money_as_payers_write_it(text: str, value: str) -> None:
    assert parse_money(text) == Decimal(value)


@pytest.mark.parametrize("amount", [b"1E5000", b"100.005"])
def test_an_835_paying_an_impossible_amount_is_a_dead_letter(amount: bytes) -> None:
    data = sample_bytes("LinuxForHealth-x12__managed-care.835").replace(
        b"BPR*I*945.00", b"BPR*I*" + amount
    )
    items = list(parse_bytes(data, ParseContext()))
    assert not [i for i in items if isinstance(i, Remittance)]
    assert any(isinstance(i, DeadLetter) and "BPR02" in i.reason for i in items)


def test_payer_id_with_and_without_the_leading_one_even_when_the_ein_starts_with_zero() -> None:
    assert payer_id_key("1042452600") == payer_id_key("042452600")
    assert payer_id_key("1935665544") == payer_id_key("935665544")
    ref = ReferenceData(payers=[Payer(id="p", name="P", payer_ids=["1042452600"])])
    assert ref.payer_for_id("042452600") is not None


MANAGED_CARE = str(SAMPLES / "LinuxForHealth-x12__managed-care.835")


def reconcile(out: Path, *remittances: str, bank: list[Path]) -> int:
    args = ["reconcile", "--remittances", *remittances, "--bank", *map(str, bank)]
    return main([*args, "--out", str(out)])


def against_era(tmp_path: Path, name: str, bank_file: bytes) -> set[tuple[str, str]]:
    """Reconcile managed-care.835 with ``bank_file``; the (outcome, rule) pairs of the audit."""
    (tmp_path / name).write_bytes(bank_file)
    assert reconcile(tmp_path / "out", MANAGED_CARE, bank=[tmp_path / name]) == 0
    return {(a["outcome"], a["rule"]) for a in read(tmp_path / "out" / "audit.jsonl")}


def test_foreign_currency_cash_never_matches_a_dollar_era(tmp_path: Path) -> None:
    xml = sample_bytes("synthetic__camt053_us_ach_hcclaimpmt.xml").replace(
        b'Ccy="USD"', b'Ccy="EUR"'
    )
    audit = against_era(tmp_path, "eur.xml", xml)
    assert read(tmp_path / "out" / "matched.jsonl") == []
    assert ("not_payer_cash", "foreign_currency") in audit


def test_a_negative_credit_is_not_cash_received(tmp_path: Path) -> None:
    bai = sample_bytes("synthetic__bai2_hcclaimpmt_ach.bai2").replace(
        b"16,165,94500,", b"16,165,-94500,"
    )
    audit = against_era(tmp_path, "neg.bai2", bai)
    assert read(tmp_path / "out" / "erp_postings.jsonl") == []
    assert ("not_payer_cash", "return") in audit


def test_the_output_folder_keeps_files_that_are_not_ours(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.jsonl").write_text("{}\n")
    assert reconcile(out, MANAGED_CARE, bank=[SAMPLES / "synthetic__bai2_hcclaimpmt_ach.bai2"]) == 0
    assert (out / "notes.jsonl").read_text() == "{}\n"


def test_an_output_folder_holding_inputs_is_refused(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    (tmp_path / "era.835").write_bytes(sample_bytes("LinuxForHealth-x12__managed-care.835"))
    code = main(
        [
            "reconcile",
            "--remittances",
            str(tmp_path),
            "--bank",
            str(tmp_path),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "contains input" in capsysbinary.readouterr().err.decode()


def test_an_output_folder_under_a_file_is_a_usage_error(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    (tmp_path / "afile").write_text("x")
    code = main(
        [
            "reconcile",
            "--remittances",
            str(SAMPLES / "LinuxForHealth-x12__managed-care.835"),
            "--bank",
            str(SAMPLES / "synthetic__bai2_hcclaimpmt_ach.bai2"),
            "--out",
            str(tmp_path / "afile" / "sub"),
        ]
    )
    assert code == 2
    assert capsysbinary.readouterr().err.decode().count("\n") == 1


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("matching = 3\n", "must be a table"),
        ("[matching]\nfee_tolerance_pct = nan\n", "finite"),
        ("[matching]\nlate_after_business_days = 100000000\n", "between"),
        ("[matching]\nwindow_business_days = 3.9\n", "whole number"),
        ("[matching]\nwindow_business_days = true\n", "must be a number"),
    ],
)
def test_matching_settings_are_checked(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_entity_falls_back_to_the_receiving_account(tmp_path: Path) -> None:
    from remitflow.refdata import BankAccount, Entity

    refdata = ReferenceData(
        entities=[
            Entity(id="ACME", name="Acme", accounts=[BankAccount(number="144444", gl_cash="1010")])
        ]
    )
    data = sample_bytes("LinuxForHealth-x12__managed-care.835")  # its NPI is unknown here
    rem = next(
        i for i in parse_bytes(data, ParseContext(refdata=refdata)) if isinstance(i, Remittance)
    )
    assert rem.entity == "ACME"
