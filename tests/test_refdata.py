"""Reference data: loading, lookups, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from remitflow.refdata import (
    BankAccount,
    Entity,
    Payer,
    ReferenceData,
    ReferenceDataError,
    load_reference_data,
)

DOC = """
[[entities]]
id = "NORTH"
name = "North General Hospital"
npis = ["1234567893"]
tins = ["123456789"]

[[entities.accounts]]
number = "000123456789"
gl_cash = "1010-NORTH"

[[payers]]
id = "RUSHMORE"
name = "RUSHMORE LIFE"
payer_ids = ["1935665544"]
aliases = ["RUSHMORE LIFE INS"]

[gl.plb]
L6 = "4800"
"""


def test_load_and_lookups(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(DOC)
    ref = load_reference_data(path)
    assert ref.entity_for_payee("1234567893", None) == "NORTH"
    assert ref.entity_for_payee(None, "123456789") == "NORTH"
    assert ref.entity_for_payee("999", None) is None
    # Banks print account numbers with and without leading zeros.
    assert ref.entity_for_account("123456789") == "NORTH"
    account = ref.account("0000123456789")
    assert account is not None and account.gl_cash == "1010-NORTH"
    payer = ref.payer_for_id("1935665544")
    assert payer is not None and payer.id == "RUSHMORE"
    # CCD+ addenda sometimes carry the bare EIN without the leading "1".
    assert ref.payer_for_id("935665544") is payer
    assert ref.payer_names() == {"RUSHMORE": ["RUSHMORE LIFE", "RUSHMORE LIFE INS"]}
    assert ref.gl.plb == {"L6": "4800"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("entities = [", "not valid TOML"),
        ("[[entities]]\nname = 'x'\n", "entities.0.id"),
        ("unknown_section = 1\n", "unknown_section"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(content)
    with pytest.raises(ReferenceDataError, match=message):
        load_reference_data(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="cannot read"):
        load_reference_data(tmp_path / "nope.toml")


def test_models_are_immutable() -> None:
    ref = ReferenceData(
        entities=[Entity(id="A", name="A", accounts=[BankAccount(number="1", gl_cash="x")])],
        payers=[Payer(id="P", name="P")],
    )
    with pytest.raises(ValueError):
        ref.entities[0].id = "B"  # type: ignore[misc]
