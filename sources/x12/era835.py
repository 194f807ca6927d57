"""X12 835 (health care claim payment/advice) → canonical remittance events, one per ST..SE.

Written by hand: linuxforhealth-x12 is pydantic-v1 only and rejects most files it did not
write, edi-835-parser crashes on about half of real files and drops BPR/TRN/PLB, and pyx12 is a
validator at a few thousand segments per second. This module reads only what reconciliation
needs, tolerates what real payers send, and reports (never fixes) what does not add up:

- balancing at service (SVC02 − ΣCAS = SVC03), claim (CLP03 − ΣCAS = CLP04) and transaction
  level (BPR02 = ΣCLP04 − ΣPLB) becomes a :class:`ParseIssue` with the difference;
- patient names and member ids (NM1 in the claim loop) are never read; CLP01 is kept only as
  an HMAC;
- an unreadable segment becomes a dead letter and the set goes on; a set whose payment
  (BPR/TRN) or claim amounts cannot be read becomes one dead letter with its original bytes.

Speed: segments are handled a chunk at a time, each split once and dispatched through a dict;
each set is built as plain dicts validated once by pydantic-core (about twice as fast as
constructing nested models in Python, and it checks every field).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO

from pydantic import ValidationError

from remitflow.events import Remittance, Source, midnight_utc
from remitflow.identity import content_id, normalize_trace
from remitflow.money import AmountError, parse_money
from remitflow.records import DeadLetter, ParseIssue
from sources.base import ParseContext, Parsed
from sources.x12.tokenizer import X12Tokenizer

SYSTEM = "x12-835"
_ZERO = Decimal(0)
_validate_remittance = Remittance.__pydantic_validator__.validate_python
# Segments of an 835 that reconciliation does not read: recognised by one set lookup.
_KNOWN_TAGS = frozenset(
    {"NM1", "AMT", "QTY", "LQ", "MOA", "MIA", "LX", "TS3", "TS2", "N2", "N3", "N4", "PER"}
    | {"RDM", "CUR", "K3"}
)
_ENVELOPE_TAGS = frozenset({"ISA", "IEA", "GS", "GE", "TA1"})


# What a message or a record reference may quote from the file. Anything else is not quoted:
# in a damaged file a shifted segment can put a patient control number (CLP01) where a count,
# a status or a control number belongs, and reasons and references must never carry PHI.
_ST_CONTROL = re.compile(r"\d{4,9}")  # ST02: AN 4/9, numeric in practice
_CLAIM_STATUS = frozenset(
    {
        "1",
        "2",
        "3",
        "4",
        "5",
        "10",
        "13",
        "15",
        "16",
        "17",
        "19",
        "20",
        "21",
        "22",
        "23",
        "25",
        "27",
    }
)


def _control(value: str, ordinal: int) -> str:
    """ST02 when it looks like one, else the set's position in the group (``#n``)."""
    return value if _ST_CONTROL.fullmatch(value) else f"#{ordinal}"


_CODE = re.compile(r"[A-Z0-9]{1,3}")


def _status(value: str) -> str:
    return value if value in _CLAIM_STATUS else "not a CLP02 code"


def _code(value: str) -> str:
    """A short X12 code element as read, or empty when it is not one: a shifted element can
    carry anything there, a patient control number included, and events keep codes as is."""
    return value if _CODE.fullmatch(value) else ""


def _set_id(value: str) -> str:
    return repr(value) if len(value) == 3 and value.isascii() and value.isdigit() else "(ST01)"


class _Unreadable(Exception):
    """A segment whose content is not what its position requires (internal control flow)."""


def _amount(els: list[str], i: int, what: str) -> Decimal:
    try:
        return parse_money(els[i])
    except IndexError:
        raise _Unreadable(f"{what} is missing") from None
    except AmountError as exc:
        raise _Unreadable(f"{what}: {exc}") from None


def _opt_amount(els: list[str], i: int, what: str) -> Decimal | None:
    if i >= len(els) or not els[i].strip():
        return None
    return _amount(els, i, what)


def _el(els: list[str], i: int) -> str:
    return els[i].strip() if i < len(els) else ""


def _date8(text: str) -> date | None:
    """CCYYMMDD → date; None when empty or not a real date."""
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _date6(text: str) -> date | None:
    """ISA09 YYMMDD."""
    if len(text) != 6 or not (text.isascii() and text.isdigit()):
        return None
    return _date8(("20" if int(text[:2]) < 70 else "19") + text)


def _is_segment(seg: str, elem: str) -> bool:
    i = seg.find(elem)
    tag = seg if i < 0 else seg[:i]
    return 2 <= len(tag) <= 3 and tag.isalnum() and tag.isupper() and tag[0].isalpha()


class _Claim:
    """CLP loop being read."""

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

    def as_dict(self) -> dict[str, Any]:
        self.close_service()
        diff = self.charge - sum(self.adjustments.values(), _ZERO) - self.paid
        return {
            "claim_ref": self.ref,
            "status": self.status,
            "charge": self.charge,
            "paid": self.paid,
            "patient_responsibility": self.patient_responsibility,
            "payer_claim_control_number": self.payer_ccn,
            "adjustments": [
                {"group": g, "reason": r, "amount": a} for (g, r), a in self.adjustments.items()
            ],
            "service_lines": self.services,
            "balanced": not diff,
            "balance_difference": diff,
        }


class _Set:
    """Everything read between one ST and its SE."""

    __slots__ = (
        "amount",
        "bpr",
        "claim",
        "claims",
        "control",
        "fatal",
        "loop",
        "offset",
        "payee_name",
        "payee_npi",
        "payee_tin",
        "payer_identifiers",
        "payer_name",
        "pending",
        "plb",
        "production_date",
        "segments",
        "set_id",
        "trn",
    )

    def __init__(self, control: str, offset: int, set_id: str, st: str) -> None:
        self.control = control
        self.offset = offset
        self.set_id = set_id
        self.segments: list[str] = [st]
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
        self.claims: list[dict[str, Any]] = []
        self.claim: _Claim | None = None
        self.plb: list[dict[str, Any]] = []
        self.pending: list[Parsed] = []  # segment dead letters and issues, emitted with the set


Handler = Callable[[_Set, list[str], str, int, str], None]


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
        self.comp = ":"
        # Segments reconciliation reads; every other segment is only kept (for identity and
        # dead letters).
        self._handlers: dict[str, Handler] = {
            "CAS": self._cas,
            "SVC": self._svc,
            "CLP": self._clp,
            "REF": self._ref,
            "DTM": self._dtm,
            "N1": self._n1,
            "BPR": self._bpr,
            "TRN": self._trn,
            "PLB": self._plb,
        }

    # -- plumbing ------------------------------------------------------------------------------

    def _source(self, record: str | None, offset: int | None) -> Source:
        return Source.model_construct(
            system=SYSTEM, file=self.ctx.file, record=record, offset=offset
        )

    def _dead(self, reason: str, record: str | None, offset: int, payload: str) -> DeadLetter:
        return DeadLetter.of("parse", reason, self._source(record, offset), payload)

    def _issue(self, txn: _Set, code: Any, message: str, diff: Decimal | None = None) -> None:
        txn.pending.append(
            ParseIssue.of(
                code, message, self._source(f"ST {txn.control}", txn.offset), difference=diff
            )
        )

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stream: BinaryIO) -> Iterator[Parsed]:
        tok = X12Tokenizer(stream)
        txn: _Set | None = None
        handlers = self._handlers
        for base, parts, delims in tok.batches():
            elem = self.elem = delims.element
            self.comp = delims.component
            term = self.term = delims.segment
            tlen = len(term)
            pos = base
            for raw in parts:
                offset = pos
                pos += len(raw) + tlen
                seg = raw.strip()
                if not seg:
                    continue
                if raw[0] <= " ":
                    offset += raw.find(seg[0])
                els = seg.split(elem)
                tag = els[0]
                if txn is not None:
                    txn.segments.append(seg)
                    handler = handlers.get(tag)
                    if handler is not None:
                        if txn.fatal is None:
                            try:
                                handler(txn, els, tag, offset, seg)
                            except _Unreadable as exc:
                                self._unreadable(txn, tag, str(exc), offset, seg)
                    elif tag in _KNOWN_TAGS:
                        pass
                    elif tag == "SE":
                        yield from self._finish(txn, els)
                        txn = None
                    elif tag == "ST" or tag in _ENVELOPE_TAGS:
                        txn.segments.pop()
                        yield self._dead(
                            f"transaction set not closed by SE before {tag}",
                            f"ST {txn.control}",
                            txn.offset,
                            term.join(txn.segments),
                        )
                        txn = None
                        if tag == "ST":
                            txn = self._open(els, offset, seg)
                        else:
                            yield from self._envelope(els, offset, seg)
                    elif not _is_segment(seg, elem):
                        txn.segments.pop()
                        txn.pending.append(
                            self._dead("not an X12 segment", f"ST {txn.control}", offset, seg)
                        )
                elif tag == "ST":
                    txn = self._open(els, offset, seg)
                else:
                    yield from self._envelope(els, offset, seg)
        if txn is not None:
            yield self._dead(
                "transaction set not closed by SE: file truncated?",
                f"ST {txn.control}",
                txn.offset,
                self.term.join(txn.segments),
            )
        if tok.error is not None:
            yield self._dead(tok.error, None, 0, tok.head)

    def _open(self, els: list[str], offset: int, seg: str) -> _Set:
        self.gs_sets += 1
        return _Set(_control(_el(els, 2), self.gs_sets), offset, _el(els, 1), seg)

    def _envelope(self, els: list[str], offset: int, seg: str) -> Iterator[Parsed]:
        tag = els[0].strip()
        if tag == "ISA":
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
        elif tag != "TA1":
            reason = (
                "segment outside a transaction set (ST..SE)"
                if _is_segment(seg, self.elem)
                else "not an X12 segment"
            )
            yield self._dead(reason, "line", offset, seg)

    def _count_check(
        self, tag: str, els: list[str], counted: int, control: str | None, offset: int
    ) -> Iterator[ParseIssue]:
        src = self._source(tag, offset)
        declared = _el(els, 1)
        if declared.isascii() and declared.isdigit() and int(declared) != counted:
            what = "transaction sets" if tag == "GE" else "functional groups"
            yield ParseIssue.of(
                "record_count_mismatch", f"{tag}01 does not match the {counted} {what} found", src
            )
        if control is not None and _el(els, 2) and _el(els, 2).lstrip("0") != control.lstrip("0"):
            yield ParseIssue.of(
                "envelope_mismatch", f"{tag}02 control number does not match its header", src
            )

    def _unreadable(self, txn: _Set, tag: str, why: str, offset: int, seg: str) -> None:
        """A segment that cannot be read: fatal for the set if it carries its money or key."""
        if tag in ("BPR", "TRN", "CLP"):
            txn.fatal = f"{tag}: {why}"
        else:
            txn.pending.append(
                self._dead(f"{tag} segment unreadable: {why}", f"ST {txn.control}", offset, seg)
            )

    # -- segments ------------------------------------------------------------------------------

    def _cas(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        claim = txn.claim
        group = els[1].strip() if len(els) > 1 else ""
        n = len(els)
        # Up to six (reason, amount, quantity) triplets after the group code.
        for i in range(2, min(n, 20), 3):
            reason = els[i].strip()
            if not reason and (i + 1 >= n or not els[i + 1].strip()):
                continue
            amt = _amount(els, i + 1, f"CAS{i + 1:02d} amount")
            if claim is not None:
                key = (group, reason)
                adjustments = claim.adjustments
                adjustments[key] = adjustments.get(key, _ZERO) + amt
                if claim.svc_open:
                    claim.svc_adjusted += amt

    def _svc(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        claim = txn.claim
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

    def _clp(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        self._close_claim(txn)
        claim = _Claim(
            len(txn.claims) + 1,
            self.ctx.phi(_el(els, 1)),
            _el(els, 2) if _el(els, 2) in _CLAIM_STATUS else "",
            _amount(els, 3, "CLP03 charge"),
            _amount(els, 4, "CLP04 paid"),
        )
        claim.patient_responsibility = _opt_amount(els, 5, "CLP05 patient responsibility")
        claim.payer_ccn = _el(els, 7) or None
        txn.claim = claim
        txn.loop = "CLP"

    def _close_claim(self, txn: _Set) -> None:
        c = txn.claim
        if c is None:
            return
        claim = c.as_dict()
        for line, diff in c.svc_unbalanced:
            self._issue(
                txn,
                "unbalanced_service",
                f"claim {c.index} service line {line}: charge − adjustments − paid = {diff}",
                diff,
            )
        if not claim["balanced"]:
            diff = claim["balance_difference"]
            self._issue(
                txn,
                "unbalanced_claim",
                f"claim {c.index} (status {_status(c.status)}): "
                f"charge − adjustments − paid = {diff}",
                diff,
            )
        txn.claims.append(claim)
        txn.claim = None

    def _dtm(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        if len(els) > 2 and els[1] == "405":
            txn.production_date = self._date(txn, els[2].strip(), "DTM*405 production")

    def _ref(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        loop = txn.loop
        if loop == "CLP" or len(els) < 3:
            return
        qual, value = els[1].strip(), els[2].strip()
        if loop == "PR" and qual in ("2U", "EO", "HI", "NF") and value:
            txn.payer_identifiers.append(value)
        elif loop == "PE" and qual == "TJ" and not txn.payee_tin:
            txn.payee_tin = value or None

    def _n1(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
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

    def _bpr(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        if txn.bpr is not None:
            return  # one BPR per 835 (as TRN): the first counts, a later one is misplaced
        txn.amount = _amount(els, 2, "BPR02 payment amount")
        txn.bpr = els

    def _trn(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        if txn.trn is not None:
            return  # one TRN per 835; a second one would be a payer error, the first counts
        if not _el(els, 2):
            raise _Unreadable("TRN02 trace number is empty")
        txn.trn = els

    def _plb(self, txn: _Set, els: list[str], tag: str, offset: int, seg: str) -> None:
        provider = _el(els, 1) or None
        fiscal = _date8(_el(els, 2))
        comp = self.comp
        for i in range(3, min(len(els), 15), 2):
            composite = els[i].strip()
            if not composite:
                continue
            amt = _amount(els, i + 1, f"PLB{i + 1:02d} amount")
            reason, _, reference = composite.partition(comp)
            txn.plb.append(
                {
                    "provider_id": provider,
                    "fiscal_period_date": fiscal,
                    "reason": reason,
                    "reference": reference or None,
                    "amount": amt,
                }
            )

    def _date(self, txn: _Set, text: str, what: str) -> date | None:
        d = _date8(text)
        if d is None and text:
            self._issue(txn, "invalid_date", f"{what} date is not a valid CCYYMMDD date")
        return d

    # -- end of a set --------------------------------------------------------------------------

    def _finish(self, txn: _Set, se: list[str]) -> Iterator[Parsed]:
        record = f"ST {txn.control}"
        payload = self.term.join(txn.segments)
        if txn.set_id != "835":
            yield self._dead(
                f"transaction set {_set_id(txn.set_id)} is not an 835",
                record,
                txn.offset,
                payload,
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
        self._close_claim(txn)
        bpr, trn = txn.bpr, txn.trn
        assert bpr is not None and trn is not None
        effective = self._date(txn, _el(bpr, 16), "BPR16 effective")
        when = effective or txn.production_date or self.gs_date or self.isa_date
        if when is None:
            yield from txn.pending
            yield self._dead(
                "835 unusable: no valid payment or production date", record, txn.offset, payload
            )
            return
        paid = sum((c["paid"] for c in txn.claims), _ZERO)
        plb_total = sum((p["amount"] for p in txn.plb), _ZERO)
        diff = txn.amount - (paid - plb_total)
        se_count = _el(se, 1)
        if se_count.isascii() and se_count.isdigit() and int(se_count) != len(txn.segments):
            self._issue(
                txn,
                "record_count_mismatch",
                f"SE01 does not match the {len(txn.segments)} segments found",
            )
        if _el(se, 2) and _el(se, 2) != txn.control:
            self._issue(txn, "envelope_mismatch", "SE02 does not match ST02")
        if diff:
            self._issue(
                txn,
                "unbalanced_transaction",
                f"BPR02 {txn.amount} ≠ Σ CLP04 {paid} − Σ PLB {plb_total} (difference {diff})",
                diff,
            )
        # Identity from content: BPR..(before SE) with the element separator normalised, so a
        # re-sent file under another name, envelope or control number keeps its ids.
        body = "\x1e".join(txn.segments[1:-1])
        if self.elem != "*":
            body = body.replace(self.elem, "*")
        event_id = content_id("rem", (body,))
        trace = _el(trn, 2)
        try:
            event = _validate_remittance(
                {
                    "event_id": event_id,
                    "schema_version": 1,
                    "entity": self.ctx.refdata.entity_for_payee(txn.payee_npi, txn.payee_tin)
                    or self.ctx.refdata.entity_for_account(_el(bpr, 15)),
                    "occurred_at": midnight_utc(when),
                    "source": self._source(record, txn.offset),
                    "kind": "remittance",
                    "handling_code": _code(_el(bpr, 1)),
                    "amount": txn.amount,
                    "credit_debit": _code(_el(bpr, 3)) or None,
                    "method": _code(_el(bpr, 4)) or None,
                    "payment_format": _code(_el(bpr, 5)) or None,
                    "effective_date": effective,
                    "production_date": txn.production_date,
                    "trace_type": _code(_el(trn, 1)) or None,
                    "trace_number": trace,
                    "trace_normalized": normalize_trace(trace),
                    "payer_id": _el(trn, 3) or None,
                    "payer_supplemental_id": _el(trn, 4) or None,
                    "payer_name": txn.payer_name,
                    "payer_identifiers": txn.payer_identifiers,
                    "payee_name": txn.payee_name,
                    "payee_npi": txn.payee_npi,
                    "payee_tin": txn.payee_tin,
                    "claims": txn.claims,
                    "provider_adjustments": txn.plb,
                    "balanced": not diff,
                    "balance_difference": diff,
                    "envelope": {
                        "interchange_control_number": self.isa_control,
                        "group_control_number": self.gs_control,
                        "transaction_control_number": txn.control,
                        "version": self.version,
                    },
                }
            )
        except ValidationError as exc:  # pragma: no cover - the parser builds valid fields
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            yield from txn.pending
            yield self._dead(f"835 unusable: {where}: {first['type']}", record, txn.offset, payload)
            return
        for item in txn.pending:
            if isinstance(item, ParseIssue):
                yield item.model_copy(update={"event_id": event_id})
            else:
                yield item
        yield event


def parse(stream: BinaryIO, ctx: ParseContext) -> Iterator[Parsed]:
    """Canonical remittances, dead letters and parse issues of one 835 file."""
    return Era835Parser(ctx).run(stream)


def parse_bytes(data: bytes, ctx: ParseContext) -> Iterator[Parsed]:
    return parse(io.BytesIO(data), ctx)
