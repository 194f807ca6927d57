"""BAI2 (version 2) writer for synthetic previous-day bank reports.

Control totals follow the BAI2 specification (Cash Management Balance Reporting Specifications
Version 2): the account trailer (49) total is the algebraic sum of every amount field of the 03
record and of the 16 records of the account (the availability amounts of funds type S are not
amount fields of their own and are not added); its record count includes the 03, the 16s, the
88s and the 49 itself. Group (98) and file (99) trailers sum the level below and count every
record of their level including their own header and trailer.

Detail amounts are unsigned cents; the type code says whether it is a credit or a debit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TextIO

from remitflow.money import cents


@dataclass(slots=True)
class BaiTransaction:
    """One 16 record and its 88 continuations."""

    type_code: str
    amount: Decimal  # positive; direction comes from the type code
    funds_type: str = ""  # "", "0", "1", "2", "Z" or "S"
    availability: tuple[Decimal, Decimal, Decimal] | None = None  # funds type S
    bank_reference: str = ""
    customer_reference: str = ""
    text: str = ""
    continuations: list[str] = field(default_factory=list)  # 88 records after the 16
    garbled: bool = False  # write an amount that is not a number (a corrupt record)

    @property
    def is_credit(self) -> bool:
        n = int(self.type_code)
        return 100 <= n <= 399 or 900 <= n <= 919


@dataclass(slots=True)
class BaiAccount:
    number: str
    opening_ledger: Decimal
    transactions: list[BaiTransaction] = field(default_factory=list)
    currency: str = "USD"

    @property
    def total_credits(self) -> Decimal:
        return sum((t.amount for t in self.transactions if t.is_credit), Decimal(0))

    @property
    def total_debits(self) -> Decimal:
        return sum((t.amount for t in self.transactions if not t.is_credit), Decimal(0))

    @property
    def closing_ledger(self) -> Decimal:
        return self.opening_ledger + self.total_credits - self.total_debits


@dataclass(slots=True)
class BaiGroup:
    ultimate_receiver: str
    originator: str  # the bank's routing number
    as_of_date: date
    accounts: list[BaiAccount]
    as_of_time: str = "2400"
    currency: str = "USD"


@dataclass(slots=True)
class BaiFile:
    sender: str
    receiver: str
    created: date
    created_time: str  # HHMM
    file_id: int
    groups: list[BaiGroup]
    line_end: str = "\n"


def _yymmdd(d: date) -> str:
    return f"{d:%y%m%d}"


def _signed(amount: Decimal) -> str:
    c = cents(amount)
    return f"-{-c}" if c < 0 else str(c)


def _garble(text: str) -> str:
    """An amount mangled by a broken export: a letter in the middle of the digits."""
    mid = max(1, len(text) // 2)
    return text[:mid] + "X" + text[mid:]


def _account_records(account: BaiAccount) -> tuple[list[str], int]:
    """The 03/16/88/49 records of one account, and its control total in cents."""
    n_credits = sum(1 for t in account.transactions if t.is_credit)
    n_debits = len(account.transactions) - n_credits
    opening = cents(account.opening_ledger)
    closing = cents(account.closing_ledger)
    credits = cents(account.total_credits)
    debits = cents(account.total_debits)
    summary = [
        ("010", opening, ""),
        ("015", closing, ""),
        ("040", opening, ""),
        ("045", closing, ""),
        ("100", credits, str(n_credits)),
        ("400", debits, str(n_debits)),
    ]
    fields = ["03", account.number, account.currency]
    for code, amount, count in summary:
        fields += [code, _signed(Decimal(amount).scaleb(-2)), count, ""]
    records = [",".join(fields) + "/"]
    total = sum(amount for _, amount, _ in summary)
    for t in account.transactions:
        amount_text = str(cents(t.amount))
        total += cents(t.amount)
        if t.garbled:
            amount_text = _garble(amount_text)
        parts = ["16", t.type_code, amount_text, t.funds_type]
        if t.funds_type == "S" and t.availability is not None:
            parts += [str(cents(a)) for a in t.availability]
        parts += [t.bank_reference, t.customer_reference]
        if t.text:
            records.append(",".join(parts) + "," + t.text)
        else:
            records.append(",".join(parts) + ",/")
        records += [f"88,{c}" for c in t.continuations]
    records.append(f"49,{total},{len(records) + 1}/")
    return records, total


def write_bai2(out: TextIO, report: BaiFile) -> None:
    """Write one BAI2 file; ``out`` must be opened with ``newline=""``."""
    nl = report.line_end
    out.write(
        f"01,{report.sender},{report.receiver},{_yymmdd(report.created)},"
        f"{report.created_time},{report.file_id},,,2/{nl}"
    )
    file_total = 0
    file_records = 2  # 01 and 99
    for group in report.groups:
        out.write(
            f"02,{group.ultimate_receiver},{group.originator},1,{_yymmdd(group.as_of_date)},"
            f"{group.as_of_time},{group.currency},2/{nl}"
        )
        group_total = 0
        group_records = 2  # 02 and 98
        for account in group.accounts:
            records, total = _account_records(account)
            out.write(nl.join(records) + nl)
            group_total += total
            group_records += len(records)
        out.write(f"98,{group_total},{len(group.accounts)},{group_records}/{nl}")
        file_total += group_total
        file_records += group_records
    out.write(f"99,{file_total},{len(report.groups)},{file_records}/{nl}")
