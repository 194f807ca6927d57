"""ISO 20022 camt.053 (bank-to-customer statement) → canonical bank transactions.

One event per ``Ntry``, or one per ``NtryDtls/TxDtls`` when an entry batches several
transactions that each carry their own amount. What the matcher needs from an entry is the same
as from a BAI2 16 record, so the facts (TRN trace, payer, company) come from
:mod:`sources.bank` and the type code is a BAI2 code: the one US banks put in
``BkTxCd/Prtry/Cd``, else one mapped from the ISO domain/family/subfamily (:data:`ISO_TO_BAI`).

Why it is built this way:

- **Any version** (camt.053.001.02 … .14, or no namespace at all): elements are matched on
  their local names, the namespace URI is ignored. Unknown elements are skipped.
- **Safe**: the XML comes from outside, so it is read with ``defusedxml`` and a DOCTYPE is
  refused outright (camt.053 never has one): no entity expansion, no external fetch. A refusal
  is a dead letter for the file.
- **Streaming**: the bytes are fed to an expat parser in chunks; only the statement header
  (``Stmt`` without its entries) and the entry being read are held as elements, each ``Ntry``
  is dropped once its events are out. The parser's byte index gives each entry its byte offset
  and its original bytes, so a malformed entry becomes a dead letter whose payload is exactly
  what the bank sent, and the rest of the statement goes on. ``defusedxml.iterparse`` would
  hold the whole tree unless elements are cleared by hand, and gives no byte positions.
- **Direction** comes from ``CdtDbtInd`` (authoritative), never from the type-code range.
  ``RvslInd=true`` and return information (``RtrInf``) make the category ``return``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from remitflow.events import (
    SCHEMA_VERSION,
    BankTransaction,
    Category,
    Direction,
    Source,
    midnight_utc,
)
from remitflow.money import AmountError, parse_money
from remitflow.records import DeadLetter, ParseIssue
from sources.bank import TextFacts, bank_transaction_id, classify, extract
from sources.base import ParseContext, Parsed

SYSTEM = "camt053"
CHUNK_SIZE = 1 << 16

_DIRECTIONS: dict[str, Direction] = {"CRDT": "credit", "DBIT": "debit"}
_FALLBACK_CODE: dict[Direction, str] = {"credit": "399", "debit": "699"}  # misc credit/debit
_NOT_PROVIDED = "NOTPROVIDED"
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# xs:date or xs:dateTime, optional zone: the date as the bank wrote it is the business date.
_ISO_DATE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)

# ISO bank transaction code (domain, family, subfamily; "*" = any) → BAI2 code for a credit and
# for a debit. Deliberately small: it only has to separate what the matcher treats differently
# (ACH, wires, checks, lockbox, ZBA, returns, fees); anything else falls back to 399/699.
# Lookup order: exact triple, then any family with that subfamily, then the family.
ISO_TO_BAI: dict[tuple[str, str, str], tuple[str, str]] = {
    ("PMNT", "RCDT", "ACDT"): ("142", "451"),  # ACH credit received
    ("PMNT", "RCDT", "*"): ("195", "495"),  # received credit transfer (ESCT, DMCT, XBCT…): wire
    ("PMNT", "RRCT", "*"): ("195", "495"),  # received real-time credit transfer (RTP, FedNow)
    ("PMNT", "ICDT", "*"): ("399", "495"),  # issued credit transfer: money out
    ("PMNT", "IRCT", "*"): ("399", "495"),  # issued real-time credit transfer
    ("PMNT", "IDDT", "*"): ("142", "451"),  # direct debit we collected: an ACH credit to us
    ("PMNT", "RDDT", "*"): ("142", "451"),  # direct debit received: an ACH debit
    ("PMNT", "RCHQ", "*"): ("175", "555"),  # cheques deposited (debit: deposited item returned)
    ("PMNT", "ICHQ", "*"): ("395", "475"),  # cheques issued: check paid
    ("PMNT", "LBOX", "*"): ("115", "415"),  # lockbox
    ("CAMT", "ACCB", "*"): ("275", "575"),  # account balancing: ZBA, sweeps, topping
    ("*", "*", "RRTN"): ("257", "557"),  # reversal due to payment return
    ("*", "*", "ARET"): ("257", "557"),  # ACH return
    ("*", "*", "AREV"): ("258", "558"),  # ACH reversal
    ("*", "*", "UPDD"): ("257", "557"),  # unpaid direct debit
    ("*", "*", "URCQ"): ("255", "555"),  # unpaid cheque
    ("*", "*", "FEES"): ("398", "698"),  # fees
    ("*", "*", "CHRG"): ("398", "698"),  # charges
    ("*", "*", "COMM"): ("398", "698"),  # commission
    ("*", "*", "INTR"): ("354", "654"),  # interest
}


class _BadEntry(Exception):
    """An entry that cannot become an event (internal control flow; the message is the reason)."""


# --- small element helpers (tags are local names: the namespace was dropped when building) ---


def _text(elem: Element | None, path: str) -> str | None:
    if elem is None:
        return None
    found = elem.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _first_text(elem: Element | None, *paths: str) -> str | None:
    for path in paths:
        value = _text(elem, path)
        if value is not None:
            return value
    return None


def _parse_date(text: str, what: str) -> date:
    m = _ISO_DATE.fullmatch(text)
    if not m:
        raise _BadEntry(f"{what} is not an ISO date")
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        raise _BadEntry(f"{what} is not a valid date") from None


def _date_of(elem: Element, name: str) -> date | None:
    """``BookgDt``/``ValDt``: absent → None; present but unreadable → the entry is bad."""
    holder = elem.find(name)
    if holder is None:
        return None
    text = _first_text(holder, "Dt", "DtTm")
    if text is None:
        raise _BadEntry(f"{name} has neither Dt nor DtTm")
    return _parse_date(text, name)


def _amount(text: str | None, what: str) -> Decimal:
    if text is None:
        raise _BadEntry(f"{what} is missing")
    if not _AMOUNT.fullmatch(text):
        raise _BadEntry(f"{what} is not an unsigned decimal amount")
    try:
        return parse_money(text)
    except AmountError as exc:
        raise _BadEntry(f"{what}: {exc}") from None


def _lenient_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return _parse_date(text, "date")
    except _BadEntry:
        return None


# --- statement and entry structure -------------------------------------------------------------


@dataclass(slots=True)
class _Statement:
    """What every entry of one ``Stmt`` shares, read when its first entry starts."""

    stmt_id: str
    account: str | None
    currency: str | None
    fallback_date: date | None
    seen: dict[str, int] = field(default_factory=dict)  # unreferenced transactions, for ordinals

    @classmethod
    def read(cls, stmt: Element, number: int) -> _Statement:
        return cls(
            stmt_id=_text(stmt, "Id") or f"stmt{number}",
            account=_first_text(stmt, "Acct/Id/IBAN", "Acct/Id/Othr/Id"),
            currency=_text(stmt, "Acct/Ccy"),
            fallback_date=_lenient_date(_text(stmt, "FrToDt/ToDtTm"))
            or _lenient_date(_text(stmt, "CreDtTm")),
        )


@dataclass(slots=True)
class _RawEntry:
    statement: _Statement
    index: int
    element: Element
    start: int  # byte offset of "<Ntry"
    end_event: int  # expat's byte index at the end event


class _StatementBuilder:
    """expat target: builds ``Stmt`` headers and ``Ntry`` subtrees, nothing else.

    Tags are stored by local name, which is what makes the parser namespace-agnostic. Finished
    entries are queued in :attr:`ready` with their byte span for the caller to turn into events
    between two ``feed`` calls.
    """

    def __init__(self) -> None:
        self.expat: Any = None
        self.ready: list[_RawEntry] = []
        self.found_statement_list = False
        self.root: str | None = None
        self._path: list[str] = []
        self._stack: list[Element] = []
        self._data: list[str] = []
        self._last: Element | None = None
        self._last_closed = False
        self._statement: _Statement | None = None
        self._statements = 0
        self._entries = 0
        self._entry_start = 0

    def _flush(self) -> None:
        if self._data and self._last is not None:
            text = "".join(self._data)
            if self._last_closed:
                self._last.tail = text
            else:
                self._last.text = text
        self._data.clear()

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._flush()
        local = tag.rpartition("}")[2]
        if self.root is None:
            self.root = local
        parent = self._path[-1] if self._path else None
        self._path.append(local)
        if self._stack:
            elem = Element(local, attrib)
            if local == "Ntry" and len(self._stack) == 1:
                self._entries += 1
                self._entry_start = self.expat.CurrentByteIndex
                if self._statement is None:
                    self._statement = _Statement.read(self._stack[0], self._statements)
            else:
                self._stack[-1].append(elem)
        elif local == "Stmt" and parent == "BkToCstmrStmt":
            elem = Element(local, attrib)
            self._statements += 1
            self._entries = 0
            self._statement = None
        else:
            if local == "BkToCstmrStmt":
                self.found_statement_list = True
            self._last = None
            return
        self._stack.append(elem)
        self._last, self._last_closed = elem, False

    def end(self, tag: str) -> None:
        self._flush()
        self._path.pop()
        if not self._stack:
            self._last = None
            return
        elem = self._stack.pop()
        self._last, self._last_closed = elem, True
        if elem.tag == "Ntry" and len(self._stack) == 1 and self._statement is not None:
            self.ready.append(
                _RawEntry(
                    self._statement,
                    self._entries,
                    elem,
                    self._entry_start,
                    self.expat.CurrentByteIndex,
                )
            )

    def data(self, text: str) -> None:
        if self._stack:
            self._data.append(text)

    def close(self) -> None:
        return None


def _entry_bytes(buf: bytearray, base: int, entry: _RawEntry) -> bytes:
    """The entry's original bytes, from ``<Ntry`` to the end of ``</Ntry>`` (or ``<Ntry/>``)."""
    start = entry.start - base
    start_tag_end = buf.find(b">", start) + 1
    if start_tag_end > 0 and buf[start_tag_end - 2 : start_tag_end] == b"/>":
        end = start_tag_end  # empty element: expat reports its end after the tag
    else:
        close = buf.find(b">", entry.end_event - base)
        end = close + 1 if close >= 0 else len(buf)
    return bytes(buf[max(start, 0) : end])


# --- one entry → events ---------------------------------------------------------------------


def _type_code(btc: Element | None, direction: Direction) -> str:
    """BAI2 code of an entry: the bank's own 3-digit code, else the ISO code mapped, else misc."""
    if btc is not None:
        proprietary = _text(btc, "Prtry/Cd")
        if (
            proprietary
            and len(proprietary) == 3
            and proprietary.isascii()
            and proprietary.isdigit()
        ):
            return proprietary
        domain = _text(btc, "Domn/Cd") or ""
        family = _text(btc, "Domn/Fmly/Cd") or ""
        # The schema says SubFmlyCd; some generators write SubFmly/Cd.
        sub = _first_text(btc, "Domn/Fmly/SubFmlyCd", "Domn/Fmly/SubFmly/Cd") or ""
        for key in ((domain, family, sub), ("*", "*", sub), (domain, family, "*")):
            codes = ISO_TO_BAI.get(key)
            if codes:
                return codes[0] if direction == "credit" else codes[1]
    return _FALLBACK_CODE[direction]


def _category(type_code: str, direction: Direction, facts: TextFacts, is_return: bool) -> Category:
    """:func:`sources.bank.classify`, with ``CdtDbtInd`` overriding the code's direction."""
    code_direction, category = classify(type_code, facts)
    if is_return:
        return "return"
    if code_direction == direction or category in ("return", "zba"):
        return category
    if direction == "credit":
        return "claim_payment" if facts.is_claim_payment else "other_credit"
    return "debit"


def _customer_reference(txs: list[Element]) -> str | None:
    for tx in txs:
        for path in ("Refs/ChqNb", "Refs/EndToEndId", "Refs/InstrId"):
            value = _text(tx, path)
            if value and value.upper() != _NOT_PROVIDED:
                return value
    return None


def _counterparty(txs: list[Element], direction: Direction) -> str | None:
    """Name of who paid us (a credit) or whom we paid (a debit); ``Pty/Nm`` from .08 on."""
    party = "Dbtr" if direction == "credit" else "Cdtr"
    paths = (f"RltdPties/{party}/Nm", f"RltdPties/{party}/Pty/Nm")
    for tx in txs:
        name = _first_text(tx, *paths)
        if name:
            return " ".join(name.split())
    return None


def _free_text(txs: list[Element], entry_info: str | None) -> str:
    """``RmtInf/Ustrd`` lines, then ``AddtlTxInf``, then ``AddtlNtryInf``, one per line."""
    parts: list[str] = []
    for tx in txs:
        parts += [(u.text or "").strip() for u in tx.iterfind("RmtInf/Ustrd")]
    for tx in txs:
        parts += [(a.text or "").strip() for a in tx.iterfind("AddtlTxInf")]
    if entry_info:
        parts.append(entry_info)
    return "\n".join(p for p in parts if p)


def _tx_amount(tx: Element) -> tuple[Decimal, str | None] | None:
    amt = tx.find("Amt")
    if amt is None:
        amt = tx.find("AmtDtls/TxAmt/Amt")
    if amt is None:
        return None
    return _amount((amt.text or "").strip() or None, "TxDtls/Amt"), amt.get("Ccy")


@dataclass(slots=True)
class _Unit:
    """What becomes one event: the whole entry, or one of its transaction details."""

    txs: list[Element]
    amount: Decimal
    direction: Direction
    btc: Element | None
    id_reference: str | None
    bank_reference: str | None
    record: str


def _units(
    raw: _RawEntry, amount: Decimal, direction: Direction, currency: str | None
) -> list[_Unit]:
    """Split an entry into its transaction details when each one has its own amount."""
    ntry, stmt = raw.element, raw.statement
    record = f"{stmt.stmt_id}/{raw.index}"
    txs = ntry.findall("NtryDtls/TxDtls")
    entry_ref = _text(ntry, "AcctSvcrRef")
    entry_btc = ntry.find("BkTxCd")
    amounts = [_tx_amount(tx) for tx in txs]
    split = len(txs) > 1 and all(
        a is not None and (a[1] is None or a[1] == currency) for a in amounts
    )
    if not split:
        tx_refs = (_text(tx, "Refs/AcctSvcrRef") for tx in txs)
        ref = entry_ref or next((r for r in tx_refs if r), None)
        return [_Unit(txs, amount, direction, entry_btc, ref, ref, record)]
    units = []
    for i, (tx, tx_amount) in enumerate(zip(txs, amounts, strict=True), start=1):
        assert tx_amount is not None
        own_ref = _text(tx, "Refs/AcctSvcrRef")
        indicator = _text(tx, "CdtDbtInd")
        own_btc = tx.find("BkTxCd")
        units.append(
            _Unit(
                [tx],
                tx_amount[0],
                _DIRECTIONS.get(indicator or "", direction),
                own_btc if own_btc is not None else entry_btc,
                own_ref or (f"{entry_ref}#{i}" if entry_ref else None),
                own_ref or entry_ref,
                f"{record}/{i}",
            )
        )
    return units


def _signed(amount: Decimal, direction: Direction) -> Decimal:
    return amount if direction == "credit" else -amount


def _entry_events(raw: _RawEntry, ctx: ParseContext) -> list[Parsed]:
    """Events (and issues) of one entry, or :class:`_BadEntry` when it cannot be read."""
    ntry, stmt = raw.element, raw.statement
    if stmt.account is None:
        raise _BadEntry("statement has no account (Acct/Id/IBAN or Acct/Id/Othr/Id)")
    account = stmt.account
    amount = _amount(_text(ntry, "Amt"), "Amt")
    direction = _DIRECTIONS.get(_text(ntry, "CdtDbtInd") or "")
    if direction is None:
        raise _BadEntry("CdtDbtInd is missing or not CRDT/DBIT")
    amt_elem = ntry.find("Amt")
    currency = (amt_elem.get("Ccy") if amt_elem is not None else None) or stmt.currency
    booking = _date_of(ntry, "BookgDt")
    value_date = _date_of(ntry, "ValDt")
    as_of = booking or value_date or stmt.fallback_date
    if as_of is None:
        raise _BadEntry("entry has no BookgDt and the statement no date")
    entry_reversed = (_text(ntry, "RvslInd") or "").lower() in ("true", "1")
    units = _units(raw, amount, direction, currency)  # may raise on a bad TxDtls amount

    base_record = f"{stmt.stmt_id}/{raw.index}"
    entry_info = _text(ntry, "AddtlNtryInf")
    out: list[Parsed] = []
    for unit in units:
        text = _free_text(unit.txs, entry_info)
        facts = extract(text)
        type_code = _type_code(unit.btc, unit.direction)
        is_return = entry_reversed or any(tx.find("RtrInf") is not None for tx in unit.txs)
        customer_ref = _customer_reference(unit.txs)
        detail = f"{customer_ref or ''} {text}"
        event_id = _event_id(stmt, account, as_of, unit, type_code, detail)
        source = Source.model_construct(
            system=SYSTEM, file=ctx.file, record=unit.record, offset=raw.start
        )
        out.append(
            BankTransaction.model_construct(
                event_id=event_id,
                schema_version=SCHEMA_VERSION,
                entity=ctx.refdata.entity_for_account(account),
                occurred_at=midnight_utc(as_of),
                source=source,
                kind="bank_transaction",
                account=account,
                currency=currency,
                bank_reference=unit.bank_reference,
                customer_reference=customer_ref,
                type_code=type_code,
                direction=unit.direction,
                category=_category(type_code, unit.direction, facts, is_return),
                amount=unit.amount,
                as_of_date=as_of,
                value_date=value_date,
                text=text,
                trace_number=facts.trace_number,
                trace_normalized=facts.trace_normalized,
                payer_id=facts.payer_id,
                company_name=facts.company_name or _counterparty(unit.txs, unit.direction),
                company_id=facts.company_id,
                entry_description=facts.entry_description,
            )
        )
        if booking is None:
            out.append(
                ParseIssue.of(
                    "missing_segment",
                    "entry has no BookgDt; as-of date taken from ValDt or the statement",
                    source,
                    event_id=event_id,
                )
            )
    if len(units) > 1:
        total = sum((_signed(u.amount, u.direction) for u in units), Decimal(0))
        difference = _signed(amount, direction) - total
        if difference:
            out.append(
                ParseIssue.of(
                    "control_total_mismatch",
                    "transaction details do not add up to the entry amount",
                    Source.model_construct(
                        system=SYSTEM, file=ctx.file, record=base_record, offset=raw.start
                    ),
                    difference=difference,
                )
            )
    return out


def _event_id(
    stmt: _Statement, account: str, as_of: date, unit: _Unit, type_code: str, detail: str
) -> str:
    """Content identity; without a bank reference, an ordinal separates identical twins."""
    first = bank_transaction_id(
        account, as_of, unit.id_reference, unit.amount, type_code, detail=detail
    )
    if unit.id_reference:
        return first
    ordinal = stmt.seen.get(first, 0)
    stmt.seen[first] = ordinal + 1
    if not ordinal:
        return first
    return bank_transaction_id(
        account, as_of, None, unit.amount, type_code, detail=detail, ordinal=ordinal
    )


# --- driver -------------------------------------------------------------------------------


def _file_failure(exc: Exception) -> str:
    """Reason for a file that stopped being readable; never quotes the file's content."""
    if isinstance(exc, DTDForbidden):
        return "refused by defusedxml: a DOCTYPE is not allowed in camt.053"
    if isinstance(exc, EntitiesForbidden):
        return "refused by defusedxml: entity declarations are not allowed"
    if isinstance(exc, DefusedXmlException):
        return "refused by defusedxml: external references are not allowed"
    if isinstance(exc, LookupError):
        return "not readable XML: it declares an unknown encoding"
    return f"not well-formed XML ({exc})"  # expat names only the position and the kind of error


def parse(stream: BinaryIO, ctx: ParseContext) -> Iterator[Parsed]:
    """Stream a camt.053 file; never raises on bad data (see the module docstring)."""
    builder = _StatementBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    builder.expat = parser.parser
    buf = bytearray()
    base = 0  # file offset of buf[0]
    failure: Exception | None = None
    while failure is None:
        chunk = stream.read(CHUNK_SIZE)
        buf += chunk
        try:
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
        except (ParseError, ValueError, LookupError) as exc:  # ValueError: defusedxml, codecs
            failure = exc
        for raw in builder.ready:
            original = _entry_bytes(buf, base, raw)
            yield from _emit(raw, original, ctx)
            cut = raw.start - base + len(original)  # keep only what follows this entry
            del buf[:cut]
            base += cut
        builder.ready.clear()
        if not chunk:
            break
    file_source = Source.model_construct(system=SYSTEM, file=ctx.file, record=None, offset=base)
    if failure is not None:
        rest = bytes(buf) + stream.read()
        yield DeadLetter.of("parse", _file_failure(failure), file_source, rest)
    elif not builder.found_statement_list:
        reason = f"not a camt.053 statement: no BkToCstmrStmt (root element {builder.root})"
        yield DeadLetter.of("parse", reason, file_source, bytes(buf))


def _emit(raw: _RawEntry, original: bytes, ctx: ParseContext) -> Iterator[Parsed]:
    try:
        items = _entry_events(raw, ctx)
    except _BadEntry as exc:
        record = f"{raw.statement.stmt_id}/{raw.index}"
        source = Source.model_construct(
            system=SYSTEM, file=ctx.file, record=record, offset=raw.start
        )
        yield DeadLetter.of("parse", f"entry {record}: {exc}", source, original)
        return
    yield from items


def parse_bytes(data: bytes, ctx: ParseContext) -> Iterator[Parsed]:
    return parse(io.BytesIO(data), ctx)
