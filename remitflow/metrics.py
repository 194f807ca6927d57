"""Prometheus metrics (DESIGN.md §6): one place that names them all, prefixed ``remitflow_``.

Labels are bounded enums (stream, outcome, rule, stage, result, reason class); never an id, a
payer name from bank text, or anything patient-related. Hot paths update them per batch, not
per item. ``remitflow run`` exposes them on ``REMITFLOW_METRICS_PORT``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("remitflow_events_in", "Canonical events read, per input stream", ["stream"])
OUTCOMES = Counter("remitflow_outcomes", "Items decided, per outcome and rule", ["outcome", "rule"])
DEAD_LETTERS = Counter("remitflow_dead_letters", "Dead letters written, per stage", ["stage"])
DUPLICATES = Counter("remitflow_duplicates", "Events seen again (re-sent files, replays)")
OPEN_ITEMS = Gauge("remitflow_open_items", "Items waiting for a counterpart, per worker")
EXCEPTION_AGE = Histogram(
    "remitflow_exception_age_business_days",
    "Age of unmatched items when decided",
    buckets=(0, 1, 2, 3, 5, 10, 20, 40),
)
DECISION_LATENCY = Histogram(
    "remitflow_decision_latency_seconds",
    "Arrival of a batch's items to their outcome being written",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
)
SOURCE_TO_POSTING = Histogram(
    "remitflow_source_to_posting_seconds",
    "A case's latest event time (its date) to the ERP's acknowledgement of its journal",
    buckets=(3600, 6 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400, 14 * 86400),
)
ERP_POST_ATTEMPTS = Counter(
    "remitflow_erp_post_attempts",
    "ERP post attempts, per result (posted, duplicate, retry, refused, failed, suppressed, "
    "conflict)",
    ["result"],
)
RETRY_QUEUE_DEPTH = Gauge(
    "remitflow_retry_queue_depth", "Journals waiting for an ERP retry in this process"
)
STORE_RETRIES = Counter(
    "remitflow_store_retries",
    "Operations retried because Redis or the broker did not answer",
    ["store"],
)
