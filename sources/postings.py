"""ERP posting confirmations (JSON lines) → canonical :class:`Posting` events.

One JSON object per line::

    {"posting_id": "JE-1001", "idempotency_key": "case-…", "status": "posted",
     "amount": "945.00", "posted_at": "2025-03-18T14:02:11Z", "reason": null, "entity": "H1"}

This is input from another system, so each line is validated by a small pydantic model
(:class:`PostingLine`) before it becomes an event; a line that fails becomes a dead letter
naming the field and the problem (never the value) with the line's original bytes, and the file
goes on. Blank lines are skipped.

Money is never float:

- ``amount`` as a string must be a plain decimal (``"945.00"``, ``"-12.5"``), read exactly;
- as a JSON integer it is taken as is;
- as a JSON number with a fraction (``945.10``), the line is read again with the standard
  library keeping the number's exact text, and it is accepted only with at most two decimals and
  no exponent: more digits than cents means the sender did float arithmetic, which is a defect
  to send back, not to round away.

``posted_at`` must be ISO-8601 *with* a zone: a naive time cannot be placed on the event-time
axis the matcher uses, and guessing the ERP's zone would be silent corruption. Timestamps as
numbers are refused for the same reason.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, BinaryIO

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
)

from remitflow.events import SCHEMA_VERSION, Posting, PostingStatus, Source
from remitflow.identity import content_id
from remitflow.records import DeadLetter
from sources.base import ParseContext, Parsed

SYSTEM = "postings"
_BOM = b"\xef\xbb\xbf"
_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_MAX_NUMBER_DECIMALS = 2


_MAX_WHOLE_DIGITS = 15  # as remitflow.money and the canonical Money type


def _to_amount(value: object) -> Decimal | None:
    amount = _exact_amount(value)
    if amount is not None:
        _, digits, exponent = amount.as_tuple()
        if not isinstance(exponent, int) or exponent < -_MAX_NUMBER_DECIMALS:
            raise ValueError("has more than 2 decimals")
        if len(digits) + exponent > _MAX_WHOLE_DIGITS:
            raise ValueError(f"has more than {_MAX_WHOLE_DIGITS} digits before the point")
    return amount


def _exact_amount(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int in Python, never an amount
        raise ValueError("must be a decimal string or a number, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise ValueError("must be a plain decimal such as 945.00")
        return Decimal(text)
    if isinstance(value, Decimal):  # a JSON number with a fraction, read exactly
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -_MAX_NUMBER_DECIMALS:
            raise ValueError("a JSON number may have at most 2 decimals; send a string")
        return Decimal(int(value)) if exponent > 0 else value  # 1e2 → 100
    raise ValueError("must be a decimal string or a number")


def _to_aware_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string with a time zone")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("has no time zone")
    return parsed


_Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class PostingLine(BaseModel):
    """One confirmation line as the ERP sends it (unknown keys are ignored: ERPs add fields)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    posting_id: _Id
    idempotency_key: _Id
    status: PostingStatus
    amount: Annotated[Decimal | None, BeforeValidator(_to_amount)] = None
    posted_at: Annotated[AwareDatetime, BeforeValidator(_to_aware_datetime)]
    reason: str | None = None
    entity: str | None = None


def posting_event_id(posting_id: str, idempotency_key: str, status: str) -> str:
    """Event identity: the same confirmation sent again (any file, any line) keeps its id."""
    return content_id("post", [posting_id, idempotency_key, status])


def _problem(exc: ValidationError) -> str:
    """Field names and messages only: pydantic's messages do not quote the input."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "line"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def _load(line: bytes) -> Any:
    """orjson first; a fractional number is re-read keeping its exact text (see module doc)."""
    obj = orjson.loads(line)
    if isinstance(obj, dict) and isinstance(obj.get("amount"), float):
        obj = json.loads(line, parse_float=Decimal)
    return obj


def _parse_line(content: bytes, line: bytes, source: Source) -> Parsed:
    """``content`` is what is parsed (BOM removed), ``line`` the original bytes kept."""
    try:
        obj = _load(content)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = f"invalid JSON{where}: {getattr(exc, 'msg', 'not decodable')}"
        return DeadLetter.of("parse", reason, source, line)
    if not isinstance(obj, dict):
        return DeadLetter.of("parse", "line is not a JSON object", source, line)
    try:
        valid = PostingLine.model_validate(obj)
    except ValidationError as exc:
        return DeadLetter.of("parse", f"invalid posting: {_problem(exc)}", source, line)
    return Posting.model_construct(
        event_id=posting_event_id(valid.posting_id, valid.idempotency_key, valid.status),
        schema_version=SCHEMA_VERSION,
        entity=valid.entity,
        occurred_at=valid.posted_at,
        source=source,
        kind="posting",
        posting_id=valid.posting_id,
        idempotency_key=valid.idempotency_key,
        status=valid.status,
        amount=valid.amount,
        posted_at=valid.posted_at,
        reason=valid.reason,
    )


def parse(stream: BinaryIO, ctx: ParseContext) -> Iterator[Parsed]:
    """One event or dead letter per non-blank line; never raises on bad data."""
    offset = 0
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        content = line.removeprefix(_BOM) if number == 1 else line
        if content.strip():
            source = Source.model_construct(
                system=SYSTEM, file=ctx.file, record=f"line {number}", offset=offset
            )
            yield _parse_line(content, line, source)
        offset += len(raw)


def parse_bytes(data: bytes, ctx: ParseContext) -> Iterator[Parsed]:
    return parse(io.BytesIO(data), ctx)
