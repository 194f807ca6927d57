"""The ERP idempotency ledger in Redis: each journal's idempotency key is posted once, ever.

Bytewax recovery replays the outputs since the last snapshot, and operators replay whole topics
after incidents; the ERP must not get a journal twice. Before a journal goes out its key is
claimed (``SET NX``, state ``pending``); once the ERP (or the erp-postings topic) acknowledged
it, the key is marked ``posted`` with the first response. A key already ``posted`` is skipped;
a key left ``pending`` by a crash between the two steps is sent again, and the receiver
recognises it by the same idempotency key (the HTTP adapter's ``Idempotency-Key`` header, the
topic's message key).
"""

from __future__ import annotations

import time
from typing import Literal

import orjson
import redis

State = Literal["new", "pending", "posted"]


class IdempotencyLedger:
    def __init__(self, url: str, prefix: str = "remitflow") -> None:
        self._redis = redis.Redis.from_url(url)
        self._prefix = f"{prefix}:erp:"

    def _key(self, idempotency_key: str) -> str:
        return self._prefix + idempotency_key

    def claim(self, idempotency_key: str) -> State:
        """``new`` when this call claimed the key; else the state another call left it in."""
        record = orjson.dumps({"status": "pending", "claimed_at": time.time()})
        if self._redis.set(self._key(idempotency_key), record, nx=True):
            return "new"
        raw = self._redis.get(self._key(idempotency_key))
        status = orjson.loads(raw)["status"] if raw else "pending"
        return "posted" if status == "posted" else "pending"

    def mark_posted(self, idempotency_key: str, response: str) -> None:
        record = {"status": "posted", "posted_at": time.time(), "response": response}
        self._redis.set(self._key(idempotency_key), orjson.dumps(record))

    def status(self, idempotency_key: str) -> dict[str, object] | None:
        raw = self._redis.get(self._key(idempotency_key))
        return orjson.loads(raw) if raw else None

    def keys(self) -> list[str]:
        n = len(self._prefix)
        return sorted(k.decode()[n:] for k in self._redis.scan_iter(match=self._prefix + "*"))
