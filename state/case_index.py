"""The case index in Redis: where each case stands, found by case id or trace number.

Finance operators ask "what happened to EFT 1234567890?" and "which exceptions are open for this
payer?"; the output topics answer neither without a scan. Every record the continuous dataflow
emits is folded into one Redis hash per case (``<prefix>:case:<case_id>``), plus a set of case
ids per normalised trace number and one set of exception cases; ``remitflow serve`` reads them.

Writes must be idempotent and order-free, because Bytewax replays outputs since its last
snapshot, operators replay whole topics, and a case's decision and its ERP confirmation leave
from different workers. So the decision and each confirmation write disjoint fields (a replayed
decision never overwrites "posted"), every write of the same record writes the same values, and
the status is derived when read: the latest confirmation's outcome (by the ERP's time), else
the decision's.

No PHI is kept: records quote only event ids, trace numbers, payer ids, amounts and sources.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from remitflow.identity import normalize_trace
from remitflow.stores import redis_client

DECISIONS = frozenset({"matched", "variance", "unmatched"})
CONFIRMATIONS = frozenset(
    {"posted", "posting_rejected", "posting_reversed", "duplicate_posting", "orphan_posting"}
)
# What finance operators must work: everything but a clean match and a clean posting.
EXCEPTIONS = frozenset({"variance", "unmatched", "journal_failed", *CONFIRMATIONS} - {"posted"})
DEFAULT_TTL_DAYS = 400  # a fiscal year and its audit; every write of a case renews it


class CaseIndex:
    def __init__(
        self, url: str, prefix: str = "remitflow", *, ttl_days: int = DEFAULT_TTL_DAYS
    ) -> None:
        self._redis = redis_client(url, decode_responses=True)
        self._prefix = prefix
        self._ttl_s = ttl_days * 86_400

    # -- keys ----------------------------------------------------------------------------------

    def _case(self, case_id: str) -> str:
        return f"{self._prefix}:case:{case_id}"

    def _trace(self, trace: str) -> str:
        return f"{self._prefix}:trace:{trace}"

    def _event(self, event_id: str) -> str:
        return f"{self._prefix}:event-cases:{event_id}"

    @property
    def _exceptions(self) -> str:
        return f"{self._prefix}:exceptions"

    # -- writing -------------------------------------------------------------------------------

    def apply(self, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Fold one batch of ``(stem, record)`` outputs in; returns the cases touched."""
        touched: set[str] = set()
        with self._redis.pipeline(transaction=False) as pipe:
            for _, record in records:
                kind = record.get("record")
                case_id = record.get("case_id")
                if not isinstance(case_id, str):
                    continue
                if kind in DECISIONS:
                    self._decision(pipe, case_id, record)
                elif kind in CONFIRMATIONS:
                    self._confirmation(pipe, case_id, record)
                elif kind == "journal_status":  # the sink: posted, or dead-lettered and why
                    self._journal_status(pipe, case_id, record)
                elif kind == "erp_posting":
                    pipe.hset(
                        self._case(case_id),
                        mapping={
                            "idempotency_key": record["idempotency_key"],
                            "journal_date": record["journal_date"],
                        },
                    )
                else:
                    continue
                if kind in EXCEPTIONS:
                    pipe.sadd(self._exceptions, case_id)
                pipe.expire(self._case(case_id), self._ttl_s)
                touched.add(case_id)
            pipe.execute()
        return len(touched)

    def _journal_status(self, pipe: Any, case_id: str, record: dict[str, Any]) -> None:
        fields = {"journal_status": str(record["status"])}
        if record.get("reason"):
            fields["journal_reason"] = str(record["reason"])
        pipe.hset(self._case(case_id), mapping=fields)
        if record["status"] == "failed":
            pipe.sadd(self._exceptions, case_id)

    def _decision(self, pipe: Any, case_id: str, record: dict[str, Any]) -> None:
        remittances = record.get("remittances") or []
        deposits = record.get("bank_transactions") or []
        variance = record.get("variance") or {}
        payers = sorted({r["payer_id"] for r in remittances if r.get("payer_id")})
        fields: dict[str, str] = {
            "case_id": case_id,
            "outcome": record["record"],
            "entity": record.get("entity") or "",
            "payer": ",".join(payers),
            "rule": record.get("rule") or "",
            "confidence": "" if record.get("confidence") is None else str(record["confidence"]),
            "decided_at": record["decided_at"],
            "reason": variance.get("reason") or record.get("reason") or "",
            "variance_amount": variance.get("amount") or "",
            "age_business_days": str(record.get("age_business_days", "")),
            # Lineage: every event of the case with where it was read (file, record, offset).
            "remittances": orjson.dumps(remittances).decode(),
            "bank_transactions": orjson.dumps(deposits).decode(),
        }
        pipe.hset(self._case(case_id), mapping=fields)
        for item in (*remittances, *deposits):
            pipe.sadd(self._event(item["event_id"]), case_id)
            pipe.expire(self._event(item["event_id"]), self._ttl_s)
            trace = normalize_trace(item.get("trace_number") or item.get("bank_reference"))
            if trace:
                pipe.sadd(self._trace(trace), case_id)
                pipe.expire(self._trace(trace), self._ttl_s)

    def _confirmation(self, pipe: Any, case_id: str, record: dict[str, Any]) -> None:
        posting = record.get("posting") or {}
        # One field per confirmation event, with what it did: a replay rewrites it, never
        # appends a copy, and the status is derived from all of them when read, so it does
        # not depend on the order in which they were folded in.
        confirmed = {**posting, "outcome": record["record"], "decided_at": record["decided_at"]}
        fields = {
            "case_id": case_id,
            f"posting:{posting.get('event_id', '?')}": orjson.dumps(confirmed).decode(),
        }
        if record.get("idempotency_key"):
            fields["idempotency_key"] = record["idempotency_key"]
        if record["record"] == "orphan_posting":
            fields.update(outcome="orphan_posting", entity=record.get("entity") or "")
        pipe.hset(self._case(case_id), mapping=fields)

    # -- reading -------------------------------------------------------------------------------

    def get(self, case_id: str) -> dict[str, Any] | None:
        raw = self._redis.hgetall(self._case(case_id))
        if not raw:
            return None
        case = _view({str(k): str(v) for k, v in raw.items()})
        if case.get("outcome") == "unmatched" and case["status"] == "unmatched":
            superseding = self._superseding(case)
            if superseding:
                case["status"] = "superseded"
                case["superseded_by"] = superseding
        return case

    def _superseding(self, case: dict[str, Any]) -> list[str]:
        """An item a replay decided unmatched at the end of what it read, which a run also
        matched (with counterparts the replay did not read): the match stands."""
        others: set[str] = set()
        for item in (*case.get("remittances", []), *case.get("bank_transactions", [])):
            others |= {str(c) for c in self._redis.smembers(self._event(item["event_id"]))}
        others.discard(case["case_id"])
        return sorted(
            other
            for other in others
            if self._redis.hget(self._case(other), "outcome") in ("matched", "variance")
        )

    def by_trace(self, trace: str) -> list[dict[str, Any]]:
        normalized = normalize_trace(trace)
        if not normalized:
            return []
        ids = sorted(str(i) for i in self._redis.smembers(self._trace(normalized)))
        return [case for case in (self.get(i) for i in ids) if case is not None]

    def exceptions(self) -> list[dict[str, Any]]:
        """Every exception case still in the index (expired ones are pruned on the way)."""
        out: list[dict[str, Any]] = []
        for case_id in sorted(str(i) for i in self._redis.smembers(self._exceptions)):
            case = self.get(case_id)
            if case is None:
                self._redis.srem(self._exceptions, case_id)
            elif case["status"] in EXCEPTIONS:
                out.append(case)
        return out


def _view(raw: dict[str, str]) -> dict[str, Any]:
    """The stored hash as the API shows it: JSON fields decoded, the status derived."""
    case: dict[str, Any] = {}
    postings: list[Any] = []
    for name, value in raw.items():
        if name.startswith("posting:"):
            postings.append(orjson.loads(value))
        elif name in ("remittances", "bank_transactions"):
            case[name] = orjson.loads(value)
        else:
            case[name] = value
    case["postings"] = sorted(postings, key=lambda p: (p.get("posted_at") or "", p["event_id"]))
    if postings:  # the latest confirmation by the ERP's clock decides
        latest = case["postings"][-1]
        case["posting_status"] = latest["outcome"]
        case["posting_decided_at"] = latest["decided_at"]
    failed = "journal_failed" if case.get("journal_status") == "failed" else None
    case["status"] = case.get("posting_status") or failed or case.get("outcome") or "pending"
    return case
