"""Output records that are not matching outcomes yet: dead letters and parse issues.

Field names follow DESIGN.md §4; outside tools rely on them. A dead letter keeps the original
bytes (base64) so an operator can fix and replay it; its ``reason`` never quotes those bytes,
because they may hold PHI.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from remitflow.events import Money, Source

Stage = Literal["parse", "validate", "match", "post"]


def _now() -> datetime:
    return datetime.now(UTC)


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    record: Literal["dead_letter"] = "dead_letter"
    case_id: str | None = None
    entity: str | None = None
    rule: str | None = None
    confidence: float | None = None
    decided_at: AwareDatetime | None = None
    emitted_at: AwareDatetime = Field(default_factory=_now)
    stage: Stage
    reason: str
    source: Source
    payload: str = Field(description="original bytes, base64")

    @classmethod
    def of(cls, stage: Stage, reason: str, source: Source, payload: bytes | str) -> DeadLetter:
        raw = payload.encode("latin-1", "replace") if isinstance(payload, str) else payload
        return cls.model_construct(
            record="dead_letter",
            case_id=None,
            entity=None,
            rule=None,
            confidence=None,
            decided_at=None,
            emitted_at=_now(),
            stage=stage,
            reason=reason,
            source=source,
            payload=base64.b64encode(raw).decode("ascii"),
        )

    def original(self) -> bytes:
        return base64.b64decode(self.payload)


IssueCode = Literal[
    "unbalanced_service",
    "unbalanced_claim",
    "unbalanced_transaction",
    "invalid_date",
    "invalid_amount",
    "missing_segment",
    "unexpected_segment",
    "control_total_mismatch",
    "record_count_mismatch",
    "envelope_mismatch",
    "unknown_entity",
]


class ParseIssue(BaseModel):
    """Something wrong with a file that does not stop its events: flagged, never "fixed"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record: Literal["parse_issue"] = "parse_issue"
    code: IssueCode
    message: str
    source: Source
    event_id: str | None = None
    difference: Money | None = None

    @classmethod
    def of(
        cls,
        code: IssueCode,
        message: str,
        source: Source,
        *,
        event_id: str | None = None,
        difference: Decimal | None = None,
    ) -> ParseIssue:
        return cls.model_construct(
            record="parse_issue",
            code=code,
            message=message,
            source=source,
            event_id=event_id,
            difference=difference,
        )
