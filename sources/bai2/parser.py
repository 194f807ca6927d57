"""BAI2 file → one ``BankTransaction`` per 16 record, with control totals checked.

The structure is a small state machine over logical records (see :mod:`.records`):
``01`` file ⊃ ``02`` group (as-of date, currency) ⊃ ``03`` account ⊃ ``16`` transactions,
closed by ``49``/``98``/``99`` trailers whose totals are checked the way BAI2 v2 defines them:

* ``49`` total = algebraic sum of every amount in the account's ``03`` summaries and ``16``
  details (not the S/D availability amounts); its count = records from ``03`` to ``49``
  inclusive, each ``88`` counted.
* ``98`` total = sum of the group's ``49`` totals; count of accounts; records from ``02`` to
  ``98``. ``99`` total = sum of the ``98`` totals; count of groups; records from ``01`` to ``99``.

A trailer that disagrees yields a :class:`ParseIssue` (never an exception, never a "fix").
Sums of trailers use the totals the trailers *state*, so one wrong account is reported once,
at its ``49``, and not again at ``98`` and ``99``. A ``16`` that cannot be read, or that has no
account or date to belong to, becomes a dead letter and parsing goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import BinaryIO

from remitflow.events import SCHEMA_VERSION, BankTransaction, Source, construct, midnight_utc
from remitflow.money import AmountError
from remitflow.records import DeadLetter, IssueCode, ParseIssue
from sources.bai2.records import LogicalRecord, distribution_count, logical_records, read_chunks
from sources.bank import TextFacts, bank_transaction_id, classify, extract
from sources.base import ParseContext, Parsed

SYSTEM = "bai2"
DEFAULT_CURRENCY = "USD"
# ISO 4217 minor units where they are not 2: BAI2 amounts carry the currency's implied decimals.
_MINOR_UNITS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"), 0
    ),
    **dict.fromkeys(("VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
# Funds types without extra fields; S, V and D carry extra fields (see records.text_start).
_PLAIN_FUNDS = frozenset({"", "0", "1", "2", "Z"})
_MAX_AMOUNT_DIGITS = 30
_FACTS_CACHE_SIZE = 4096


def parse(stream: BinaryIO, ctx: ParseContext) -> Iterator[Parsed]:
    """Events, dead letters and issues of a BAI2 stream, read in chunks."""
    return _Bai2Parser(ctx).run(read_chunks(stream))


def parse_bytes(data: bytes, ctx: ParseContext) -> Iterator[Parsed]:
    return _Bai2Parser(ctx).run((data,))


def units(text: str) -> int:
    """A BAI2 amount in minor units: optional sign, digits only (same rule as
    :func:`remitflow.money.parse_implied_cents`, kept as an int for exact control sums)."""
    s = text.strip()
    negative = s[:1] == "-"
    digits = s[1:] if s[:1] in ("+", "-") else s
    if not digits or not (digits.isdigit() and digits.isascii()):
        raise AmountError("not an implied-decimal amount")
    if len(digits) > _MAX_AMOUNT_DIGITS:
        raise AmountError("amount has too many digits")
    value = int(digits)
    return -value if negative else value


def yymmdd(text: str) -> date | None:
    s = text.strip()
    if len(s) != 6 or not (s.isdigit() and s.isascii()):
        return None
    try:
        return date(2000 + int(s[:2]), int(s[2:4]), int(s[4:]))
    except ValueError:
        return None


def _currency(text: str) -> str | None:
    s = text.strip().upper()
    return s if len(s) == 3 and s.isalpha() and s.isascii() else None


def _field(fields: list[str], i: int) -> str:
    return fields[i].strip() if i < len(fields) else ""


class _Account:
    __slots__ = ("currency", "decimals", "entity", "number", "records", "source", "total")

    def __init__(
        self, number: str, currency: str, entity: str | None, source: Source, count: int
    ) -> None:
        self.number = number
        self.currency = currency
        self.decimals = _MINOR_UNITS.get(currency, 2)
        self.entity = entity
        self.source = source
        self.records = count
        self.total = 0  # minor units: 03 summary amounts + 16 amounts


class _Group:
    __slots__ = ("accounts", "as_of", "currency", "occurred_at", "records", "source", "total")

    def __init__(self, as_of: date | None, currency: str | None, source: Source) -> None:
        self.as_of = as_of
        self.occurred_at: datetime | None = midnight_utc(as_of) if as_of else None
        self.currency = currency
        self.source = source
        self.records = 0
        self.accounts = 0
        self.total = 0  # sum of the accounts' 49 totals


class _File:
    __slots__ = ("groups", "records", "source", "total")

    def __init__(self, source: Source | None) -> None:
        self.source = source
        self.records = 0
        self.groups = 0
        self.total = 0  # sum of the groups' 98 totals


class _Bai2Parser:
    def __init__(self, ctx: ParseContext) -> None:
        self.ctx = ctx
        self.file: _File | None = None
        self.group: _Group | None = None
        self.account: _Account | None = None
        # How many identical reference-less transactions came before, per file (the id's ordinal).
        self.seen: dict[tuple[str, date, Decimal, str, str], int] = {}
        self._entities: dict[str, str | None] = {}
        self._facts_cache: dict[str, TextFacts] = {}

    # --- driving -------------------------------------------------------------------------

    def run(self, chunks: Iterable[bytes]) -> Iterator[Parsed]:
        transaction, other = self._transaction, self._record
        for rec in logical_records(chunks):
            try:
                if rec.code == "16":  # the hot path: no generator per record
                    yield transaction(rec)
                else:
                    yield from other(rec)
            except Exception as exc:  # a parser bug must not stop the file: park the record
                yield DeadLetter.of(
                    "parse",
                    f"unexpected parser error: {type(exc).__name__}",
                    self._source(rec),
                    rec.raw,
                )
        yield from self._close_account(None)
        yield from self._close_group(None)
        if self.file is not None and self.file.source is not None:
            yield self._issue("missing_segment", "file ended without a 99 file trailer", None)

    def _record(self, rec: LogicalRecord) -> Iterator[Parsed]:
        code = rec.code
        if code == "03":
            yield from self._open_account(rec)
        elif code == "49":
            yield from self._account_trailer(rec)
        elif code == "02":
            yield from self._open_group(rec)
        elif code == "98":
            yield from self._group_trailer(rec)
        elif code == "01":
            yield from self._open_file(rec)
        elif code == "99":
            yield from self._file_trailer(rec)
        elif code == "88":
            self._count(rec)
            yield self._dead(rec, "88 continuation with no record before it to continue")
        elif code:
            self._count(rec)
            yield self._dead(rec, f"unknown record code {code}")
        else:
            yield self._dead(rec, "not a BAI2 record")

    def _count(self, rec: LogicalRecord) -> None:
        """Every physical record counts in each enclosing trailer's record count."""
        if self.account is not None:
            self.account.records += rec.count
        if self.group is not None:
            self.group.records += rec.count
        if self.file is None:
            self.file = _File(None)
        self.file.records += rec.count

    # --- helpers -------------------------------------------------------------------------

    def _source(self, rec: LogicalRecord) -> Source:
        return construct(
            Source,
            {
                "system": SYSTEM,
                "file": self.ctx.file,
                "record": f"line {rec.line}",
                "offset": rec.offset,
            },
        )

    def _dead(self, rec: LogicalRecord, reason: str) -> DeadLetter:
        return DeadLetter.of("parse", reason, self._source(rec), rec.raw)

    def _issue(
        self,
        code: IssueCode,
        message: str,
        source: Source | None,
        difference: Decimal | None = None,
    ) -> ParseIssue:
        where = source or Source.model_construct(
            system=SYSTEM, file=self.ctx.file, record=None, offset=None
        )
        return ParseIssue.of(code, message, where, difference=difference)

    def _check(
        self,
        code: IssueCode,
        what: str,
        stated_text: str,
        computed: int,
        source: Source,
        decimals: int = 0,
    ) -> Iterator[ParseIssue]:
        """Compare a trailer's stated number with what was counted or summed."""
        if not stated_text:
            return  # defaulted field: nothing to check
        try:
            stated = units(stated_text)
        except AmountError:
            yield self._issue("invalid_amount", f"{what} is not a number", source)
            return
        if stated != computed:
            yield self._issue(
                code,
                f"{what} {stated} differs from the computed {computed}",
                source,
                Decimal(stated - computed).scaleb(-decimals),
            )

    # --- file and group ------------------------------------------------------------------

    def _open_file(self, rec: LogicalRecord) -> Iterator[Parsed]:
        yield from self._close_account(None)
        yield from self._close_group(None)
        if self.file is not None and self.file.source is not None:
            yield self._issue("missing_segment", "file header 01 before the previous 99", None)
        self.file = _File(self._source(rec))
        self.file.records = rec.count
        self.seen.clear()

    def _file_trailer(self, rec: LogicalRecord) -> Iterator[Parsed]:
        source = self._source(rec)
        yield from self._close_account(source)
        yield from self._close_group(source)
        self._count(rec)
        file = self.file
        assert file is not None  # _count opened one
        fields = rec.fields()
        if file.source is None:
            yield self._issue("missing_segment", "99 file trailer without a 01 header", source)
        yield from self._check(
            "control_total_mismatch",
            "99 file control total",
            _field(fields, 0),
            file.total,
            source,
            2,
        )
        yield from self._check(
            "record_count_mismatch",
            "99 number of groups",
            _field(fields, 1),
            file.groups,
            source,
        )
        yield from self._check(
            "record_count_mismatch",
            "99 number of records",
            _field(fields, 2),
            file.records,
            source,
        )
        self.file = None

    def _open_group(self, rec: LogicalRecord) -> Iterator[Parsed]:
        source = self._source(rec)
        yield from self._close_account(source)
        yield from self._close_group(source)
        fields = rec.fields()
        as_of = yymmdd(_field(fields, 3))
        if as_of is None:
            yield self._issue(
                "invalid_date", "02 group header has no valid as-of date (YYMMDD)", source
            )
        self.group = _Group(as_of, _currency(_field(fields, 5)), source)
        self._count(rec)
        assert self.file is not None
        self.file.groups += 1

    def _group_trailer(self, rec: LogicalRecord) -> Iterator[Parsed]:
        source = self._source(rec)
        yield from self._close_account(source)
        group = self.group
        self._count(rec)
        if group is None:
            yield self._issue("unexpected_segment", "98 group trailer without a 02 header", source)
            return
        fields = rec.fields()
        yield from self._check(
            "control_total_mismatch",
            "98 group control total",
            _field(fields, 0),
            group.total,
            source,
            2,
        )
        yield from self._check(
            "record_count_mismatch",
            "98 number of accounts",
            _field(fields, 1),
            group.accounts,
            source,
        )
        yield from self._check(
            "record_count_mismatch",
            "98 number of records",
            _field(fields, 2),
            group.records,
            source,
        )
        self._add_to_file(_field(fields, 0), group.total)
        self.group = None

    def _add_to_file(self, stated: str, computed: int) -> None:
        assert self.file is not None
        try:
            self.file.total += units(stated)
        except AmountError:
            self.file.total += computed

    def _close_group(self, at: Source | None) -> Iterator[Parsed]:
        """A group left open by a missing 98: say so, and keep its sums for the 99."""
        if self.group is None:
            return
        yield self._issue(
            "missing_segment",
            "group (02) not closed by a 98 group trailer",
            at or self.group.source,
        )
        if self.file is not None:
            self.file.total += self.group.total
        self.group = None

    # --- account -------------------------------------------------------------------------

    def _open_account(self, rec: LogicalRecord) -> Iterator[Parsed]:
        source = self._source(rec)
        yield from self._close_account(source)
        self._count(rec)
        group = self.group
        if group is None:
            yield self._issue("unexpected_segment", "03 account outside a 02 group", source)
        else:
            group.accounts += 1
        fields = rec.fields()
        number = _field(fields, 0)
        currency = (
            _currency(_field(fields, 1)) or (group.currency if group else None) or DEFAULT_CURRENCY
        )
        if number not in self._entities:
            self._entities[number] = self.ctx.refdata.entity_for_account(number) if number else None
        account = _Account(number, currency, self._entities[number], source, rec.count)
        self.account = account
        if not number:
            yield self._dead(rec, "03 account identifier has no account number")
        bad = False
        for amount in _summary_amounts(fields):
            try:
                account.total += units(amount)
            except AmountError:
                bad = True
        if bad:
            yield self._issue("invalid_amount", "03 summary amount is not a number", source)

    def _account_trailer(self, rec: LogicalRecord) -> Iterator[Parsed]:
        source = self._source(rec)
        account = self.account
        self._count(rec)
        if account is None:
            yield self._issue("unexpected_segment", "49 account trailer without a 03", source)
            return
        fields = rec.fields()
        yield from self._check(
            "control_total_mismatch",
            "49 account control total",
            _field(fields, 0),
            account.total,
            source,
            account.decimals,
        )
        yield from self._check(
            "record_count_mismatch",
            "49 number of records",
            _field(fields, 1),
            account.records,
            source,
        )
        if self.group is not None:
            try:
                self.group.total += units(_field(fields, 0))
            except AmountError:
                self.group.total += account.total
        self.account = None

    def _close_account(self, at: Source | None) -> Iterator[Parsed]:
        if self.account is None:
            return
        yield self._issue(
            "missing_segment",
            "account (03) not closed by a 49 account trailer",
            at or self.account.source,
        )
        if self.group is not None:
            self.group.total += self.account.total
        self.account = None

    # --- transaction ---------------------------------------------------------------------

    def _transaction(self, rec: LogicalRecord) -> BankTransaction | DeadLetter:
        self._count(rec)
        account = self.account
        if account is None:
            return self._dead(rec, "16 transaction outside an account (no open 03)")
        fields = rec.body.split(",")
        n = len(fields)
        amount_text = fields[1].strip() if n > 1 else ""
        if not amount_text:
            return self._dead(rec, "16 transaction has no amount")
        try:
            amount_units = units(amount_text)
        except AmountError as exc:
            return self._dead(rec, f"16 transaction amount: {exc}")
        account.total += amount_units
        type_code = fields[0].strip()
        if len(type_code) != 3 or not (type_code.isdigit() and type_code.isascii()):
            return self._dead(rec, "16 transaction type code is not three digits")
        funds = fields[2].strip().upper() if n > 2 else ""
        value_date: date | None = None
        if funds in _PLAIN_FUNDS:
            extra = 0
        elif funds == "S":
            extra = 3
        elif funds == "V":
            extra = 2
            value_text = _field(fields, 3)
            value_date = yymmdd(value_text)
            if value_text and value_date is None:
                return self._dead(rec, "16 transaction value date (funds type V) is not YYMMDD")
        elif funds == "D":
            count = _field(fields, 3)
            if not (count.isdigit() and count.isascii()):
                return self._dead(rec, "16 transaction distribution count (funds type D) invalid")
            extra = 1 + 2 * distribution_count(count)
        else:
            return self._dead(rec, "16 transaction funds type is not 0, 1, 2, Z, S, V or D")
        group = self.group
        if group is None or group.as_of is None or group.occurred_at is None:
            return self._dead(rec, "16 transaction in a group without a valid as-of date")
        if not account.number:
            return self._dead(rec, "16 transaction under an 03 without an account number")
        bank_reference = fields[3 + extra].strip() or None if n > 3 + extra else None
        customer_reference = fields[4 + extra].strip() or None if n > 4 + extra else None
        text = rec.text or ""
        amount = Decimal(amount_units).scaleb(-account.decimals)
        facts = self._facts(text)
        direction, category = classify(type_code, facts)
        ordinal = 0
        detail = ""
        if bank_reference is None:
            detail = f"{customer_reference or ''} {text}"
            key = (account.number, group.as_of, amount, type_code, " ".join(detail.split()))
            ordinal = self.seen.get(key, 0)
            self.seen[key] = ordinal + 1
        event_id = bank_transaction_id(
            account.number,
            group.as_of,
            bank_reference,
            amount,
            type_code,
            detail=detail,
            ordinal=ordinal,
        )
        return construct(
            BankTransaction,
            {
                "event_id": event_id,
                "schema_version": SCHEMA_VERSION,
                "entity": account.entity,
                "occurred_at": group.occurred_at,
                "source": self._source(rec),
                "kind": "bank_transaction",
                "account": account.number,
                "currency": account.currency,
                "bank_reference": bank_reference,
                "customer_reference": customer_reference,
                "type_code": type_code,
                "direction": direction,
                "category": category,
                "amount": amount,
                "as_of_date": group.as_of,
                "value_date": value_date,
                "text": text,
                "trace_number": facts.trace_number,
                "trace_normalized": facts.trace_normalized,
                "payer_id": facts.payer_id,
                "company_name": facts.company_name,
                "company_id": facts.company_id,
                "entry_description": facts.entry_description,
            },
        )

    def _facts(self, text: str) -> TextFacts:
        """``extract(text)``, remembered: banks repeat the same text (sweeps, fees, batches)."""
        facts = self._facts_cache.get(text)
        if facts is None:
            if len(self._facts_cache) >= _FACTS_CACHE_SIZE:
                self._facts_cache.clear()
            facts = self._facts_cache[text] = extract(text)
        return facts


def _summary_amounts(fields: list[str]) -> Iterator[str]:
    """The amounts of an 03's summaries: (type code, amount, item count, funds type + extras).

    Banks write defaulted fields loosely (``,,,/`` where ``,,/`` is meant), so an empty field
    where a type code is expected is skipped rather than shifting every later summary.
    """
    i, n = 2, len(fields)
    while i < n:
        if not fields[i].strip():
            i += 1
            continue
        amount = fields[i + 1].strip() if i + 1 < n else ""
        if amount:
            yield amount
        funds = fields[i + 3].strip().upper() if i + 3 < n else ""
        i += 4
        if funds == "S":
            i += 3
        elif funds == "V":
            i += 2
        elif funds == "D":
            count = fields[i].strip() if i < n else ""
            i += 1 + 2 * distribution_count(count)
