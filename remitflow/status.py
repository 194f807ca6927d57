"""``remitflow status``: what an operator on call wants to see first, in one screen.

* Open exceptions (from the case index) by age in Fed business days, by reason and by entity,
  and the oldest one.
* ERP journals (from the idempotency ledger): how many are posted, how many are claimed but not
  acknowledged (``pending``: a crash between claim and acknowledgement, or an ERP retrying), and
  when the last one was posted.
* Input lag of the dataflow: Bytewax keeps its input offsets in its recovery store, not in a
  consumer group, so the lag is each input partition's end less the offset of the store's
  latest snapshot (an epoch old at most). It needs the store (``REMITFLOW_RECOVERY_DIR``), so
  it is only shown where ``run`` keeps it; elsewhere the report says so.

The ledger is read with ``SCAN``: a few seconds for hundreds of thousands of journals.
"""

from __future__ import annotations

import io
import pickle
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from remitflow.settings import Settings, Topics
from remitflow.stores import kafka_config, redis_client, safe_url
from state.case_index import CaseIndex, age_business_days, exception_reason, opened_on

# Fed business days: inside the ERA release window, late (DESIGN.md §1), then weeks.
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-3", 0, 3),
    ("4-9", 4, 9),
    ("10-19", 10, 19),
    ("20+", 20, None),
)
_OFFSET_BEGINNING = -2  # a partition the dataflow has read nothing of yet


def status_report(
    settings: Settings, *, as_of: date | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Everything :func:`render_status` prints, as JSON-ready data."""
    moment = now or datetime.now(UTC)
    day = as_of or moment.date()
    return {
        "generated_at": moment.isoformat(),
        "topic_prefix": settings.topic_prefix,
        "redis": safe_url(settings.redis_url),
        "exceptions": exceptions_summary(CaseIndex(settings.redis_url, settings.topic_prefix), day),
        "journals": journals_summary(settings),
        "lag": input_lag(settings),
    }


# -- exceptions --------------------------------------------------------------------------------


def _bucket(age: int) -> str:
    for name, low, high in AGE_BUCKETS:
        if age >= low and (high is None or age <= high):
            return name
    return AGE_BUCKETS[-1][0]


def exceptions_summary(cases: CaseIndex, as_of: date) -> dict[str, Any]:
    open_cases = cases.exceptions()
    by_age: Counter[str] = Counter({name: 0 for name, _, _ in AGE_BUCKETS})
    by_reason: Counter[str] = Counter()
    by_entity: Counter[str] = Counter()
    oldest: dict[str, Any] | None = None
    for case in open_cases:
        age = age_business_days(case, as_of)
        by_age[_bucket(age)] += 1
        by_reason[exception_reason(case)] += 1
        by_entity[case.get("entity") or "?"] += 1
        opened = opened_on(case)
        if opened is not None and (oldest is None or opened.isoformat() < oldest["opened_on"]):
            oldest = {
                "case_id": case["case_id"],
                "opened_on": opened.isoformat(),
                "age_business_days": age,
                "reason": exception_reason(case),
            }
    return {
        "as_of": as_of.isoformat(),
        "open": len(open_cases),
        "by_age_business_days": dict(by_age),
        "by_reason": dict(by_reason.most_common()),
        "by_entity": dict(sorted(by_entity.items())),
        "oldest": oldest,
    }


# -- journals ----------------------------------------------------------------------------------


def _ledger_entries(settings: Settings, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry of the ERP idempotency ledger (:mod:`sinks.erp_ledger`: one string per key
    under ``<prefix>:erp:``)."""
    client = redis_client(settings.redis_url)
    keys: list[bytes] = []

    def fetch(chunk: list[bytes]) -> Iterator[dict[str, Any]]:
        for raw in client.mget(chunk):
            if raw:
                try:
                    yield orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue

    for key in client.scan_iter(match=f"{settings.topic_prefix}:erp:*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            yield from fetch(keys)
            keys = []
    if keys:
        yield from fetch(keys)


def journals_summary(settings: Settings) -> dict[str, Any]:
    posted = pending = 0
    last_posted: float | None = None
    oldest_pending: float | None = None
    for entry in _ledger_entries(settings):
        if entry.get("status") == "posted":
            posted += 1
            at = entry.get("posted_at")
            if isinstance(at, int | float) and (last_posted is None or at > last_posted):
                last_posted = float(at)
        else:
            pending += 1
            at = entry.get("claimed_at")
            if isinstance(at, int | float) and (oldest_pending is None or at < oldest_pending):
                oldest_pending = float(at)
    return {
        "posted": posted,
        "pending": pending,
        "last_posted_at": _iso(last_posted),
        "oldest_pending_claimed_at": _iso(oldest_pending),
    }


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


# -- lag ---------------------------------------------------------------------------------------


class _OffsetsOnly(pickle.Unpickler):
    """Input snapshots are plain ints; anything else in the file is not unpickled."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"not an offset: {module}.{name}")


def snapshot_offsets(recovery_dir: Path, step: str = "remitflow.kafka_in") -> dict[str, int]:
    """``<partition>-<topic> → next offset`` of the latest snapshot in a Bytewax recovery
    store (its ``part-*.sqlite3`` files), read-only."""
    latest: dict[str, tuple[int, int]] = {}
    for part in sorted(recovery_dir.glob("part-*.sqlite3")):
        connection = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5)
        try:
            rows = connection.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ?", (step,)
            ).fetchall()
        except sqlite3.DatabaseError:
            continue
        finally:
            connection.close()
        for key, epoch, blob in rows:
            if blob is None:
                continue
            try:
                offset = _OffsetsOnly(io.BytesIO(blob)).load()
            except (pickle.UnpicklingError, EOFError, ValueError):
                continue
            if isinstance(offset, int) and (key not in latest or epoch > latest[key][0]):
                latest[key] = (int(epoch), offset)
    return {key: offset for key, (_, offset) in latest.items()}


def input_lag(settings: Settings, timeout_s: float = 5.0) -> dict[str, Any]:
    """Messages of the input topics the dataflow has not snapshotted past, per topic."""
    recovery = settings.recovery_dir
    if not any(recovery.glob("part-*.sqlite3")):
        return {
            "available": False,
            "why": f"no recovery store at {recovery}: run status where `remitflow run` keeps "
            "REMITFLOW_RECOVERY_DIR (Bytewax keeps input offsets there, not in Kafka)",
        }
    offsets = snapshot_offsets(recovery)
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(kafka_config(settings.kafka_bootstrap, **{"group.id": "remitflow-status"}))
    per_topic: dict[str, int] = {}
    try:
        for topic in Topics(settings.topic_prefix).inputs:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            lag = 0
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s
                )
                at = offsets.get(f"{partition}-{topic}", _OFFSET_BEGINNING)
                lag += max(0, high - (low if at < 0 else max(at, low)))
            per_topic[topic] = lag
    except KafkaException as exc:
        return {"available": False, "why": f"Kafka: {exc.args[0].str()}"}
    finally:
        consumer.close()
    return {"available": True, "total": sum(per_topic.values()), "by_topic": per_topic}


# -- rendering ---------------------------------------------------------------------------------


def render_status(report: dict[str, Any]) -> str:
    """The report as a terminal screen."""
    exc = report["exceptions"]
    journals = report["journals"]
    lag = report["lag"]
    generated = datetime.fromisoformat(report["generated_at"])
    lines = [
        f"remitflow status · prefix {report['topic_prefix']} · "
        f"{generated.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        f"Open exceptions: {exc['open']}  (ages in Fed business days as of {exc['as_of']})",
        "  by age     " + "   ".join(f"{k}: {v}" for k, v in exc["by_age_business_days"].items()),
    ]
    if exc["by_reason"]:
        lines.append("  by reason  " + ", ".join(f"{k} {v}" for k, v in exc["by_reason"].items()))
    if exc["by_entity"]:
        lines.append("  by entity  " + ", ".join(f"{k} {v}" for k, v in exc["by_entity"].items()))
    if exc["oldest"]:
        o = exc["oldest"]
        lines.append(
            f"  oldest     {o['case_id']} ({o['reason']}, since {o['opened_on']}, "
            f"{o['age_business_days']} business days)"
        )
    lines += [
        "",
        f"ERP journals: {journals['posted']} posted, {journals['pending']} pending",
        f"  last posted   {_when(journals['last_posted_at'], generated)}",
    ]
    if journals["pending"]:
        lines.append(
            f"  oldest pending claimed {_when(journals['oldest_pending_claimed_at'], generated)}"
            " (sent again by the next replay; the receiver dedupes by key)"
        )
    lines.append("")
    if lag["available"]:
        lines.append(f"Input lag: {lag['total']} message(s) not yet snapshotted past")
        lines += [f"  {topic}: {n}" for topic, n in lag["by_topic"].items()]
    else:
        lines.append(f"Input lag: unavailable — {lag['why']}")
    return "\n".join(lines) + "\n"


def _when(iso: str | None, now: datetime) -> str:
    if iso is None:
        return "never"
    at = datetime.fromisoformat(iso)
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 120:
        ago = f"{seconds} s ago"
    elif seconds < 7200:
        ago = f"{seconds // 60} min ago"
    elif seconds < 172_800:
        ago = f"{seconds // 3600} h ago"
    else:
        ago = f"{seconds // 86_400} days ago"
    return f"{at.strftime('%Y-%m-%d %H:%M:%S UTC')} ({ago})"
