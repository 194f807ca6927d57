"""The HTTP ERP adapter: one journal per request, keyed by its ``Idempotency-Key`` header.

The ERP is the one system remitflow must never post to twice, and HTTP fails in every way:
timeouts, 5xx, 429 with ``Retry-After``. So every request carries the journal's idempotency
key; ``2xx`` is posted; ``409`` (the ERP has this key already) counts as posted too; ``429``,
``5xx`` and transport errors are retried with capped exponential backoff and full jitter,
honouring ``Retry-After``; anything else, or a spent budget, is :class:`PostingFailed`, which
the caller turns into a ``post`` dead letter. The caller claims the key in the ledger before
and marks it after (:mod:`sinks.erp_ledger`), so a crash in between re-sends under the same key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


class PostingFailed(RuntimeError):
    """The ERP did not accept a journal within the retry budget (or refused it outright)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 10.0
    budget_s: float = 60.0  # all attempts of one journal together


class HttpErpAdapter:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._policy = policy or RetryPolicy()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)
        self._sleep = sleep
        self.attempts = 0

    def post(self, journal: dict[str, Any]) -> str:
        """Send one journal; return how the ERP acknowledged it (for the ledger)."""
        key = journal["idempotency_key"]
        body = orjson.dumps(journal)
        policy = self._policy
        started = time.monotonic()
        last = "no attempt"
        for attempt in range(1, policy.max_attempts + 1):
            self.attempts += 1
            wait: float | None = None
            try:
                response = self._client.post(
                    self._url, content=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError as exc:
                last = f"transport error: {type(exc).__name__}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return f"{status} {response.text[:200]}".strip()
                if status == 409:
                    return "409 already posted under this key"
                if status != 429 and status < 500:
                    raise PostingFailed(f"ERP refused the journal: HTTP {status}")
                last = f"HTTP {status}"
                wait = _retry_after(response.headers.get("Retry-After"))
            if attempt == policy.max_attempts:
                break
            backoff = random.uniform(0, min(policy.cap_s, policy.base_s * 2 ** (attempt - 1)))
            delay = max(backoff, wait or 0.0)
            if time.monotonic() - started + delay > policy.budget_s:
                break
            self._sleep(delay)
        raise PostingFailed(f"ERP did not accept the journal after {attempt} attempt(s): {last}")

    def close(self) -> None:
        self._client.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the delay form; dates are treated as absent)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
