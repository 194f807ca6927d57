"""Reference data: who the entities and payers are, and where money is booked.

The embedded mode loads it from a TOML file (``tomllib`` is in the standard library, so no extra
dependency); production keeps the same document in Redis (#4). Lookups are precomputed into
dicts at load time because parsers call them once per event.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remitflow.identity import normalize_trace


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BankAccount(_Model):
    number: str
    routing: str | None = None
    gl_cash: str
    currency: str = "USD"


class Entity(_Model):
    """A hospital or legal entity: it is paid under its NPIs/TINs into its accounts."""

    id: str
    name: str
    npis: list[str] = Field(default_factory=list)
    tins: list[str] = Field(default_factory=list)
    facility: str | None = None
    accounts: list[BankAccount] = Field(default_factory=list)


class Payer(_Model):
    """A payer as the remittance names it (TRN03 / N1*PR) and as bank text names it (aliases)."""

    id: str
    name: str
    payer_ids: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    clearing_account: str | None = None


class GLMapping(_Model):
    currency: str = "USD"
    clearing_default: str = "1200-PAYER-CLEARING"
    unapplied_cash: str = "2190-UNAPPLIED-CASH"
    bank_fees: str = "6100-BANK-AND-VENDOR-FEES"
    plb: dict[str, str] = Field(
        default_factory=lambda: {
            "L6": "4800-INTEREST-INCOME",
            "WO": "1210-RECOUPMENTS",
            "FB": "1210-RECOUPMENTS",
            "CT": "4100-CAPITATION",
            "IR": "2300-WITHHOLDING",
            "LE": "2300-WITHHOLDING",
        }
    )
    plb_default: str = "1290-PROVIDER-ADJUSTMENTS"
    variances: dict[str, str] = Field(
        default_factory=lambda: {
            "fee": "6100-BANK-AND-VENDOR-FEES",
            "amount_mismatch": "1295-CASH-VARIANCE",
            "remit_unbalanced": "1296-REMIT-VARIANCE",
        }
    )


class ReferenceDataError(ValueError):
    """The reference data file is missing, unreadable or not of the expected shape."""


class ReferenceData(_Model):
    entities: list[Entity] = Field(default_factory=list)
    payers: list[Payer] = Field(default_factory=list)
    gl: GLMapping = Field(default_factory=GLMapping)

    # Precomputed indexes (not part of the document).
    @cached_property
    def _entity_by_key(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for e in self.entities:
            for key in (*e.npis, *e.tins):
                index[key.strip()] = e.id
        return index

    @cached_property
    def _entity_by_account(self) -> dict[str, str]:
        return {_account_key(a.number): e.id for e in self.entities for a in e.accounts}

    @cached_property
    def _facility(self) -> dict[str, str | None]:
        index: dict[str, str | None] = {}
        for e in self.entities:
            index.setdefault(e.id, e.facility)  # the first entity of an id, as a scan finds
        return index

    def facility(self, entity: str | None) -> str | None:
        """The facility dimension of an entity (called per journal)."""
        return self._facility.get(entity) if entity is not None else None

    @cached_property
    def _account(self) -> dict[str, BankAccount]:
        return {_account_key(a.number): a for e in self.entities for a in e.accounts}

    @cached_property
    def _payer_by_id(self) -> dict[str, Payer]:
        index: dict[str, Payer] = {}
        for p in self.payers:
            for pid in p.payer_ids:
                index[payer_id_key(pid)] = p
        return index

    def entity_for_payee(self, npi: str | None, tin: str | None) -> str | None:
        for key in (npi, tin):
            if key:
                found = self._entity_by_key.get(key.strip())
                if found:
                    return found
        return None

    def entity_for_account(self, account: str) -> str | None:
        return self._entity_by_account.get(_account_key(account))

    def account(self, number: str) -> BankAccount | None:
        return self._account.get(_account_key(number))

    @cached_property
    def _payer_memo(self) -> dict[str, Payer | None]:
        return {}

    def payer_for_id(self, payer_id: str | None) -> Payer | None:
        """The payer an id names, as TRN03 writes it or bare; remembered (called per item)."""
        if not payer_id:
            return None
        memo = self._payer_memo
        if payer_id in memo:
            return memo[payer_id]
        found = self._payer_by_id.get(payer_id_key(payer_id))
        if len(memo) < 100_000:
            memo[payer_id] = found
        return found

    def payer_names(self) -> dict[str, list[str]]:
        """Every name a payer goes by, for fuzzy recognition in bank text."""
        return {p.id: [p.name, *p.aliases] for p in self.payers}


def _account_key(number: str) -> str:
    return number.strip().lstrip("0")


def payer_id_key(payer_id: str) -> str:
    """TRN03 is "1" + EIN (10 digits); some payers send the bare 9-digit EIN in the addenda.

    The "1" goes before leading zeros do: 1042452600 and 042452600 are the same payer.
    """
    key = "".join(payer_id.split()).upper()
    if len(key) == 10 and key.startswith("1") and key.isdigit():
        key = key[1:]
    return normalize_trace(key)


def read_toml(path: str | Path, what: str = "reference data") -> dict[str, Any]:
    """A TOML document, or one clear error naming the file and what is wrong with it."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ReferenceDataError(f"cannot read {what} {p}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ReferenceDataError(f"{what} {p} is not valid TOML: {exc}") from None


def load_reference_data(path: str | Path) -> ReferenceData:
    return parse_reference_data(read_toml(path), path)


def parse_reference_data(doc: dict[str, Any], where: str | Path = "<memory>") -> ReferenceData:
    try:
        return ReferenceData.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ReferenceDataError(
            f"reference data {where}: {loc}: {first['msg']} ({exc.error_count()} error(s))"
        ) from None


def example_reference_data_path() -> Path:
    """The shipped example (the network `remitflow demo` generates)."""
    return Path(str(resources.files("remitflow") / "data" / "refdata.example.toml"))
