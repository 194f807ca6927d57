"""The case index in Redis: where each case stands, found by case id or trace number.

Finance operators ask "what happened to EFT 1234567890?" and "which exceptions are open for this
payer?"; the output topics answer neither without a scan. Every record the continuous dataflow
emits is folded into one Redis hash per case (``<prefix>:case:<case_id>``), plus sets of case
ids per normalised trace number, per normalised bank reference, per payer id (and per payer id
and case date, for date ranges) and one set of exception cases; ``remitflow serve`` reads them.
Operator resolutions (:mod:`remitflow.resolutions`) reach the index the same way, as
``resolution`` records in the audit stream, and are folded into each case they touch.

Writes must be idempotent and order-free, because Bytewax replays outputs since its last
snapshot, operators replay whole topics, and a case's decision and its ERP confirmation leave
from different workers. So the decision and each confirmation write disjoint fields (a replayed
decision never overwrites "posted"), every write of the same record writes the same values, and
the status is derived when read: the latest confirmation's outcome (by the ERP's time), else
``journal_failed``, else ``resolved`` for a case an operator resolved (the decision stays as it
was), else the decision's. Secondary indexes are sets only (a member added twice is one member;
a case whose records disagree on its date is found under both dates), never scores that the
last writer would decide.

No PHI is kept: records quote only event ids, trace numbers, payer ids, amounts and sources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import orjson

from remitflow.calendar import add_business_days, business_days_between
from remitflow.identity import normalize_trace
from remitflow.stores import redis_client

DECISIONS = frozenset({"matched", "variance", "unmatched"})
CONFIRMATIONS = frozenset(
    {"posted", "posting_rejected", "posting_reversed", "duplicate_posting", "orphan_posting"}
)
# What finance operators must work: everything but a clean match and a clean posting.
EXCEPTIONS = frozenset({"variance", "unmatched", "journal_failed", *CONFIRMATIONS} - {"posted"})
RESOLUTION = "resolution"  # an operator's resolution (remitflow.resolutions), via the audit stem
DEFAULT_TTL_DAYS = 400  # a fiscal year and its audit; every write of a case renews it


class _Coalesced:
    """A pipeline front that merges a batch's set additions and expiries per key.

    ``sadd`` and ``expire`` are only collected; :meth:`flush` sends one SADD per key with
    every member and one EXPIRE per key (the last TTL asked, all equal here). The end state is
    the same as sending each: set union and TTL renewal commute. Hash writes pass through.
    """

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._members: dict[str, list[str]] = {}
        self._ttl: dict[str, int] = {}

    def hset(self, key: str, *, mapping: Mapping[str, str]) -> None:
        self._pipe.hset(key, mapping=mapping)

    def sadd(self, key: str, member: str) -> None:
        self._members.setdefault(key, []).append(member)

    def expire(self, key: str, seconds: int) -> None:
        self._ttl[key] = seconds

    def flush(self) -> None:
        for key, members in self._members.items():
            self._pipe.sadd(key, *dict.fromkeys(members))
        for key, seconds in self._ttl.items():
            self._pipe.expire(key, seconds)
        self._members.clear()
        self._ttl.clear()


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

    def _bank_reference(self, reference: str) -> str:
        return f"{self._prefix}:bankref:{reference}"

    def _payer(self, payer: str) -> str:
        return f"{self._prefix}:payer:{payer}"

    def _payer_days(self, payer: str) -> str:
        return f"{self._prefix}:payer-days:{payer}"

    def _payer_day(self, payer: str, day: str) -> str:
        return f"{self._prefix}:payer-day:{payer}:{day}"

    @property
    def _exceptions(self) -> str:
        return f"{self._prefix}:exceptions"

    # -- writing -------------------------------------------------------------------------------

    def apply(self, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Fold one batch of ``(stem, record)`` outputs in; returns the cases touched."""
        touched: set[str] = set()
        with self._redis.pipeline(transaction=False) as redis_pipe:
            # Index sets are written once per batch: one SADD of all their new members and one
            # EXPIRE each, however many cases of the batch name the same payer or day.
            pipe = _Coalesced(redis_pipe)
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
                elif kind == RESOLUTION:
                    touched |= self._resolution(pipe, case_id, record)
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
            pipe.flush()
            redis_pipe.execute()
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
        for deposit in deposits:
            reference = normalize_trace(deposit.get("bank_reference"))
            if reference:
                self._add(pipe, self._bank_reference(reference), case_id)
        day = case_day(record)
        for payer in payers:
            self._add(pipe, self._payer(payer), case_id)
            if day is not None:
                self._add(pipe, self._payer_days(payer), day.isoformat())
                self._add(pipe, self._payer_day(payer, day.isoformat()), case_id)

    def _add(self, pipe: Any, key: str, member: str) -> None:
        pipe.sadd(key, member)
        pipe.expire(key, self._ttl_s)

    def _resolution(self, pipe: Any, case_id: str, record: dict[str, Any]) -> set[str]:
        """Who resolved what, and why, on the case it made and on each case it resolved."""
        resolution = {k: v for k, v in record.items() if k != "record"}
        value = orjson.dumps(resolution, option=orjson.OPT_SORT_KEYS).decode()
        cases = {case_id, *(str(c) for c in record.get("resolves") or ())}
        for cid in sorted(cases):
            pipe.hset(self._case(cid), mapping={"case_id": cid, RESOLUTION: value})
            pipe.expire(self._case(cid), self._ttl_s)
        return cases

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
        return self.get_many([case_id])[0]

    def get_many(self, case_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The cases (``None`` where there is none), in three round trips whatever their
        number: the hashes, then the cases of the events of unmatched ones, then the outcomes
        of those (a superseded item is an unmatched one that another case matched)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for case_id in case_ids:
                pipe.hgetall(self._case(case_id))
            raws = pipe.execute()
        cases = [_view({str(k): str(v) for k, v in raw.items()}) if raw else None for raw in raws]
        unmatched = [
            c for c in cases if c and c.get("outcome") == "unmatched" and c["status"] == "unmatched"
        ]
        if unmatched:
            self._mark_superseded(unmatched)
        return cases

    def _mark_superseded(self, cases: list[dict[str, Any]]) -> None:
        """An item a replay decided unmatched at the end of what it read, which a run also
        matched (with counterparts the replay did not read): the match stands."""
        events = [
            [
                item["event_id"]
                for item in (*c.get("remittances", []), *c.get("bank_transactions", []))
            ]
            for c in cases
        ]
        with self._redis.pipeline(transaction=False) as pipe:
            for ids in events:
                for event_id in ids:
                    pipe.smembers(self._event(event_id))
            members = iter(pipe.execute())
        others: list[set[str]] = []
        for case, ids in zip(cases, events, strict=True):
            found: set[str] = set()
            for _ in ids:
                found |= {str(m) for m in next(members)}
            found.discard(case["case_id"])
            others.append(found)
        candidates = sorted(set().union(*others))
        if not candidates:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for other in candidates:
                pipe.hget(self._case(other), "outcome")
            outcome = dict(zip(candidates, pipe.execute(), strict=True))
        for case, found in zip(cases, others, strict=True):
            superseding = sorted(o for o in found if outcome[o] in ("matched", "variance"))
            if superseding:
                case["status"] = "superseded"
                case["superseded_by"] = superseding

    def by_trace(self, trace: str) -> list[dict[str, Any]]:
        return self._members(self._trace, trace)

    def by_bank_reference(self, reference: str) -> list[dict[str, Any]]:
        """Cases with a deposit of this bank reference (written however the bank writes it)."""
        return self._members(self._bank_reference, reference)

    def _members(self, key: Any, value: str) -> list[dict[str, Any]]:
        normalized = normalize_trace(value)
        if not normalized:
            return []
        ids = sorted(str(i) for i in self._redis.smembers(key(normalized)))
        return [case for case in self.get_many(ids) if case is not None]

    def by_payer(
        self, payer: str, start: date | None = None, end: date | None = None
    ) -> list[tuple[date | None, str]]:
        """``(case date, case id)`` of the payer's cases (TRN03 as the ERA wrote it) in date
        order; with ``start``/``end`` (inclusive) only those dated within. A case indexed under
        several dates is listed once, at its earliest."""
        payer = payer.strip()
        if not payer:
            return []
        if start is None and end is None:
            dated: dict[str, date | None] = {
                str(c): None for c in self._redis.smembers(self._payer(payer))
            }
        else:
            dated = {}
        days = sorted(
            d
            for d in (
                date.fromisoformat(str(m)) for m in self._redis.smembers(self._payer_days(payer))
            )
            if (start is None or d >= start) and (end is None or d <= end)
        )
        if days:
            with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.smembers(self._payer_day(payer, day.isoformat()))
                found = pipe.execute()
            for day, members in zip(days, found, strict=True):
                for member in members:
                    current = dated.get(str(member))
                    if current is None or day < current:
                        dated[str(member)] = day
        return sorted(((d, c) for c, d in dated.items()), key=lambda dc: (dc[0] or date.max, dc[1]))

    def exceptions(self) -> list[dict[str, Any]]:
        """Every exception case still in the index (expired ones are pruned on the way)."""
        ids = sorted(str(i) for i in self._redis.smembers(self._exceptions))
        out: list[dict[str, Any]] = []
        for case_id, case in zip(ids, self.get_many(ids), strict=True):
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
    resolved = None
    if RESOLUTION in case:
        case[RESOLUTION] = orjson.loads(case[RESOLUTION])
        # An operator decided: the old unmatched cases, and a variance the operator accepted,
        # leave the queue; a case the operator matched shows as matched, then posted.
        resolved = "matched" if case.get("outcome") == "matched" else "resolved"
    outcome = case.get("outcome")
    case["status"] = case.get("posting_status") or failed or resolved or outcome or "pending"
    return case


# -- dates and ages (views of a record or of a case as :meth:`CaseIndex.get` returns it) ------


def case_day(case: Mapping[str, Any]) -> date | None:
    """The date a case is filed under: its earliest deposit's value date; for an unmatched
    remittance the ERA's own date (the decision's date less the age it had then); else the
    date it was decided on. Every record of a case gives the same date, whichever run wrote it."""
    deposits = [d.get("value_date") for d in case.get("bank_transactions") or ()]
    values = [date.fromisoformat(v) for v in deposits if v]
    if values:
        return min(values)
    decided = case.get("decided_at")
    if not decided:
        return None
    day = datetime.fromisoformat(str(decided)).date()
    age = case.get("age_business_days")
    if case.get("outcome", case.get("record")) == "unmatched" and age not in (None, "", 0, "0"):
        return add_business_days(day, -int(age))
    return day


def exception_reason(case: Mapping[str, Any]) -> str:
    """What an exception is about: the ERP's or the sink's word for those they raised, else
    the variance or unmatched reason of the decision."""
    status = str(case["status"])
    if status == "journal_failed" or status in CONFIRMATIONS:
        return status
    return str(case.get("reason") or status)


def opened_on(case: Mapping[str, Any]) -> date | None:
    """Since when a case has been an exception: an ERP confirmation's date for the exceptions
    the ERP raised (rejections, reversals, duplicates, orphans), else the case's date."""
    if case.get("status") in CONFIRMATIONS and case.get("posting_decided_at"):
        return datetime.fromisoformat(str(case["posting_decided_at"])).date()
    return case_day(case)


def age_business_days(case: Mapping[str, Any], as_of: date) -> int:
    """Fed business days from :func:`opened_on` to ``as_of`` (0 when opened later)."""
    opened = opened_on(case)
    return 0 if opened is None else max(0, business_days_between(opened, as_of))
