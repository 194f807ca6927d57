"""The contract every parser follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from remitflow.events import BankTransaction, Posting, Remittance
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter, ParseIssue
from remitflow.refdata import ReferenceData

Event: TypeAlias = Remittance | BankTransaction | Posting
Parsed: TypeAlias = Remittance | BankTransaction | Posting | DeadLetter | ParseIssue


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser needs besides bytes: a display name, reference data, the PHI hasher."""

    file: str = "<memory>"
    refdata: ReferenceData = field(default_factory=ReferenceData)
    phi: PhiHasher = field(default_factory=PhiHasher)

    def named(self, file: str) -> ParseContext:
        return ParseContext(file=file, refdata=self.refdata, phi=self.phi)
