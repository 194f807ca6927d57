"""The HTTP ERP adapter: one journal per request, keyed by its ``Idempotency-Key`` header.

The ERP is the one system remitflow must never post to twice, and HTTP fails in every way:
5xx, 429 with ``Retry-After``, answers slower than the timeout, connections dropped before or
after the ERP took the journal. A failed attempt never says whether the journal was posted, so
every attempt carries the journal's idempotency key and the ERP answers a key it has already
posted with ``409`` (or replays its first ``2xx``): both count as posted, so "accepted but the
response was lost" ends in one journal, never two. ``429``, ``5xx``, timeouts and transport
errors are retried with capped exponential backoff and full jitter, waiting at least what
``Retry-After`` asks (seconds or an HTTP date); each attempt's timeout is cut to what is left of
the budget, so one journal never holds the sink longer than the budget. Any other ``4xx``, or a
spent budget, is :class:`PostingFailed`, which the caller turns into a ``post`` dead letter. The
caller claims the key in the ledger before and marks it after (:mod:`sinks.erp_ledger`), so a
crash in between re-sends under the same key.

Every attempt counts once in ``remitflow_erp_post_attempts`` by its result: ``posted``,
``duplicate`` (409 or an idempotent replay), ``retry`` (failed, another attempt follows),
``refused`` (a 4xx other than 409/429) or ``failed`` (failed, and the budget is spent).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from remitflow.metrics import ERP_POST_ATTEMPTS, RETRY_QUEUE_DEPTH
from remitflow.settings import Settings

MIN_TIMEOUT_S = 0.05  # an attempt late in the budget still gets a chance to be answered


class PostingFailed(RuntimeError):
    """The ERP did not accept a journal within the retry budget (or refused it outright)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 10.0
    budget_s: float = 60.0  # all attempts of one journal together, waits included
    timeout_s: float = 10.0  # one attempt (each phase: connect, write, read)

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        """The deployment's policy (REMITFLOW_ERP_MAX_ATTEMPTS, _BUDGET_S, _TIMEOUT_S)."""
        return cls(
            max_attempts=settings.erp_max_attempts,
            budget_s=settings.erp_budget_s,
            timeout_s=settings.erp_timeout_s,
        )


class HttpErpAdapter:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float | None = None,  # overrides the policy's
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._policy = policy or RetryPolicy()
        self._timeout_s = self._policy.timeout_s if timeout_s is None else timeout_s
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._client = client or httpx.Client()
        self._sleep = sleep
        self.attempts = 0

    def post(self, journal: dict[str, Any]) -> str:
        """Send one journal; return how the ERP acknowledged it (for the ledger)."""
        key = journal["idempotency_key"]
        body = orjson.dumps(journal)
        headers = {**self._headers, "Idempotency-Key": key}
        policy = self._policy
        started = time.monotonic()
        for attempt in range(1, policy.max_attempts + 1):
            self.attempts += 1
            timeout = min(self._timeout_s, policy.budget_s - (time.monotonic() - started))
            retry_after: float | None = None
            try:
                response = self._client.post(
                    self._url,
                    content=body,
                    headers=headers,
                    timeout=max(MIN_TIMEOUT_S, timeout),
                )
            except httpx.RequestError as exc:  # timeout, dropped or refused connection
                last = f"transport error: {type(exc).__name__}"
            else:
                status = response.status_code
                if 200 <= status < 300 or status == 409:
                    replayed = status == 409 or _replayed(response)
                    ERP_POST_ATTEMPTS.labels(result="duplicate" if replayed else "posted").inc()
                    if status == 409:
                        return "409 already posted under this key"
                    return f"{status} {response.text[:200]}".strip()
                if status != 429 and status < 500:
                    ERP_POST_ATTEMPTS.labels(result="refused").inc()
                    raise PostingFailed(f"ERP refused the journal: HTTP {status}")
                last = f"HTTP {status}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == policy.max_attempts:
                break
            backoff = random.uniform(0, min(policy.cap_s, policy.base_s * 2 ** (attempt - 1)))
            delay = max(backoff, retry_after or 0.0)
            if time.monotonic() - started + delay >= policy.budget_s:
                last += f"; the next try would pass the {policy.budget_s:g} s budget"
                break
            ERP_POST_ATTEMPTS.labels(result="retry").inc()
            RETRY_QUEUE_DEPTH.inc()
            try:
                self._sleep(delay)
            finally:
                RETRY_QUEUE_DEPTH.dec()
        ERP_POST_ATTEMPTS.labels(result="failed").inc()
        raise PostingFailed(f"ERP did not accept the journal after {attempt} attempt(s): {last}")

    def close(self) -> None:
        self._client.close()


def _replayed(response: httpx.Response) -> bool:
    """A 2xx the ERP replays for a key it had already posted (the Stripe-style header)."""
    replayed: str = response.headers.get("Idempotent-Replayed", "")
    return replayed.strip().lower() == "true"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a delay in seconds or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
