"""X12 835 (005010X221A1) writer for synthetic remittances.

The writer renders what it is given and never fixes amounts: balancing is the caller's job
(see :mod:`sources.synthetic.scenarios`), so that an unbalanced 835 can be written on purpose.
Segment order follows the TR3 (header, payer loop 1000A, payee loop 1000B, LX 2000, CLP 2100,
SVC 2110, PLB), so the standard layouts validate with pyx12. Layouts reproduce what real files
do: other delimiters, no line breaks, ``\\n~`` terminators, no envelope, several interchanges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TextIO

IMPLEMENTATION_GUIDE = "005010X221A1"
ISA_LENGTH = 106  # fixed-width ISA segment including its terminator


@dataclass(frozen=True, slots=True)
class Layout:
    """How a file is written: delimiters, line breaks and envelopes."""

    name: str
    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    terminator: str = "~"
    line_break: str = "\n"  # written after each terminator ("" for one line)
    break_before_terminator: bool = False  # "\n~": line break, then the terminator
    envelope: bool = True  # ISA/GS..GE/IEA around the sets
    interchange_per_payee: bool = False  # one ISA per hospital in the same file

    def end_of_segment(self) -> str:
        if self.break_before_terminator:
            return self.line_break + self.terminator
        return self.terminator + self.line_break


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("standard"),
        Layout("one_line", line_break=""),
        Layout("newline_tilde", break_before_terminator=True),
        Layout("pipe", element="|", component="^", repetition="{"),
        Layout("gt_component", component=">"),
        Layout("no_envelope", envelope=False),
        Layout("multi_interchange", interchange_per_payee=True),
        Layout("crlf", line_break="\r\n"),
    )
}
# Layouts pyx12 cannot check: it needs an ISA (no_envelope passes without being read) and a
# terminator right after ISA16 (newline_tilde). "|" with "^" components validates.
PYX12_EXEMPT_LAYOUTS = frozenset({"newline_tilde", "no_envelope"})


# --- content --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CasAdjustment:
    group: str  # CO contractual, PR patient responsibility, OA other
    reason: str  # CARC
    amount: Decimal


@dataclass(slots=True)
class ServicePayment:
    procedure: str  # HCPCS/CPT, optionally with modifiers "99213:25"
    charge: Decimal
    paid: Decimal
    units: int
    service_date: date
    adjustments: list[CasAdjustment] = field(default_factory=list)
    line_control: str | None = None  # REF*6R
    allowed: Decimal | None = None  # AMT*B6


@dataclass(slots=True)
class ClaimPayment:
    patient_control_number: str  # CLP01 (synthetic: PHI in real files)
    status: str  # CLP02: 1 primary, 2 secondary, 4 denied, 22 reversal
    charge: Decimal
    paid: Decimal
    patient_responsibility: Decimal
    filing_indicator: str  # CLP06
    payer_claim_control_number: str  # CLP07
    facility_code: str  # CLP08 place/type of bill
    patient_last: str
    patient_first: str
    member_id: str
    statement_from: date
    statement_to: date
    adjustments: list[CasAdjustment] = field(default_factory=list)  # claim level
    services: list[ServicePayment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProviderAdjustment:
    reason: str  # PLB03-1: L6 interest, WO recoupment, FB forwarding balance, CT, IR
    reference: str | None
    amount: Decimal  # positive reduces the payment, negative increases it


@dataclass(slots=True)
class RemittanceAdvice:
    """One ST..SE transaction set."""

    control_number: str
    handling_code: str  # BPR01: I (payment + advice) or H (advice only)
    amount: Decimal  # BPR02
    method: str  # BPR04: ACH, CHK, NON
    effective_date: date  # BPR16: EFT effective / check issue date
    trace_number: str  # TRN02 (check number for CHK)
    payer_trn03: str  # TRN03 / BPR10: "1" + EIN
    production_date: date  # DTM*405
    payer_name: str
    payer_address: tuple[str, str, str, str]  # street, city, state, zip
    payer_phone: str
    payee_name: str
    payee_npi: str
    payee_tin: str
    payer_dfi_routing: str = ""
    payer_dfi_account: str = ""
    payee_dfi_routing: str = ""
    payee_dfi_account: str = ""
    payer_ref_2u: str | None = None
    receiver_ref_ev: str | None = None
    claims: list[ClaimPayment] = field(default_factory=list)
    provider_adjustments: list[ProviderAdjustment] = field(default_factory=list)
    amount_style: str = "fixed"  # "fixed" = 945.00, "minimal" = 945
    garble: str | None = None  # "bpr" or "clp": corrupt that segment's amount on purpose


@dataclass(slots=True)
class Interchange:
    """One ISA..IEA with one GS..GE group of transaction sets."""

    sender_id: str
    receiver_id: str
    created: date
    created_time: str  # HHMM
    control_number: int
    group_control_number: int
    transactions: list[RemittanceAdvice]


# --- formatting -----------------------------------------------------------------------------


def format_amount(amount: Decimal, style: str = "fixed") -> str:
    """X12 R-type: ``945.00`` (fixed) or with trailing zeros dropped (``945``, ``12.5``)."""
    q = amount.quantize(Decimal("0.01"))
    text = f"{q:f}"
    if style == "minimal" and "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", "-0.00"):
        text = text[1:]
    return text


def _d8(d: date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def _garbled_amount(text: str) -> str:
    """What a transcription error or a locale-formatted export makes of an amount."""
    whole, _, cents = text.partition(".")
    if len(whole.lstrip("-")) > 3:
        return f"{whole[:-3]},{whole[-3:]}.{cents or '00'}"  # thousands separator
    return text.replace("0", "O", 1) if "0" in text else text[:1] + "O" + text[1:]


def _cas_segments(adjustments: Iterable[CasAdjustment], style: str) -> Iterator[list[str]]:
    """CAS segments: one per group code, at most six reason/amount pairs each."""
    by_group: dict[str, list[CasAdjustment]] = {}
    for adj in adjustments:
        by_group.setdefault(adj.group, []).append(adj)
    for group, items in by_group.items():
        for start in range(0, len(items), 6):
            seg = ["CAS", group]
            for i, adj in enumerate(items[start : start + 6]):
                if i:
                    seg.append("")  # CASn quantity of the previous pair
                seg += [adj.reason, format_amount(adj.amount, style)]
            yield seg


def transaction_segments(ra: RemittanceAdvice, component: str) -> list[list[str]]:
    """The segments (as element lists) of one transaction set, ST and SE included."""
    style = ra.amount_style
    amt = format_amount(ra.amount, style)
    if ra.garble == "bpr":
        amt = _garbled_amount(amt)
    segs: list[list[str]] = [["ST", "835", ra.control_number]]
    if ra.method == "ACH":
        segs.append(
            [
                "BPR",
                ra.handling_code,
                amt,
                "C",
                "ACH",
                "CCP",
                "01",
                ra.payer_dfi_routing,
                "DA",
                ra.payer_dfi_account,
                ra.payer_trn03,
                "",
                "01",
                ra.payee_dfi_routing,
                "DA",
                ra.payee_dfi_account,
                _d8(ra.effective_date),
            ]
        )
    else:  # CHK and NON carry no bank details: BPR05..BPR15 empty
        segs.append(
            ["BPR", ra.handling_code, amt, "C", ra.method, *[""] * 11, _d8(ra.effective_date)]
        )
    segs.append(["TRN", "1", ra.trace_number, ra.payer_trn03])
    if ra.receiver_ref_ev:
        segs.append(["REF", "EV", ra.receiver_ref_ev])
    segs.append(["DTM", "405", _d8(ra.production_date)])
    street, city, state, zip_code = ra.payer_address
    segs += [
        ["N1", "PR", ra.payer_name],
        ["N3", street],
        ["N4", city, state, zip_code],
    ]
    if ra.payer_ref_2u:
        segs.append(["REF", "2U", ra.payer_ref_2u])
    segs += [
        ["PER", "BL", "PROVIDER SERVICES", "TE", ra.payer_phone],
        ["N1", "PE", ra.payee_name, "XX", ra.payee_npi],
        ["REF", "TJ", ra.payee_tin],
    ]
    if ra.claims:
        segs.append(["LX", "1"])
    for n, claim in enumerate(ra.claims):
        charge = format_amount(claim.charge, style)
        if ra.garble == "clp" and n == 0:
            charge = _garbled_amount(charge)
        segs.append(
            [
                "CLP",
                claim.patient_control_number,
                claim.status,
                charge,
                format_amount(claim.paid, style),
                format_amount(claim.patient_responsibility, style)
                if claim.patient_responsibility
                else "",
                claim.filing_indicator,
                claim.payer_claim_control_number,
                claim.facility_code,
                "1",
            ]
        )
        segs += _cas_segments(claim.adjustments, style)
        segs.append(
            [
                "NM1",
                "QC",
                "1",
                claim.patient_last,
                claim.patient_first,
                "",
                "",
                "",
                "MI",
                claim.member_id,
            ]
        )
        if not claim.services:
            segs += [["DTM", "232", _d8(claim.statement_from)]]
            segs += [["DTM", "233", _d8(claim.statement_to)]]
        for svc in claim.services:
            segs.append(
                [
                    "SVC",
                    f"HC{component}{svc.procedure.replace(':', component)}",
                    format_amount(svc.charge, style),
                    format_amount(svc.paid, style),
                    "",
                    str(svc.units),
                ]
            )
            segs.append(["DTM", "472", _d8(svc.service_date)])
            segs += _cas_segments(svc.adjustments, style)
            if svc.line_control:
                segs.append(["REF", "6R", svc.line_control])
            if svc.allowed is not None:
                segs.append(["AMT", "B6", format_amount(svc.allowed, style)])
    if ra.provider_adjustments:
        fiscal = _d8(date(ra.effective_date.year, 12, 31))
        adjs = ra.provider_adjustments
        for start in range(0, len(adjs), 6):
            seg = ["PLB", ra.payee_npi, fiscal]
            for adj in adjs[start : start + 6]:
                ident = f"{adj.reason}{component}{adj.reference}" if adj.reference else adj.reason
                seg += [ident, format_amount(adj.amount, style)]
            segs.append(seg)
    segs.append(["SE", str(len(segs) + 1), ra.control_number])
    return segs


def isa_segment(ix: Interchange, layout: Layout) -> str:
    e = layout.element
    elements = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        f"{ix.sender_id:<15.15}",
        "ZZ",
        f"{ix.receiver_id:<15.15}",
        f"{ix.created:%y%m%d}",
        ix.created_time,
        layout.repetition,
        "00501",
        f"{ix.control_number:09d}",
        "0",
        "P",
        layout.component,
    ]
    return e.join(elements)


def _render(segs: Iterable[list[str]], layout: Layout) -> str:
    e = layout.element
    end = layout.end_of_segment()
    return "".join(e.join(s) + end for s in segs)


def write_835(out: TextIO, interchanges: list[Interchange], layout: Layout) -> None:
    """Write the interchanges (or, with no envelope, only their transaction sets) to ``out``.

    ``out`` must be opened with ``newline=""`` so that CRLF layouts stay byte-exact.
    """
    end = layout.end_of_segment()
    comp = layout.component
    for ix in interchanges:
        if layout.envelope:
            out.write(isa_segment(ix, layout) + end)
            out.write(
                _render(
                    [
                        [
                            "GS",
                            "HP",
                            ix.sender_id,
                            ix.receiver_id,
                            _d8(ix.created),
                            ix.created_time,
                            str(ix.group_control_number),
                            "X",
                            IMPLEMENTATION_GUIDE,
                        ]
                    ],
                    layout,
                )
            )
        for ra in ix.transactions:
            out.write(_render(transaction_segments(ra, comp), layout))
        if layout.envelope:
            out.write(
                _render(
                    [
                        ["GE", str(len(ix.transactions)), str(ix.group_control_number)],
                        ["IEA", "1", f"{ix.control_number:09d}"],
                    ],
                    layout,
                )
            )
