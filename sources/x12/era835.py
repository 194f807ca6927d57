"""X12 835 (health care claim payment/advice) → canonical remittance events, one per ST..SE.

Written by hand: linuxforhealth-x12 is pydantic-v1 only and rejects most files it did not
write, edi-835-parser crashes on about half of real files and drops BPR/TRN/PLB, and pyx12 is a
validator at a few thousand segments per second. This module reads only what reconciliation
needs, tolerates what real payers send, and reports (never fixes) what does not add up:

- balancing at service (SVC02 − ΣCAS = SVC03), claim (CLP03 − ΣCAS = CLP04) and transaction
  level (BPR02 = ΣCLP04 − ΣPLB) becomes a :class:`ParseIssue` with the difference;
- patient names and member ids (NM1*QC/IL/74) are never read; CLP01 is kept only as an HMAC;
- an unreadable segment becomes a dead letter and the set goes on; a set whose payment
  (BPR/TRN) or claim amounts cannot be read becomes one dead letter with its original bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import BinaryIO

from remitflow.events import (
    Adjustment,
    Claim,
    Envelope,
    ProviderAdjustment,
    Remittance,
    Source,
    midnight_utc,
)
from remitflow.identity import content_id, normalize_trace
from remitflow.records import DeadLetter, ParseIssue
from sources.base import ParseContext, Parsed
from sources.x12.tokenizer import X12Tokenizer

SYSTEM = "x12-835"
_ZERO = Decimal(0)
_ENVELOPE = frozenset({"ISA", "GS", "GE", "IEA", "TA1"})
_PHI_SEGMENTS = frozenset({"NM1"})  # NM1 in the claim loop names patients, insureds, providers


class _Unreadable(Exception):
    """A segment whose content is not what its position requires (internal control flow)."""


def _amount(els: list[str], i: int, what: str) -> Decimal:
    try:
        text = els[i]
    except IndexError:
        raise _Unreadable(f"{what} is missing") from None
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _Unreadable(f"{what} is not a number") from None
    if not d.is_finite():
        raise _Unreadable(f"{what} is not a finite number")
    return d


def _opt_amount(els: list[str], i: int, what: str) -> Decimal | None:
    if i >= len(els) or not els[i].strip():
        return None
    return _amount(els, i, what)


def _el(els: list[str], i: int) -> str:
    return els[i].strip() if i < len(els) else ""


def _date8(text: str) -> date | None:
    """CCYYMMDD → date; None when empty or not a real date."""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _date6(text: str) -> date | None:
    """ISA09 YYMMDD."""
    if len(text) != 6 or not text.isdigit():
        return None
    return _date8(("20" if int(text[:2]) < 70 else "19") + text)


def _valid_tag(tag: str) -> bool:
    return 2 <= len(tag) <= 3 and tag.isalnum() and tag.isupper() and tag[0].isalpha()


class _ClaimBuilder:
    __slots__ = (
        "adjustments",
        "charge",
        "index",
        "paid",
        "patient_responsibility",
        "payer_ccn",
        "ref",
        "services",
        "status",
        "svc_adjusted",
        "svc_charge",
        "svc_open",
        "svc_paid",
        "svc_unbalanced",
    )

    def __init__(self, index: int, ref: str, status: str, charge: Decimal, paid: Decimal) -> None:
        self.index = index
        self.ref = ref
        self.status = status
        self.charge = charge
        self.paid = paid
        self.patient_responsibility: Decimal | None = None
        self.payer_ccn: str | None = None
        self.adjustments: dict[tuple[str, str], Decimal] = {}
        self.services = 0
        self.svc_open = False
        self.svc_charge = _ZERO
        self.svc_paid = _ZERO
        self.svc_adjusted = _ZERO
        self.svc_unbalanced: list[tuple[int, Decimal]] = []

    def close_service(self) -> None:
        if self.svc_open:
            diff = self.svc_charge - self.svc_adjusted - self.svc_paid
            if diff:
                self.svc_unbalanced.append((self.services, diff))
            self.svc_open = False

    def build(self) -> Claim:
        self.close_service()
        total_adj = sum(self.adjustments.values(), _ZERO)
        diff = self.charge - total_adj - self.paid
        return Claim.model_construct(
            claim_ref=self.ref,
            status=self.status,
            charge=self.charge,
            paid=self.paid,
            patient_responsibility=self.patient_responsibility,
            payer_claim_control_number=self.payer_ccn,
            adjustments=[
                Adjustment.model_construct(group=g, reason=r, amount=a)
                for (g, r), a in self.adjustments.items()
            ],
            service_lines=self.services,
            balanced=diff == 0,
            balance_difference=diff,
        )


class _SetBuilder:
    """Everything read between one ST and its SE."""

    def __init__(self, control: str, offset: int, set_id: str) -> None:
        self.control = control
        self.offset = offset
        self.set_id = set_id
        self.segments: list[str] = []
        self.fatal: str | None = None
        self.bpr: list[str] | None = None
        self.amount = _ZERO
        self.trn: list[str] | None = None
        self.production_date: date | None = None
        self.payer_name: str | None = None
        self.payer_identifiers: list[str] = []
        self.payee_name: str | None = None
        self.payee_npi: str | None = None
        self.payee_tin: str | None = None
        self.loop = ""  # "PR", "PE" or "CLP": where REF/N1 detail belongs
        self.claims: list[Claim] = []
        self.claim: _ClaimBuilder | None = None
        self.plb: list[ProviderAdjustment] = []
        self.pending: list[Parsed] = []  # segment dead letters and issues, emitted with the set

    def close_claim(self, source: Source) -> None:
        c = self.claim
        if c is None:
            return
        claim = c.build()
        for line, diff in c.svc_unbalanced:
            self.pending.append(
                ParseIssue.of(
                    "unbalanced_service",
                    f"claim {c.index} service line {line}: charge − adjustments − paid = {diff}",
                    source,
                    difference=diff,
                )
            )
        if not claim.balanced:
            self.pending.append(
                ParseIssue.of(
                    "unbalanced_claim",
                    f"claim {c.index} (status {c.status}): charge − adjustments − paid = "
                    f"{claim.balance_difference}",
                    source,
                    difference=claim.balance_difference,
                )
            )
        self.claims.append(claim)
        self.claim = None


class Era835Parser:
    """One file's worth of parsing state; use :func:`parse`."""

    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self.isa_control: str | None = None
        self.isa_date: date | None = None
        self.gs_control: str | None = None
        self.gs_date: date | None = None
        self.version: str | None = None
        self.gs_sets = 0
        self.isa_groups = 0
        self.term = "~"
        self.elem = "*"

    def _source(self, record: str | None, offset: int | None) -> Source:
        return Source.model_construct(
            system=SYSTEM, file=self.ctx.file, record=record, offset=offset
        )

    def _dead(self, reason: str, record: str | None, offset: int, payload: str) -> DeadLetter:
        return DeadLetter.of("parse", reason, self._source(record, offset), payload)

    def run(self, stream: BinaryIO) -> Iterator[Parsed]:
        tok = X12Tokenizer(stream)
        txn: _SetBuilder | None = None
        for offset, seg in tok:
            delims = tok.delimiters
            assert delims is not None
            elem = delims.element
            self.term = delims.segment
            self.elem = elem
            els = seg.split(elem)
            tag = els[0].strip()
            if txn is not None:
                if tag == "SE":
                    txn.segments.append(seg)
                    yield from self._finish(txn, els, offset)
                    txn = None
                    continue
                if tag == "ST":
                    yield self._dead(
                        "transaction set not closed by SE before the next ST",
                        f"ST {txn.control}",
                        txn.offset,
                        self.term.join(txn.segments),
                    )
                    txn = None
                elif tag in _ENVELOPE:
                    yield self._dead(
                        f"transaction set not closed by SE before {tag}",
                        f"ST {txn.control}",
                        txn.offset,
                        self.term.join(txn.segments),
                    )
                    txn = None
                else:
                    txn.segments.append(seg)
                    if txn.fatal is None and txn.set_id == "835":
                        try:
                            self._segment(txn, tag, els, delims.component, offset, seg)
                        except _Unreadable as exc:
                            self._unreadable(txn, tag, str(exc), offset, seg)
                    continue
            # Outside a transaction set.
            if tag == "ST":
                txn = _SetBuilder(_el(els, 2), offset, _el(els, 1))
                txn.segments.append(seg)
                self.gs_sets += 1
            elif tag == "ISA":
                self.isa_control = _el(els, 13) or None
                self.isa_date = _date6(_el(els, 9))
                self.isa_groups = 0
            elif tag == "GS":
                self.gs_control = _el(els, 6) or None
                self.gs_date = _date8(_el(els, 4))
                self.version = _el(els, 8) or None
                self.gs_sets = 0
                self.isa_groups += 1
            elif tag == "GE":
                yield from self._count_check("GE", els, self.gs_sets, self.gs_control, offset)
            elif tag == "IEA":
                yield from self._count_check("IEA", els, self.isa_groups, self.isa_control, offset)
            elif tag == "TA1":
                pass
            else:
                yield self._dead(
                    "segment outside a transaction set (ST..SE)"
                    if _valid_tag(tag)
                    else "not an X12 segment",
                    "line",
                    offset,
                    seg,
                )
        if txn is not None:
            yield self._dead(
                "transaction set not closed by SE: file truncated?",
                f"ST {txn.control}",
                txn.offset,
                self.term.join(txn.segments),
            )
        if tok.error is not None:
            yield self._dead(tok.error, None, 0, tok.head)

    def _count_check(
        self, tag: str, els: list[str], counted: int, control: str | None, offset: int
    ) -> Iterator[ParseIssue]:
        src = self._source(tag, offset)
        declared = _el(els, 1)
        if declared.isdigit() and int(declared) != counted:
            what = "transaction sets" if tag == "GE" else "functional groups"
            yield ParseIssue.of(
                "record_count_mismatch", f"{tag}01 says {declared} {what}, found {counted}", src
            )
        if control is not None and _el(els, 2) and _el(els, 2).lstrip("0") != control.lstrip("0"):
            yield ParseIssue.of(
                "envelope_mismatch", f"{tag}02 control number does not match its header", src
            )

    def _unreadable(self, txn: _SetBuilder, tag: str, why: str, offset: int, seg: str) -> None:
        """A segment that cannot be read: fatal for the set if it carries its money or key."""
        if tag in ("BPR", "TRN", "CLP"):
            txn.fatal = f"{tag}: {why}"
        else:
            txn.pending.append(
                self._dead(f"{tag} segment unreadable: {why}", f"ST {txn.control}", offset, seg)
            )

    def _segment(
        self, txn: _SetBuilder, tag: str, els: list[str], comp: str, offset: int, seg: str
    ) -> None:
        claim = txn.claim
        if tag == "CAS":
            # Up to six (reason, amount, quantity) triplets after the group code.
            group = _el(els, 1)
            n = len(els)
            for i in range(2, min(n, 20), 3):
                reason = els[i].strip()
                if not reason and (i + 1 >= n or not els[i + 1].strip()):
                    continue
                amt = _amount(els, i + 1, f"CAS{i + 1:02d} amount")
                if claim is not None:
                    key = (group, reason)
                    claim.adjustments[key] = claim.adjustments.get(key, _ZERO) + amt
                    if claim.svc_open:
                        claim.svc_adjusted += amt
            return
        if tag == "SVC":
            if claim is None:
                raise _Unreadable("service line outside a claim")
            charge = _amount(els, 2, "SVC02 charge")
            paid = _amount(els, 3, "SVC03 paid")
            claim.close_service()
            claim.services += 1
            claim.svc_open = True
            claim.svc_charge = charge
            claim.svc_paid = paid
            claim.svc_adjusted = _ZERO
            return
        if tag == "CLP":
            txn.close_claim(self._source(f"ST {txn.control}", offset))
            pcn = _el(els, 1)
            txn.claim = c = _ClaimBuilder(
                len(txn.claims) + 1,
                self.ctx.phi(pcn),
                _el(els, 2),
                _amount(els, 3, "CLP03 charge"),
                _amount(els, 4, "CLP04 paid"),
            )
            c.patient_responsibility = _opt_amount(els, 5, "CLP05 patient responsibility")
            c.payer_ccn = _el(els, 7) or None
            txn.loop = "CLP"
            return
        if tag in _PHI_SEGMENTS or tag in ("DTM", "AMT", "QTY", "LQ", "MOA", "MIA", "LX"):
            if tag == "DTM" and _el(els, 1) == "405":
                txn.production_date = self._date(txn, _el(els, 2), "DTM*405 production", offset)
            return
        if tag == "REF":
            qual = _el(els, 1)
            if txn.loop == "PR" and qual in ("2U", "EO", "HI", "NF"):
                if _el(els, 2):
                    txn.payer_identifiers.append(_el(els, 2))
            elif txn.loop == "PE" and qual == "TJ" and not txn.payee_tin:
                txn.payee_tin = _el(els, 2) or None
            return
        if tag == "N1":
            qual = _el(els, 1)
            txn.loop = qual
            if qual == "PR":
                txn.payer_name = _el(els, 2) or None
                if _el(els, 4):
                    txn.payer_identifiers.append(_el(els, 4))
            elif qual == "PE":
                txn.payee_name = _el(els, 2) or None
                id_qual, ident = _el(els, 3), _el(els, 4)
                if id_qual == "XX":
                    txn.payee_npi = ident or None
                elif id_qual == "FI":
                    txn.payee_tin = ident or None
            return
        if tag == "BPR":
            txn.amount = _amount(els, 2, "BPR02 payment amount")
            txn.bpr = els
            return
        if tag == "TRN":
            if not _el(els, 2):
                raise _Unreadable("TRN02 trace number is empty")
            txn.trn = els
            return
        if tag == "PLB":
            provider = _el(els, 1) or None
            fiscal = _date8(_el(els, 2))
            for i in range(3, min(len(els), 15), 2):
                composite = els[i].strip()
                if not composite:
                    continue
                amt = _amount(els, i + 1, f"PLB{i + 1:02d} amount")
                reason, _, reference = composite.partition(comp)
                txn.plb.append(
                    ProviderAdjustment.model_construct(
                        provider_id=provider,
                        fiscal_period_date=fiscal,
                        reason=reason,
                        reference=reference or None,
                        amount=amt,
                    )
                )
            return
        if not _valid_tag(tag):
            txn.pending.append(self._dead("not an X12 segment", f"ST {txn.control}", offset, seg))

    def _date(self, txn: _SetBuilder, text: str, what: str, offset: int) -> date | None:
        d = _date8(text)
        if d is None and text:
            txn.pending.append(
                ParseIssue.of(
                    "invalid_date",
                    f"{what} date {text[:8]!r} is not a valid CCYYMMDD date",
                    self._source(f"ST {txn.control}", offset),
                )
            )
        return d

    def _finish(self, txn: _SetBuilder, se: list[str], offset: int) -> Iterator[Parsed]:
        record = f"ST {txn.control}"
        src = self._source(record, txn.offset)
        payload = self.term.join(txn.segments)
        if txn.set_id != "835":
            yield self._dead(
                f"transaction set {txn.set_id[:3]!r} is not an 835", record, txn.offset, payload
            )
            return
        if txn.fatal is None and txn.bpr is None:
            txn.fatal = "BPR (payment) segment missing"
        if txn.fatal is None and txn.trn is None:
            txn.fatal = "TRN (trace) segment missing"
        if txn.fatal is not None:
            yield from txn.pending
            yield self._dead(f"835 unusable: {txn.fatal}", record, txn.offset, payload)
            return
        txn.close_claim(src)
        bpr = txn.bpr
        trn = txn.trn
        assert bpr is not None and trn is not None
        issues = txn.pending
        effective = self._date(txn, _el(bpr, 16), "BPR16 effective", txn.offset)
        when = effective or txn.production_date or self.gs_date or self.isa_date
        if when is None:
            yield from issues
            yield self._dead(
                "835 unusable: no valid payment or production date", record, txn.offset, payload
            )
            return
        paid = sum((c.paid for c in txn.claims), _ZERO)
        plb_total = sum((p.amount for p in txn.plb), _ZERO)
        diff = txn.amount - (paid - plb_total)
        # Identity from content: BPR..(before SE) with separators normalised, so a re-sent
        # file under another name, envelope or control number keeps its ids.
        body = txn.segments[1:-1]
        if self.elem != "*":
            body = [s.replace(self.elem, "*") for s in body]
        event_id = content_id("rem", body)
        se_count = _el(se, 1)
        if se_count.isdigit() and int(se_count) != len(txn.segments):
            issues.append(
                ParseIssue.of(
                    "record_count_mismatch",
                    f"SE01 says {se_count} segments, found {len(txn.segments)}",
                    src,
                    event_id=event_id,
                )
            )
        if _el(se, 2) and _el(se, 2) != txn.control:
            issues.append(
                ParseIssue.of(
                    "envelope_mismatch", "SE02 does not match ST02", src, event_id=event_id
                )
            )
        if diff:
            issues.append(
                ParseIssue.of(
                    "unbalanced_transaction",
                    f"BPR02 {txn.amount} ≠ Σ CLP04 {paid} − Σ PLB {plb_total} (difference {diff})",
                    src,
                    event_id=event_id,
                    difference=diff,
                )
            )
        trace = _el(trn, 2)
        payer_id = _el(trn, 3) or None
        entity = self.ctx.refdata.entity_for_payee(txn.payee_npi, txn.payee_tin)
        event = Remittance.model_construct(
            event_id=event_id,
            schema_version=1,
            entity=entity,
            occurred_at=midnight_utc(when),
            source=src,
            kind="remittance",
            handling_code=_el(bpr, 1),
            amount=txn.amount,
            credit_debit=_el(bpr, 3) or None,
            method=_el(bpr, 4) or None,
            payment_format=_el(bpr, 5) or None,
            effective_date=effective,
            production_date=txn.production_date,
            trace_type=_el(trn, 1) or None,
            trace_number=trace,
            trace_normalized=normalize_trace(trace),
            payer_id=payer_id,
            payer_supplemental_id=_el(trn, 4) or None,
            payer_name=txn.payer_name,
            payer_identifiers=txn.payer_identifiers,
            payee_name=txn.payee_name,
            payee_npi=txn.payee_npi,
            payee_tin=txn.payee_tin,
            claims=txn.claims,
            provider_adjustments=txn.plb,
            balanced=diff == 0,
            balance_difference=diff,
            envelope=Envelope.model_construct(
                interchange_control_number=self.isa_control,
                group_control_number=self.gs_control,
                transaction_control_number=txn.control,
                version=self.version,
            ),
        )
        for item in issues:
            if isinstance(item, ParseIssue) and item.event_id is None:
                yield item.model_copy(update={"event_id": event_id})
            else:
                yield item
        yield event


def parse(stream: BinaryIO, ctx: ParseContext) -> Iterator[Parsed]:
    """Canonical remittances, dead letters and parse issues of one 835 file."""
    return Era835Parser(ctx).run(stream)


def parse_bytes(data: bytes, ctx: ParseContext) -> Iterator[Parsed]:
    return parse(io.BytesIO(data), ctx)
