"""Prometheus metrics (DESIGN.md §6): one place that names them all, prefixed ``remitflow_``.

Labels are bounded enums (stream, outcome, rule, stage, source system, result, variance reason,
and payer: a payer id from reference data, else ``other`` or ``unknown``); never an event or
case id, a payer name from bank text, or anything patient-related. The dataflow updates them
once per batch (:mod:`dataflows.instrument`); :mod:`remitflow.metrics_server` serves them.

Gauges declare how worker processes add up (``multiprocess_mode``): with ``--processes N`` each
worker writes its values to files that the serving process sums (prometheus_client's
multiprocess mode); a single process ignores the mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

STREAMS = ("remittance", "bank_transaction", "posting")

EVENTS_IN = Counter(
    "remitflow_events_in",
    "Canonical events that entered the dataflow, per input stream (dead letters excluded)",
    ["stream"],
)
OUTCOMES = Counter(
    "remitflow_outcomes",
    "Items decided, per outcome and rule: one per audit record (remittances, bank lines and "
    "ERP confirmations; rule none when the outcome has none)",
    ["outcome", "rule"],
)
PAYER_OUTCOMES = Counter(
    "remitflow_payer_outcomes",
    "Remittances and bank lines decided, per stream, payer and outcome; payer is a reference "
    "data payer id, other (an id reference data does not know) or unknown (not recognised)",
    ["stream", "payer", "outcome"],
)
DEAD_LETTERS = Counter(
    "remitflow_dead_letters",
    "Dead letters written, per stage (parse, validate, match, post) and source system",
    ["stage", "system"],
)
DUPLICATES = Counter("remitflow_duplicates", "Events seen again (re-sent files, replays)")
OPEN_ITEMS = Gauge(
    "remitflow_open_items",
    "Remittances and bank lines waiting for a counterpart in the match step's state",
    ["stream"],
    multiprocess_mode="livesum",  # the cluster's total, over the worker processes alive
)
EXCEPTION_AGE = Histogram(
    "remitflow_exception_age_business_days",
    "Age in business days of items decided unmatched (the age_business_days of their records), "
    "per stream",
    ["stream"],
    buckets=(0, 1, 2, 3, 5, 10, 20, 40),
)
VARIANCE_AMOUNT = Histogram(
    "remitflow_variance_amount_dollars",
    "Size of variance cases, |bank - remittance| in dollars, per reason "
    "(fee, amount_mismatch, remit_unbalanced)",
    ["reason"],
    buckets=(0.01, 1, 5, 10, 25, 50, 100, 500, 1_000, 5_000, 10_000, 50_000),
)
DECISION_LATENCY = Histogram(
    "remitflow_decision_latency_seconds",
    "Matched and variance cases: wall-clock seconds from the arrival at the match step of the "
    "case's last item (its last counterpart) to the case's decision leaving the match step "
    "(0 when decided on arrival; queueing before the match step and the sink's write are not "
    "included; items restored from a snapshot have no arrival time and are not observed)",
    buckets=(0.01, 0.1, 1, 5, 30, 120, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400),
)
SOURCE_TO_POSTING = Histogram(
    "remitflow_source_to_posting_seconds",
    "From a case's event date (its journal's decided_at: midnight UTC of the business day its "
    "last item is dated or its window closed) to the wall-clock time the ERP acknowledged the "
    "journal (the erp-postings topic's broker, or the HTTP ERP)",
    buckets=(
        3600,
        6 * 3600,
        86400,
        2 * 86400,
        4 * 86400,
        7 * 86400,
        14 * 86400,
        30 * 86400,
        90 * 86400,
        365 * 86400,
    ),
)
ERP_POST_ATTEMPTS = Counter(
    "remitflow_erp_post_attempts",
    "ERP post attempts, per result (posted, duplicate, retry, refused, failed, suppressed, "
    "conflict)",
    ["result"],
)
RETRY_QUEUE_DEPTH = Gauge(
    "remitflow_retry_queue_depth",
    "Journals waiting for an ERP retry",
    multiprocess_mode="livesum",
)
STORE_RETRIES = Counter(
    "remitflow_store_retries",
    "Operations retried because Redis or the broker did not answer",
    ["store"],
)

# Bounded label values bound up front, so their series exist (at 0) from a process's start:
# rate() and alerts then see a zero rather than nothing.
for _result in ("posted", "duplicate", "retry", "refused", "failed", "suppressed", "conflict"):
    ERP_POST_ATTEMPTS.labels(result=_result)
for _store in ("redis", "kafka"):
    STORE_RETRIES.labels(store=_store)
for _stage, _system in (
    ("parse", "bai2"),
    ("parse", "camt053"),
    ("parse", "postings"),
    ("parse", "x12-835"),
    ("parse", "unknown"),
    ("validate", "kafka"),
    ("post", "erp"),
    ("post", "remitflow"),
):
    DEAD_LETTERS.labels(stage=_stage, system=_system)

# Source systems a dead letter can name (remitflow.events.Source.system); others count as other.
SYSTEMS = frozenset(
    {"bai2", "camt053", "postings", "x12-835", "kafka", "erp", "remitflow", "unknown"}
)


def system_label(record: Mapping[str, Any]) -> str:
    """The bounded source-system label of a dead-letter record."""
    source = record.get("source")
    system = source.get("system") if isinstance(source, Mapping) else None
    return system if system in SYSTEMS else "other"


def dead_letter_written(record: Mapping[str, Any]) -> None:
    """A dead letter a sink wrote itself (the dataflow counts those that pass through it)."""
    DEAD_LETTERS.labels(stage=record.get("stage") or "other", system=system_label(record)).inc()


def journals_acknowledged(journals: Iterable[Mapping[str, Any]], *, count_posted: bool) -> None:
    """Journals the ERP acknowledged just now: their source-to-posting latency, and (for the
    topic adapter, whose acknowledgement is the broker's) one ``posted`` attempt each; the HTTP
    adapter counts its own attempts."""
    now = datetime.now(UTC).timestamp()
    posted = 0
    for journal in journals:
        posted += 1
        decided = journal.get("decided_at")
        if isinstance(decided, str):
            SOURCE_TO_POSTING.observe(max(0.0, now - datetime.fromisoformat(decided).timestamp()))
    if count_posted and posted:
        ERP_POST_ATTEMPTS.labels(result="posted").inc(posted)
