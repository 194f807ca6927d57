"""The scenario mix: which remittances, deposits and bank lines exist, and what should happen.

Every item is planned together with its intended outcome (:class:`Expect`), so ``truth.jsonl``
is a by-product of planning rather than a guess made afterwards. One ``random.Random`` seeded
from the parameters drives all choices, in a fixed iteration order (lists, never sets), so the
same parameters always give the same plan.

How the scenarios are built so that exactly one matching rule can decide each of them:

- every remittance and deposit amount is unique per payer, except inside an ``ambiguous``
  group, so "payer + amount + date" never finds a second candidate by accident;
- every trace number is unique after normalisation; ``trace_normalized`` deposits differ from
  the ERA only by leading zeros or letter case;
- vendor fees are at most :data:`FEE_MAX_RATE` of the payment; amount mismatches at least
  :data:`MISMATCH_MIN_RATE` and :data:`MISMATCH_MIN_AMOUNT`, so any tolerance in between
  separates them;
- items meant to stay unmatched are dated either well before the end of the period
  (``no_counterpart``: at least :data:`NO_COUNTERPART_MIN_AGE` business days) or in its last
  business days (``end_of_input``), never in between, where the answer would depend on how the
  engine advances event time.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Generic, TypeVar

from remitflow.calendar import add_business_days, business_days
from remitflow.events import PAYER_CASH_CATEGORIES
from remitflow.identity import content_id, idempotency_key
from remitflow.money import cents
from sources.bank import classify, extract
from sources.synthetic.bai2_writer import BaiAccount, BaiFile, BaiGroup, BaiTransaction
from sources.synthetic.network import FILING_INDICATORS, Account, Bank, Hospital, Network, PayerInfo
from sources.synthetic.x12_writer import (
    LAYOUTS,
    CasAdjustment,
    ClaimPayment,
    Interchange,
    ProviderAdjustment,
    RemittanceAdvice,
    ServicePayment,
)

T = TypeVar("T")
CENT = Decimal("0.01")
ZERO = Decimal(0)

FEE_MAX_RATE = Decimal("0.03")  # vendor fees deducted from a deposit: at most 3 % ...
FEE_FIXED = (Decimal("0.50"), Decimal("1.00"), Decimal("1.50"), Decimal("2.00"), Decimal("2.95"))
MISMATCH_MIN_RATE = Decimal("0.10")  # ... amount mismatches: at least 10 % and $50
MISMATCH_MIN_AMOUNT = Decimal("50.00")
LATE_AFTER_BUSINESS_DAYS = 4  # DESIGN §1: past 4 business days a missing counterpart is late
NO_COUNTERPART_MIN_AGE = LATE_AFTER_BUSINESS_DAYS + 2  # this old at the end: "no_counterpart"
END_OF_INPUT_MAX_AGE = 1  # ... this young are "end_of_input"; nothing is planned in between

# Scenarios drawn per "slot" (one payer paying one hospital on one day), with their weights.
SLOT_SCENARIOS: tuple[tuple[str, float], ...] = (
    ("clean", 0.585),
    ("trace_normalized", 0.05),
    ("no_addenda", 0.05),
    ("vendor_fee", 0.03),
    ("amount_mismatch", 0.015),
    ("consolidated", 0.025),
    ("split_deposit", 0.015),
    ("zero_pay", 0.03),
    ("reversal", 0.04),
    ("era_without_deposit", 0.02),
    ("deposit_without_era", 0.015),
    ("ambiguous", 0.005),
    ("lockbox_check", 0.05),
    ("unbalanced_835", 0.012),
    ("corrupt_835", 0.004),
    ("corrupt_bai2", 0.004),
)
# Scenarios that come from elsewhere than slots.
OTHER_SCENARIOS = (
    "non_payer_bank_line",
    "non_payer_wire",
    "resent_835",
    "rereported_bai2_day",
)
ALL_SCENARIOS = (*(s for s, _ in SLOT_SCENARIOS), *OTHER_SCENARIOS)

LAYOUT_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("standard", 0.62),
    ("one_line", 0.06),
    ("newline_tilde", 0.05),
    ("pipe", 0.05),
    ("gt_component", 0.06),
    ("no_envelope", 0.05),
    ("multi_interchange", 0.06),
    ("crlf", 0.05),
)
RESEND_835_RATE = 0.02
REREPORT_BAI2_RATE = 0.04


@dataclass(frozen=True, slots=True)
class Expect:
    """The intended outcome of one input item (one line of ``truth.jsonl``)."""

    scenario: str
    outcome: str
    rule: str | None
    case: str
    entity: str


@dataclass(slots=True)
class PlannedRemittance:
    advice: RemittanceAdvice
    payer: PayerInfo
    hospital: Hospital
    expect: Expect
    file: str = ""

    @property
    def key(self) -> str:
        return self.advice.control_number


@dataclass(slots=True)
class PlannedDeposit:
    """A BAI2 16 record: payer cash or any other bank line."""

    txn: BaiTransaction
    account: Account
    hospital: Hospital
    as_of: date
    expect: Expect
    file: str = ""

    @property
    def key(self) -> str:
        return self.txn.bank_reference


@dataclass(slots=True)
class Case:
    """Items intended to be decided together, and the cash the ERP journal would carry."""

    id: str
    entity: str
    outcome: str
    rule: str | None
    scenario: str
    remittances: list[PlannedRemittance] = field(default_factory=list)
    deposits: list[PlannedDeposit] = field(default_factory=list)

    @property
    def cash(self) -> Decimal:
        if self.deposits:
            return sum((d.txn.amount for d in self.deposits), ZERO)
        return sum((r.advice.amount for r in self.remittances), ZERO)

    @property
    def last_date(self) -> date:
        dates = [d.as_of for d in self.deposits]
        dates += [r.advice.production_date for r in self.remittances]
        dates += [r.advice.effective_date for r in self.remittances]
        return max(dates)


@dataclass(slots=True)
class RemittanceFile:
    name: str  # relative to the output directory
    layout: str
    payer: PayerInfo
    created: date
    items: list[PlannedRemittance]
    interchanges: list[Interchange] = field(default_factory=list)
    resend_of: str | None = None


@dataclass(slots=True)
class BankFile:
    name: str
    bank: Bank
    as_of: date
    report: BaiFile
    items: list[PlannedDeposit]
    rereport_of: str | None = None


@dataclass(slots=True)
class Plan:
    network: Network
    days: list[date]
    cases: list[Case]
    remittance_files: list[RemittanceFile]
    bank_files: list[BankFile]

    def remittances(self) -> Iterator[PlannedRemittance]:
        for f in self.remittance_files:
            yield from f.items

    def deposits(self) -> Iterator[PlannedDeposit]:
        for f in self.bank_files:
            yield from f.items


# --- claim content --------------------------------------------------------------------------

# (HCPCS/CPT, low and high charge)
_PROCEDURES: tuple[tuple[str, int, int], ...] = (
    ("99213", 95, 180),
    ("99214", 140, 260),
    ("99283", 250, 900),
    ("99285", 900, 2800),
    ("99223", 350, 700),
    ("80053", 40, 120),
    ("85025", 25, 80),
    ("36415", 10, 35),
    ("81001", 15, 45),
    ("87086", 30, 90),
    ("71046", 120, 400),
    ("70450", 600, 2200),
    ("74177", 900, 3200),
    ("93000", 60, 200),
    ("97110", 90, 180),
    ("90834", 120, 220),
    ("J1885", 15, 60),
    ("G0439", 150, 300),
    ("29881", 3000, 9000),
    ("45378", 1500, 4500),
)
_MODIFIERS = ("25", "59", "LT", "RT", "TC", "26")
_DENIAL_REASONS = ("16", "18", "29", "50", "97", "151", "197", "204")
# Obviously fake patient names: the parser must drop NM1*QC whatever it holds.
_FAKE_LAST = ("TESTPATIENT", "SYNTHETIC", "FAKENAME", "SAMPLEDATA", "DEMOPERSON", "NOTREAL")
_FAKE_FIRST = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL")
_ALLOWED_RATIO = {"commercial": (0.45, 0.85), "medicare": (0.30, 0.55), "medicaid": (0.25, 0.45)}
_NON_PAYERS = (
    "STATE UNIVERSITY FOUNDATION",
    "COUNTY TREASURER GRANT",
    "HOSPITAL AUXILIARY FUND",
    "PARKING SERVICES LLC",
)


class _Weighted(Generic[T]):
    """A weighted choice with its cumulative weights computed once (``random.choices`` would
    recompute them on every call, which dominates planning time)."""

    __slots__ = ("_cum", "_total", "values")

    def __init__(self, pairs: Iterable[tuple[T, float]]) -> None:
        items = list(pairs)
        self.values = tuple(v for v, _ in items)
        self._cum = list(itertools.accumulate(w for _, w in items))
        self._total = self._cum[-1]

    def pick(self, rng: random.Random) -> T:
        return self.values[bisect.bisect(self._cum, rng.random() * self._total)]


_DEPOSIT_DELAY = _Weighted([(0, 80), (1, 15), (2, 4), (3, 1)])
_PRODUCTION_OFFSET = _Weighted([(0, 50), (-1, 25), (-2, 12), (-3, 5), (1, 8)])
_SERVICE_LINES = _Weighted([(1, 45), (2, 30), (3, 15), (4, 10)])
_UNITS = _Weighted([(1, 85), (2, 10), (3, 5)])
_PLB_KINDS = _Weighted([("L6", 45), ("WO", 25), ("FB", 10), ("CT", 10), ("IR", 10)])
_CLAIMS_PER_ERA = _Weighted([(1, 30), (2, 25), (3, 18), (4, 12), (6, 10), (9, 5)])
_FUNDS_TYPES = _Weighted([("0", 60), ("1", 15), ("Z", 8), ("", 12), ("S", 5)])
_ADDENDA_STYLES = _Weighted(
    [
        ("plain", 40),
        ("labelled", 15),
        ("split", 15),
        ("extra", 10),
        ("inline", 10),
        ("keyvalue", 10),
    ]
)
_SLOT_TABLE = _Weighted(SLOT_SCENARIOS)
_LAYOUT_TABLE = _Weighted(LAYOUT_WEIGHTS)


def _money(x: float) -> Decimal:
    """A float draw as an amount in cents (exponent -2, so it prints as 12.30)."""
    return Decimal(round(x * 100)).scaleb(-2)


class _Planner:
    """Draws the slots (payer × hospital × day), then builds each slot's items and case."""

    def __init__(self, network: Network, days: list[date], rate: float, rng: random.Random):
        self.net = network
        self.days = days
        self.last = len(days) - 1
        self.rate = rate
        self.rng = rng
        # Business days from well before the period (service dates) to after it, by index.
        self.calendar = business_days(days[0] - timedelta(days=200), len(days) + 160)
        self.calendar_index = {d: i for i, d in enumerate(self.calendar)}
        self.cases: list[Case] = []
        self.remittances: list[PlannedRemittance] = []
        self.deposits: list[PlannedDeposit] = []
        self.used_amounts: set[tuple[str, int]] = set()
        self.used_traces: set[str] = set()
        self.seq = 0  # patient control / claim control numbers
        self.bank_refs: dict[str, int] = {}
        mean_volume = sum(p.volume for p in network.payers) / len(network.payers)
        mean_size = sum(h.size for h in network.hospitals) / len(network.hospitals)
        self.payer_weight = {p.id: p.volume / mean_volume for p in network.payers}
        self.hospital_weight = {h.id: h.size / mean_size for h in network.hospitals}

    # --- slots ------------------------------------------------------------------------------

    def slots(self) -> list[tuple[int, PayerInfo, Hospital, str]]:
        rng = self.rng
        names = _SLOT_TABLE.values
        slots: list[tuple[int, PayerInfo, Hospital, str]] = []
        for di in range(len(self.days)):
            for payer in self.net.payers:
                for hospital in self.net.hospitals:
                    lam = (
                        self.rate * self.payer_weight[payer.id] * self.hospital_weight[hospital.id]
                    )
                    for _ in range(_poisson(rng, lam)):
                        slots.append((di, payer, hospital, _SLOT_TABLE.pick(rng)))
        # Every scenario at least once: turn clean slots in the middle of the period into the
        # missing ones (the middle leaves room for the ±3 business-day windows).
        present = {s for *_, s in slots}
        missing = [s for s in names if s not in present]
        middle = [
            i
            for i, (di, *_, s) in enumerate(slots)
            if s == "clean" and (self.last < 8 or 3 <= di <= self.last - 3)
        ]
        rng.shuffle(middle)
        for scenario, i in zip(missing, middle, strict=False):
            di, payer, hospital, _ = slots[i]
            slots[i] = (di, payer, hospital, scenario)
        return slots

    def build(self) -> None:
        for di, payer, hospital, scenario in self.slots():
            getattr(self, f"_slot_{scenario}")(di, payer, hospital)
        self._non_payer_lines()

    # --- helpers ----------------------------------------------------------------------------

    def _case(self, entity: str, outcome: str, rule: str | None, scenario: str) -> Case:
        case = Case(f"C{len(self.cases) + 1:06d}", entity, outcome, rule, scenario)
        self.cases.append(case)
        return case

    def _expect(self, case: Case, scenario: str | None = None) -> Expect:
        return Expect(scenario or case.scenario, case.outcome, case.rule, case.id, case.entity)

    def _unmatched_day(self, di: int) -> tuple[int, str]:
        """Move an unmatched item out of the grey zone; return its day and its rule."""
        age = self.last - di
        if END_OF_INPUT_MAX_AGE < age < NO_COUNTERPART_MIN_AGE:
            di = (
                self.last - NO_COUNTERPART_MIN_AGE
                if self.last >= NO_COUNTERPART_MIN_AGE
                else self.last
            )
        rule = "no_counterpart" if self.last - di >= NO_COUNTERPART_MIN_AGE else "end_of_input"
        return di, rule

    def _shift(self, day: date, n: int) -> date:
        """``add_business_days`` on the precomputed calendar (called once per claim)."""
        i = self.calendar_index.get(day)
        if i is None or not 0 <= i + n < len(self.calendar):
            return add_business_days(day, n)
        return self.calendar[i + n]

    def _day(self, di: int) -> date:
        return self.days[max(0, min(self.last, di))]

    def _dates(self, di: int) -> tuple[date, date, date]:
        """(effective, production, deposit) dates for an ACH payment effective on day ``di``."""
        rng = self.rng
        dep = min(self.last, di + _DEPOSIT_DELAY.pick(rng))
        prod = di + _PRODUCTION_OFFSET.pick(rng)
        prod = max(0, min(self.last, max(dep - 3, min(dep + 3, prod))))
        return self.days[di], self.days[prod], self.days[dep]

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _trace(self, payer: PayerInfo) -> str:
        rng = self.rng
        while True:
            style = payer.trace_style
            if style == "ach15":
                trace = payer.dfi_routing[:8] + f"{rng.randrange(10**7):07d}"
            elif style == "alnum":
                letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
                trace = f"{rng.randrange(1, 10)}{letters}{rng.randrange(10**8):08d}"
            elif style == "zero_padded":
                trace = f"00{rng.randrange(10**7, 10**8)}"
            else:
                trace = str(rng.randrange(10**8, 10**10))
            norm = trace.upper().lstrip("0")
            if norm not in self.used_traces:
                self.used_traces.add(norm)
                return trace

    def _check_number(self) -> str:
        while True:
            number = str(self.rng.randrange(10**6, 10**8))
            if number not in self.used_traces:
                self.used_traces.add(number)
                return number

    def _claim(self, payer: PayerInfo, service_day: date, *, denied: bool = False) -> ClaimPayment:
        rng = self.rng
        n = self._next_seq()
        lob = payer.line_of_business
        lo, hi = _ALLOWED_RATIO[lob]
        status = "4" if denied else ("2" if rng.random() < 0.08 else "1")
        institutional = rng.random() < 0.25
        adjustments: list[CasAdjustment] = []
        services: list[ServicePayment] = []

        def adjudicate(charge: Decimal, into: list[CasAdjustment]) -> tuple[Decimal, Decimal]:
            """(paid, patient responsibility) of one charge; adjustments appended to ``into``."""
            if status == "4" or rng.random() < 0.04:
                into.append(CasAdjustment("CO", rng.choice(_DENIAL_REASONS), charge))
                return ZERO, ZERO
            allowed = _money(float(charge) * rng.uniform(lo, hi))
            if charge - allowed:
                into.append(CasAdjustment("CO", "45", charge - allowed))
            remaining = allowed
            patient = ZERO
            if status == "2":
                prior = _money(float(allowed) * rng.uniform(0.4, 0.8))
                into.append(CasAdjustment("OA", "23", prior))
                remaining -= prior
            if rng.random() < 0.3 and remaining > 0:
                deductible = min(remaining, _money(rng.uniform(20, 500)))
                into.append(CasAdjustment("PR", "1", deductible))
                remaining -= deductible
                patient += deductible
            if rng.random() < 0.35 and remaining > 0:
                coins = _money(float(remaining) * 0.2)
                if coins:
                    into.append(CasAdjustment("PR", "2", coins))
                    remaining -= coins
                    patient += coins
            elif rng.random() < 0.2 and remaining > 0:
                copay = min(remaining, Decimal(rng.choice((20, 25, 30, 40, 50))))
                into.append(CasAdjustment("PR", "3", copay))
                remaining -= copay
                patient += copay
            if lob == "medicare" and remaining > 0:
                sequestration = _money(float(remaining) * 0.02)
                if sequestration:
                    into.append(CasAdjustment("CO", "253", sequestration))
                    remaining -= sequestration
            return remaining, patient

        if institutional:
            charge = _money(rng.lognormvariate(8.3, 0.8))
            paid, patient = adjudicate(charge, adjustments)
            facility = "11"
        else:
            charge = paid = patient = ZERO
            for line in range(_SERVICE_LINES.pick(rng)):
                code, low, high = rng.choice(_PROCEDURES)
                units = _UNITS.pick(rng)
                if rng.random() < 0.1:
                    code = f"{code}:{rng.choice(_MODIFIERS)}"
                svc_charge = _money(rng.uniform(low, high) * units)
                svc_adj: list[CasAdjustment] = []
                svc_paid, svc_patient = adjudicate(svc_charge, svc_adj)
                allowed = svc_paid + sum(
                    (a.amount for a in svc_adj if a.group in ("PR", "OA") or a.reason == "253"),
                    ZERO,
                )
                services.append(
                    ServicePayment(
                        procedure=code,
                        charge=svc_charge,
                        paid=svc_paid,
                        units=units,
                        service_date=service_day,
                        adjustments=svc_adj,
                        line_control=f"{n:07d}{line + 1:02d}" if rng.random() < 0.5 else None,
                        allowed=allowed if svc_paid and rng.random() < 0.5 else None,
                    )
                )
                charge += svc_charge
                paid += svc_paid
                patient += svc_patient
            facility = rng.choice(("13", "13", "11", "23"))
        return ClaimPayment(
            patient_control_number=f"SYN{n:09d}",
            status=status,
            charge=charge,
            paid=paid,
            patient_responsibility=patient,
            filing_indicator=rng.choice(FILING_INDICATORS[lob]),
            payer_claim_control_number=f"{rng.randrange(10**13, 10**14)}",
            facility_code=facility,
            patient_last=rng.choice(_FAKE_LAST),
            patient_first=rng.choice(_FAKE_FIRST),
            member_id=f"ZZ{rng.randrange(10**9):09d}",
            statement_from=service_day,
            statement_to=service_day,
            adjustments=adjustments,
            services=services,
        )

    def _reversal_of(self, claim: ClaimPayment) -> ClaimPayment:
        """CLP02=22: the earlier payment taken back, every amount negated."""

        def neg(adjs: list[CasAdjustment]) -> list[CasAdjustment]:
            return [CasAdjustment(a.group, a.reason, -a.amount) for a in adjs]

        return replace(
            claim,
            status="22",
            charge=-claim.charge,
            paid=-claim.paid,
            patient_responsibility=-claim.patient_responsibility,
            adjustments=neg(claim.adjustments),
            services=[
                replace(
                    s,
                    charge=-s.charge,
                    paid=-s.paid,
                    adjustments=neg(s.adjustments),
                    allowed=-s.allowed if s.allowed is not None else None,
                )
                for s in claim.services
            ],
        )

    def _plb(self, payer: PayerInfo, claims: list[ClaimPayment]) -> list[ProviderAdjustment]:
        rng = self.rng
        if rng.random() >= 0.15 or not claims:
            return []
        paid = sum((c.paid for c in claims), ZERO)
        kind = _PLB_KINDS.pick(rng)
        if kind == "L6":
            ref = rng.choice(claims).payer_claim_control_number
            return [ProviderAdjustment("L6", ref, -_money(rng.uniform(0.25, 35)))]
        if kind == "WO":
            ref = f"{rng.randrange(10**13, 10**14)}"
            amount = min(_money(rng.uniform(15, 600)), (paid * Decimal("0.6")).quantize(CENT))
            return [ProviderAdjustment("WO", ref, amount)] if amount > 0 else []
        if kind == "FB":
            ref = f"FB{rng.randrange(10**8):08d}"
            amount = _money(rng.uniform(10, 300))
            if rng.random() < 0.5:
                amount = min(amount, (paid * Decimal("0.5")).quantize(CENT))
            else:
                amount = -amount
            return [ProviderAdjustment("FB", ref, amount)] if amount else []
        if kind == "CT":
            return [ProviderAdjustment("CT", None, -_money(rng.uniform(500, 5000)))]
        amount = min(_money(rng.uniform(5, 100)), (paid * Decimal("0.2")).quantize(CENT))
        return [ProviderAdjustment("IR", None, amount)] if amount > 0 else []

    def _advice(
        self,
        payer: PayerInfo,
        hospital: Hospital,
        effective: date,
        production: date,
        *,
        method: str = "ACH",
        trace: str | None = None,
        claims: list[ClaimPayment] | None = None,
        plb: bool = True,
        min_amount: Decimal = CENT,
        unique: bool = True,
    ) -> RemittanceAdvice:
        """A balanced remittance whose amount is positive and unique for the payer."""
        rng = self.rng
        while True:
            if claims is None:
                n_claims = _CLAIMS_PER_ERA.pick(rng)
                these = [
                    self._claim(payer, self._shift(effective, -rng.randrange(5, 40)))
                    for _ in range(n_claims)
                ]
            else:
                these = claims
            adjustments = self._plb(payer, these) if plb else []
            total = sum((c.paid for c in these), ZERO) - sum((a.amount for a in adjustments), ZERO)
            if total <= 0 and adjustments:
                adjustments = []
                total = sum((c.paid for c in these), ZERO)
            key = (payer.id, cents(total))
            if total >= min_amount and (not unique or key not in self.used_amounts):
                break
            if claims is not None:  # fixed content: add a claim to move the amount
                claims = [*claims, self._claim(payer, effective)]
        self.used_amounts.add(key)
        account = hospital.operating_account
        return RemittanceAdvice(
            control_number="",
            handling_code="I",
            amount=total,
            method=method,
            effective_date=effective,
            trace_number=trace or (self._check_number() if method == "CHK" else self._trace(payer)),
            payer_trn03=payer.trn03,
            production_date=production,
            payer_name=payer.name,
            payer_address=payer.address,
            payer_phone=payer.phone,
            payee_name=hospital.name,
            payee_npi=rng.choice(hospital.npis),
            payee_tin=hospital.tin,
            payer_dfi_routing=payer.dfi_routing if method == "ACH" else "",
            payer_dfi_account=payer.dfi_account if method == "ACH" else "",
            payee_dfi_routing=account.bank.routing if method == "ACH" else "",
            payee_dfi_account=account.number if method == "ACH" else "",
            payer_ref_2u=f"{rng.randrange(10**4, 10**5)}" if rng.random() < 0.3 else None,
            receiver_ref_ev=self.net.health_system_id if rng.random() < 0.2 else None,
            claims=these,
            provider_adjustments=adjustments,
            amount_style=payer.amount_style,
        )

    def _unique_amount(self, payer: PayerInfo, amount: Decimal) -> bool:
        key = (payer.id, cents(amount))
        if key in self.used_amounts:
            return False
        self.used_amounts.add(key)
        return True

    def _remit(
        self, advice: RemittanceAdvice, payer: PayerInfo, hospital: Hospital, case: Case
    ) -> None:
        item = PlannedRemittance(advice, payer, hospital, self._expect(case))
        case.remittances.append(item)
        self.remittances.append(item)

    def _bank_reference(self, bank: Bank, as_of: date) -> str:
        n = self.bank_refs.get(bank.code, 0) + 1
        self.bank_refs[bank.code] = n
        if bank.reference_style == 0:
            return f"{as_of:%y%m%d}{n:06d}"
        if bank.reference_style == 1:
            return f"FT{as_of:%y%j}{n:07d}"
        return f"{bank.routing[:3]}{as_of:%y%m%d}{n:07d}"

    def _funds(self, amount: Decimal) -> tuple[str, tuple[Decimal, Decimal, Decimal] | None]:
        rng = self.rng
        kind = _FUNDS_TYPES.pick(rng)
        if kind != "S":
            return kind, None
        now = (amount * Decimal(str(round(rng.uniform(0.5, 0.9), 2)))).quantize(CENT)
        return "S", (now, amount - now, ZERO)

    def _ach_text(
        self, payer: PayerInfo, trace: str | None, hospital: Hospital, as_of: date
    ) -> tuple[str, list[str]]:
        """The 16 text and 88 continuations a bank prints for a CCD+ claim payment."""
        rng = self.rng
        head = f"{payer.company_name:<16} HCCLAIMPMT CCD"
        if payer.company_id_in_text:
            head += f" ID:{payer.trn03}"
        if trace is None:
            return head, []
        trn = f"TRN*1*{trace}*{payer.trn03}\\"
        style = _ADDENDA_STYLES.pick(rng)
        if style == "plain":
            return head, [trn]
        if style == "labelled":
            return head, [f"ADDENDA: {trn}"]
        if style == "split":
            cut = rng.randrange(7, len(trn) - 2)  # inside the trace or the payer id
            return head, [trn[:cut], trn[cut:]]
        if style == "extra":
            # Commas and slashes in text are data, not record ends: "PMT 06/02/25, REF 1/A".
            ref = f"{rng.randrange(10**6)}/A{rng.randrange(10)}"
            return head, [f"REMITTANCE {trn} PMT {as_of:%m/%d/%y}, REF {ref}"]
        if style == "inline":
            return f"{head} {trn}", []
        kv = (
            f"ORIG CO NAME:{payer.company_name} ORIG ID:{payer.trn03} DESC DATE:{as_of:%y%m%d} "
            f"CO ENTRY DESCR:HCCLAIMPMT SEC:CCD"
        )
        return kv, [f"IND ID:{hospital.tin} IND NAME:{hospital.name[:22]}", trn]

    def _deposit(
        self,
        case: Case,
        payer: PayerInfo,
        hospital: Hospital,
        as_of: date,
        amount: Decimal,
        trace: str | None,
        *,
        scenario: str | None = None,
        garbled: bool = False,
    ) -> PlannedDeposit:
        account = hospital.operating_account
        text, cont = self._ach_text(payer, trace, hospital, as_of)
        if garbled and cont:  # one record, one dead letter: keep the addenda on the 16
            text, cont = f"{text} {''.join(cont)}", []
        funds, availability = self._funds(amount)
        txn = BaiTransaction(
            type_code=payer.ach_type_code,
            amount=amount,
            funds_type=funds,
            availability=availability,
            bank_reference=self._bank_reference(account.bank, as_of),
            text=text,
            continuations=cont,
            garbled=garbled,
        )
        item = PlannedDeposit(txn, account, hospital, as_of, self._expect(case, scenario))
        case.deposits.append(item)
        self.deposits.append(item)
        return item

    # --- slot scenarios ---------------------------------------------------------------------

    def _matched(
        self, di: int, payer: PayerInfo, hospital: Hospital, scenario: str, rule: str
    ) -> None:
        eff, prod, dep = self._dates(di)
        case = self._case(hospital.id, "matched", rule, scenario)
        if scenario != "reversal":
            advice = self._advice(payer, hospital, eff, prod)
        else:
            earlier = self._shift(eff, -self.rng.randrange(20, 60))
            original = self._claim(payer, earlier)
            while original.paid <= 0:
                original = self._claim(payer, earlier)
            corrected = replace(
                self._claim(payer, earlier),
                patient_control_number=original.patient_control_number,
            )
            others = [self._claim(payer, eff) for _ in range(self.rng.randrange(0, 4))]
            claims = [self._reversal_of(original), corrected, *others]
            while sum((c.paid for c in claims), ZERO) <= 0:
                claims.append(self._claim(payer, eff))
            advice = self._advice(payer, hospital, eff, prod, claims=claims)
        self._remit(advice, payer, hospital, case)
        trace = advice.trace_number
        if scenario == "trace_normalized":
            trace = _renormalized(trace, self.rng)
        self._deposit(case, payer, hospital, dep, advice.amount, trace)

    def _slot_clean(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        self._matched(di, payer, hospital, "clean", "trace_exact")

    def _slot_reversal(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        self._matched(di, payer, hospital, "reversal", "trace_exact")

    def _slot_trace_normalized(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        self._matched(di, payer, hospital, "trace_normalized", "trace_normalized")

    def _slot_no_addenda(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        eff, prod, dep = self._dates(di)
        case = self._case(hospital.id, "matched", "payer_amount_date", "no_addenda")
        advice = self._advice(payer, hospital, eff, prod)
        self._remit(advice, payer, hospital, case)
        self._deposit(case, payer, hospital, dep, advice.amount, None)

    def _slot_vendor_fee(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        eff, prod, dep = self._dates(di)
        case = self._case(hospital.id, "variance", "fee", "vendor_fee")
        advice = self._advice(payer, hospital, eff, prod, min_amount=Decimal("100.00"))
        while True:
            if rng.random() < 0.5:
                fee = (advice.amount * Decimal(str(rng.uniform(0.01, 0.03)))).quantize(CENT)
            else:
                fee = rng.choice(FEE_FIXED)
            fee = max(CENT, min(fee, (advice.amount * FEE_MAX_RATE).quantize(CENT)))
            if self._unique_amount(payer, advice.amount - fee):
                break
        self._remit(advice, payer, hospital, case)
        self._deposit(case, payer, hospital, dep, advice.amount - fee, advice.trace_number)

    def _slot_amount_mismatch(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        eff, prod, dep = self._dates(di)
        case = self._case(hospital.id, "variance", "amount_mismatch", "amount_mismatch")
        advice = self._advice(payer, hospital, eff, prod, min_amount=Decimal("600.00"))
        while True:
            rate = Decimal(str(round(rng.uniform(0.12, 0.45), 3)))
            diff = max(MISMATCH_MIN_AMOUNT, (advice.amount * rate).quantize(CENT))
            bank_amount = advice.amount - diff if rng.random() < 0.7 else advice.amount + diff
            if bank_amount > 0 and self._unique_amount(payer, bank_amount):
                break
        self._remit(advice, payer, hospital, case)
        self._deposit(case, payer, hospital, dep, bank_amount, advice.trace_number)

    def _slot_consolidated(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        eff, _, dep = self._dates(di)
        case = self._case(hospital.id, "matched", "consolidated", "consolidated")
        trace = self._trace(payer)
        total = ZERO
        for _ in range(rng.choice((2, 2, 3, 4))):
            # Released over a few days, each within 3 business days of the deposit.
            prod = self._day(max(di - rng.randrange(0, 3), self.days.index(dep) - 3))
            advice = self._advice(payer, hospital, eff, prod, trace=trace)
            self._remit(advice, payer, hospital, case)
            total += advice.amount
        self._unique_amount(payer, total)
        self._deposit(case, payer, hospital, dep, total, trace)

    def _slot_split_deposit(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        eff, prod, dep = self._dates(di)
        case = self._case(hospital.id, "matched", "consolidated", "split_deposit")
        advice = self._advice(payer, hospital, eff, prod, min_amount=Decimal("200.00"))
        self._remit(advice, payer, hospital, case)
        while True:
            first = (advice.amount * Decimal(str(round(rng.uniform(0.3, 0.7), 2)))).quantize(CENT)
            second = advice.amount - first
            key1, key2 = (payer.id, cents(first)), (payer.id, cents(second))
            if key1 != key2 and key1 not in self.used_amounts and key2 not in self.used_amounts:
                self.used_amounts.update((key1, key2))
                break
        dep2 = self.days[min(self.last, di + 3, self.days.index(dep) + rng.choice((0, 0, 1)))]
        self._deposit(case, payer, hospital, dep, first, advice.trace_number)
        self._deposit(case, payer, hospital, dep2, second, advice.trace_number)

    def _slot_zero_pay(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        eff = self.days[di]
        case = self._case(hospital.id, "matched", "non_payment", "zero_pay")
        service = self._shift(eff, -rng.randrange(5, 40))
        claims = [self._claim(payer, service, denied=True) for _ in range(rng.choice((1, 1, 2, 3)))]
        advice = self._advice(
            payer, hospital, eff, eff, claims=claims, plb=False, min_amount=ZERO, unique=False
        )
        advice.handling_code = "H"
        advice.method = "NON"
        advice.payer_dfi_routing = advice.payer_dfi_account = ""
        advice.payee_dfi_routing = advice.payee_dfi_account = ""
        self._remit(advice, payer, hospital, case)

    def _slot_era_without_deposit(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        di, rule = self._unmatched_day(di)
        case = self._case(hospital.id, "unmatched", rule, "era_without_deposit")
        eff = self.days[di]
        self._remit(self._advice(payer, hospital, eff, eff), payer, hospital, case)

    def _slot_deposit_without_era(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        di, rule = self._unmatched_day(di)
        case = self._case(hospital.id, "unmatched", rule, "deposit_without_era")
        amount = _money(self.rng.lognormvariate(7, 1.2))
        while not self._unique_amount(payer, amount):
            amount += CENT
        trace = self._trace(payer) if self.rng.random() < 0.8 else None
        self._deposit(case, payer, hospital, self.days[di], amount, trace)

    def _slot_ambiguous(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        """Two ERAs and two trace-less deposits, same payer, amount and day: never guess."""
        di, _ = self._unmatched_day(di)
        day = self.days[di]
        case = self._case(hospital.id, "unmatched", "ambiguous", "ambiguous")
        first = self._advice(payer, hospital, day, day, plb=False)
        twin_claims = [
            replace(
                c,
                patient_control_number=f"SYN{self._next_seq():09d}",
                payer_claim_control_number=f"{self.rng.randrange(10**13, 10**14)}",
                patient_last=self.rng.choice(_FAKE_LAST),
            )
            for c in first.claims
        ]
        second = self._advice(
            payer, hospital, day, day, claims=twin_claims, plb=False, unique=False
        )
        for advice in (first, second):
            self._remit(advice, payer, hospital, case)
        for _ in range(2):
            self._deposit(case, payer, hospital, day, first.amount, None)

    def _slot_lockbox_check(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        check_date = self.days[di]
        dep_index = min(self.last, di + rng.choice((1, 2, 2, 3)))  # mail and lockbox float
        dep = self.days[dep_index]
        prod = self._day(max(di - rng.choice((0, 0, 1)), dep_index - 3))
        case = self._case(hospital.id, "matched", "check_number", "lockbox_check")
        advice = self._advice(payer, hospital, check_date, prod, method="CHK")
        self._remit(advice, payer, hospital, case)
        account = hospital.lockbox_account
        funds, availability = self._funds(advice.amount)
        lockbox = f"{int(account.number[-5:]):05d}"
        txn = BaiTransaction(
            type_code="115",
            amount=advice.amount,
            funds_type=funds,
            availability=availability,
            bank_reference=self._bank_reference(account.bank, dep),
            customer_reference=advice.trace_number,
            text=f"LOCKBOX {lockbox} DEPOSIT CHECK {advice.trace_number}",
        )
        item = PlannedDeposit(txn, account, hospital, dep, self._expect(case))
        case.deposits.append(item)
        self.deposits.append(item)

    def _slot_unbalanced_835(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        rng = self.rng
        eff, prod, dep = self._dates(di)
        case = self._case(hospital.id, "variance", "remit_unbalanced", "unbalanced_835")
        advice = self._advice(payer, hospital, eff, prod, min_amount=Decimal("100.00"))
        while True:
            delta = _money(rng.uniform(0.01, 50)) * rng.choice((1, -1))
            if self._unique_amount(payer, advice.amount + delta):
                break
        advice.amount += delta  # BPR02 no longer equals Σ CLP04 − Σ PLB: flagged, not fixed
        bump = _money(rng.uniform(0.01, 5))
        if rng.random() < 0.5 and bump != delta:
            advice.claims[0].paid += bump  # and a claim that does not add up either
        self._remit(advice, payer, hospital, case)
        self._deposit(case, payer, hospital, dep, advice.amount, advice.trace_number)

    def _slot_corrupt_835(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        case = self._case(hospital.id, "dead_letter", "parse", "corrupt_835")
        eff, prod, _ = self._dates(di)
        advice = self._advice(payer, hospital, eff, prod)
        advice.garble = self.rng.choice(("bpr", "clp"))
        self._remit(advice, payer, hospital, case)

    def _slot_corrupt_bai2(self, di: int, payer: PayerInfo, hospital: Hospital) -> None:
        case = self._case(hospital.id, "dead_letter", "parse", "corrupt_bai2")
        amount = _money(self.rng.lognormvariate(7, 1.0))
        while not self._unique_amount(payer, amount):
            amount += CENT
        self._deposit(
            case, payer, hospital, self.days[di], amount, self._trace(payer), garbled=True
        )

    # --- bank lines that are not claim payments ---------------------------------------------

    def _non_payer_lines(self) -> None:
        rng = self.rng
        kinds = (
            ("475", "CHECK PAID", 30),
            ("575", "ZBA TRANSFER DEBIT TO CONCENTRATION", 15),
            ("275", "ZBA TRANSFER CREDIT FROM CONCENTRATION", 10),
            ("698", "ACCOUNT ANALYSIS FEE", 8),
            ("699", "LOCKBOX SERVICE CHARGE", 5),
            ("451", "ACH DEBIT PAYROLL FUNDING", 12),
            ("354", "INTEREST CREDIT", 5),
            ("301", "COMMERCIAL DEPOSIT GIFT SHOP", 4),
            ("195", "WIRE IN", 5),
        )
        codes = [k[0] for k in kinds]
        weights = [k[2] for k in kinds]
        text_of = {k[0]: k[1] for k in kinds}
        for di, day in enumerate(self.days):
            for hospital, account in self.net.bank_accounts():
                for _ in range(_poisson(rng, 0.8)):
                    code = rng.choices(codes, weights)[0]
                    text = text_of[code]
                    customer = ""
                    if code == "475":
                        customer = str(rng.randrange(10**5, 10**6))
                        amount = _money(rng.lognormvariate(7.5, 1.1))
                    elif code in ("575", "275"):
                        amount = _money(rng.lognormvariate(11, 0.8))
                    elif code in ("698", "699"):
                        amount = _money(rng.uniform(25, 900))
                    elif code in ("354", "301"):
                        amount = _money(rng.uniform(1, 400))
                    elif code == "195":
                        if END_OF_INPUT_MAX_AGE < self.last - di < NO_COUNTERPART_MIN_AGE:
                            continue  # would be judged differently depending on event time
                        text = f"WIRE IN FROM {rng.choice(_NON_PAYERS)} REF {rng.randrange(10**6)}"
                        amount = _money(rng.lognormvariate(9, 1.0))
                    else:
                        amount = _money(rng.lognormvariate(10, 0.5))
                    _, category = classify(code, extract(text))
                    if category in PAYER_CASH_CATEGORIES:
                        rule = (
                            "no_counterpart"
                            if self.last - di >= NO_COUNTERPART_MIN_AGE
                            else "end_of_input"
                        )
                        case = self._case(hospital.id, "unmatched", rule, "non_payer_wire")
                    else:
                        case = self._case(
                            hospital.id, "not_payer_cash", category, "non_payer_bank_line"
                        )
                    txn = BaiTransaction(
                        type_code=code,
                        amount=amount,
                        funds_type=rng.choice(("", "0", "Z")),
                        bank_reference=self._bank_reference(account.bank, day),
                        customer_reference=customer,
                        text=text if rng.random() < 0.9 else "",
                    )
                    item = PlannedDeposit(txn, account, hospital, day, self._expect(case))
                    case.deposits.append(item)
                    self.deposits.append(item)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: small means only (per-slot counts)."""
    if lam <= 0:
        return 0
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _renormalized(trace: str, rng: random.Random) -> str:
    """The same trace as a bank might print it: other leading zeros or other letter case."""
    if any(c.isalpha() for c in trace):
        return trace.lower()
    if trace.startswith("0"):
        return trace.lstrip("0")
    return "0" * rng.choice((1, 2, 3)) + trace


# --- files ----------------------------------------------------------------------------------


def _plan_remittance_files(planner: _Planner, rng: random.Random) -> list[RemittanceFile]:
    net = planner.net
    by_key: dict[tuple[date, str], list[PlannedRemittance]] = {}
    payer_index = {p.id: i for i, p in enumerate(net.payers)}
    for item in planner.remittances:
        by_key.setdefault((item.advice.production_date, item.payer.id), []).append(item)
    keys = sorted(by_key, key=lambda k: (k[0], payer_index[k[1]]))
    names = _LAYOUT_TABLE.values
    files: list[RemittanceFile] = []
    for day, payer_id in keys:
        items = by_key[(day, payer_id)]
        rng.shuffle(items)
        name = f"remittances/{day:%Y%m%d}_{payer_id}.835"
        layout = _LAYOUT_TABLE.pick(rng)
        files.append(RemittanceFile(name, layout, items[0].payer, day, items))
    # Every layout at least once, on files that show it off (several payees, several sets).
    present = {f.layout for f in files}
    candidates = [
        i
        for i, f in enumerate(files)
        if f.layout == "standard" and len({r.hospital.id for r in f.items}) > 1
    ]
    rng.shuffle(candidates)
    for layout, i in zip([n for n in names if n not in present], candidates, strict=False):
        files[i].layout = layout
    control = rng.randrange(10**5, 10**6)
    for f in files:
        for n, item in enumerate(f.items, start=1):
            item.advice.control_number = f"{n:04d}"
            item.file = f.name
        control = _interchanges(f, net, control, rng)
    # Re-sent files: the same transaction sets under a new name, envelope and date.
    resendable = [f for f in files if f.created < planner.days[-1]]
    n_resend = max(1, round(len(files) * RESEND_835_RATE)) if resendable else 0
    copies: list[RemittanceFile] = []
    for original in rng.sample(resendable, min(n_resend, len(resendable))):
        day = add_business_days(original.created, rng.choice((1, 1, 2)))
        day = min(day, planner.days[-1])
        name = f"remittances/{day:%Y%m%d}_{original.payer.id}_resend-{original.created:%Y%m%d}.835"
        copy = RemittanceFile(
            name,
            original.layout,
            original.payer,
            day,
            [_duplicate_remittance(item, name) for item in original.items],
            resend_of=original.name,
        )
        control = _interchanges(copy, net, control, rng)
        copies.append(copy)
    return sorted([*files, *copies], key=lambda f: f.name)


def _duplicate_remittance(item: PlannedRemittance, file: str) -> PlannedRemittance:
    e = item.expect
    if e.outcome == "dead_letter":
        expect = replace(e, scenario="resent_835")
    else:
        expect = replace(e, scenario="resent_835", outcome="duplicate", rule="duplicate")
    return PlannedRemittance(item.advice, item.payer, item.hospital, expect, file)


def _interchanges(f: RemittanceFile, net: Network, control: int, rng: random.Random) -> int:
    groups: list[list[PlannedRemittance]]
    if LAYOUTS[f.layout].interchange_per_payee:
        by_hospital: dict[str, list[PlannedRemittance]] = {}
        for item in f.items:
            by_hospital.setdefault(item.hospital.id, []).append(item)
        groups = list(by_hospital.values())
    else:
        groups = [f.items]
    created_time = f"{rng.randrange(0, 24):02d}{rng.randrange(0, 60):02d}"
    f.interchanges = []
    for group in groups:
        control += 1
        receiver = net.health_system_id if len(groups) == 1 else group[0].hospital.tin
        f.interchanges.append(
            Interchange(
                sender_id=f.payer.ein,
                receiver_id=receiver,
                created=f.created,
                created_time=created_time,
                control_number=control,
                group_control_number=control % 10**6,
                transactions=[item.advice for item in group],
            )
        )
    return control


def _plan_bank_files(planner: _Planner, rng: random.Random) -> list[BankFile]:
    net = planner.net
    by_account_day: dict[tuple[str, date], list[PlannedDeposit]] = {}
    for item in planner.deposits:
        by_account_day.setdefault((item.account.number, item.as_of), []).append(item)
    balances = {a.number: _money(rng.uniform(2e5, 2e7)) for _, a in net.bank_accounts()}
    files: list[BankFile] = []
    file_id = 0
    for day in planner.days:
        for bank in net.banks:
            groups: list[BaiGroup] = []
            items: list[PlannedDeposit] = []
            name = f"bank/{day:%Y%m%d}_{bank.code.lower()}.bai2"
            for hospital in net.hospitals:
                accounts: list[BaiAccount] = []
                for account in hospital.accounts:
                    if account.bank.code != bank.code:
                        continue
                    day_items = sorted(
                        by_account_day.get((account.number, day), []),
                        key=lambda d: (d.txn.type_code, d.txn.bank_reference),
                    )
                    for d in day_items:
                        d.file = name
                    items += day_items
                    acct = BaiAccount(
                        account.number, balances[account.number], [d.txn for d in day_items]
                    )
                    balances[account.number] = acct.closing_ledger
                    accounts.append(acct)
                if accounts:
                    groups.append(BaiGroup(hospital.id, bank.routing, day, accounts))
            if not groups:
                continue
            file_id += 1
            created = add_business_days(day, 1)
            report = BaiFile(
                sender=bank.routing,
                receiver=bank.customer_id,
                created=created,
                created_time=f"{rng.randrange(5, 8):02d}{rng.randrange(60):02d}",
                file_id=file_id,
                groups=groups,
                line_end="\r\n" if bank.crlf else "\n",
            )
            files.append(BankFile(name, bank, day, report, items))
    # A previous day reported again (the bank's "corrected" resend): every line a duplicate.
    n = max(1, round(len(files) * REREPORT_BAI2_RATE)) if files else 0
    copies: list[BankFile] = []
    for original in rng.sample(files, min(n, len(files))):
        file_id += 1
        name = original.name.replace(".bai2", "_rereport.bai2")
        report = replace(
            original.report,
            created=add_business_days(original.report.created, 1),
            created_time=f"{rng.randrange(9, 17):02d}{rng.randrange(60):02d}",
            file_id=file_id,
        )
        items = [_duplicate_deposit(d, name) for d in original.items]
        copies.append(BankFile(name, original.bank, original.as_of, report, items, original.name))
    return sorted([*files, *copies], key=lambda f: f.name)


def _duplicate_deposit(item: PlannedDeposit, file: str) -> PlannedDeposit:
    e = item.expect
    if e.outcome == "dead_letter":
        expect = replace(e, scenario="rereported_bai2_day")
    else:
        expect = replace(e, scenario="rereported_bai2_day", outcome="duplicate", rule="duplicate")
    return PlannedDeposit(item.txn, item.account, item.hospital, item.as_of, expect, file)


DEFAULT_ERAS_PER_PAYER_DAY = 1.75

# --- ERP confirmations ------------------------------------------------------------------------

POSTED_CASE_RULES = (
    "trace_exact",
    "trace_normalized",
    "consolidated",
    "check_number",
    "payer_amount_date",
)
_ERP_ZONE = timezone(timedelta(hours=-5), "ERP")
_REJECTIONS = (
    "accounting period closed",
    "GL account inactive",
    "cost center required for this entity",
    "journal date outside open period",
)


@dataclass(slots=True)
class PlannedPosting:
    posting_id: str
    idempotency_key: str
    status: str
    amount: Decimal
    posted_at: datetime
    reason: str | None
    expect: Expect

    def record(self) -> dict[str, str | None]:
        """The JSON line an ERP sends back."""
        return {
            "posting_id": self.posting_id,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "amount": f"{self.amount:.2f}",
            "posted_at": self.posted_at.isoformat(),
            "reason": self.reason,
            "entity": self.expect.entity,
        }


def plan_postings(
    plan: Plan, event_ids: dict[tuple[str, str], str], seed: int
) -> list[PlannedPosting]:
    """ERP confirmations for most matched cases, keyed like the engine keys its journals.

    ``event_ids`` maps (file, natural key) to the id the parser gave the item: the idempotency
    key is :func:`remitflow.identity.idempotency_key` over the case's entity and those ids, the
    function the dataflow uses, so keys agree. Some postings are rejected, one case is posted
    twice (a duplicate journal), and a couple of confirmations name no case at all (orphans).
    """
    rng = random.Random(f"remitflow-postings:{seed}")
    postings: list[PlannedPosting] = []
    seq = 0

    def posting(
        case_expect: Expect,
        key: str,
        status: str,
        amount: Decimal,
        when: datetime,
        reason: str | None,
    ) -> PlannedPosting:
        nonlocal seq
        seq += 1
        p = PlannedPosting(
            f"JE-{when:%Y%m%d}-{seq:06d}", key, status, amount, when, reason, case_expect
        )
        postings.append(p)
        return p

    def posted_time(day: date) -> datetime:
        d = add_business_days(day, rng.choice((1, 1, 2)))
        return datetime(
            d.year,
            d.month,
            d.day,
            rng.randrange(8, 19),
            rng.randrange(60),
            rng.randrange(60),
            tzinfo=_ERP_ZONE,
        )

    posted: list[PlannedPosting] = []
    for case in plan.cases:
        if case.outcome != "matched" or case.rule not in POSTED_CASE_RULES:
            continue
        ids = [event_ids.get((r.file, r.key)) for r in case.remittances]
        ids += [event_ids.get((d.file, d.key)) for d in case.deposits]
        if not all(ids):
            continue
        key = idempotency_key(case.entity, [i for i in ids if i])
        draw = rng.random()
        if draw < 0.05:
            reason = rng.choice(_REJECTIONS)
            expect = Expect("erp_rejected", "posting_rejected", case.rule, case.id, case.entity)
            posting(expect, key, "rejected", case.cash, posted_time(case.last_date), reason)
        elif draw < 0.93:
            expect = Expect("erp_posted", "posted", case.rule, case.id, case.entity)
            posted.append(
                posting(expect, key, "posted", case.cash, posted_time(case.last_date), None)
            )
    if posted:
        first = rng.choice(posted)
        expect = replace(first.expect, scenario="erp_duplicate", outcome="duplicate_posting")
        later = first.posted_at + timedelta(hours=rng.randrange(1, 48))
        posting(expect, first.idempotency_key, "posted", first.amount, later, None)
    hospitals = plan.network.hospitals
    for n in range(rng.choice((1, 2))):
        hospital = rng.choice(hospitals)
        key = idempotency_key(
            hospital.id, [content_id("rem", ["no such remittance", str(seed), str(n)])]
        )
        expect = Expect("erp_orphan", "orphan_posting", None, f"ORPHAN-{n + 1}", hospital.id)
        amount = _money(rng.lognormvariate(7, 1))
        posting(expect, key, "posted", amount, posted_time(rng.choice(plan.days)), None)
    postings.sort(key=lambda p: (p.posted_at, p.posting_id))
    return postings


def plan_dataset(
    network: Network,
    start: date,
    days: int,
    seed: int,
    eras_per_payer_day: float = DEFAULT_ERAS_PER_PAYER_DAY,
) -> Plan:
    """Everything the dataset will hold, with the intended outcome of each item."""
    if days < 1:
        raise ValueError("days must be at least 1")
    period = business_days(start, days)
    rng = random.Random(
        f"remitflow-scenarios:{seed}:{len(network.hospitals)}:{len(network.payers)}:{days}:"
        f"{eras_per_payer_day!r}:{start.isoformat()}"
    )
    planner = _Planner(network, period, eras_per_payer_day, rng)
    planner.build()
    remittance_files = _plan_remittance_files(planner, rng)
    bank_files = _plan_bank_files(planner, rng)
    return Plan(network, period, planner.cases, remittance_files, bank_files)
