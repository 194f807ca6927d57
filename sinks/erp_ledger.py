"""The ERP idempotency ledger in Redis: each journal is posted once, and each event's cash once.

Bytewax recovery replays the outputs since the last snapshot, and operators replay whole topics
after incidents; the ERP must not get a journal twice. Before a journal goes out its key is
claimed (state ``pending``); once the ERP (or the erp-postings topic) acknowledged it, the key
is marked ``posted`` with the first response. A key already ``posted`` is skipped; a key left
``pending`` by a crash between the two steps is sent again, and the receiver recognises it by
the same idempotency key (the HTTP adapter's ``Idempotency-Key`` header, the topic's message
key).

The key names the set of events a case holds, so it alone cannot stop the same cash from being
posted under two keys when a replay groups events differently from the live run (another
interleaving, or every rule deciding at the end). So the claim also records, per event, the key
that journals it; a claim naming an event already owned by another key is a ``conflict``, which
the sink dead-letters for an operator instead of posting. Both checks and all writes happen in
one Lua script, so concurrent claimers (a live run and a replay) cannot both win.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from remitflow.stores import redis_client

State = Literal["new", "pending", "posted", "conflict"]

# KEYS[1] = the journal's ledger key, KEYS[2..] = its events' owner keys; ARGV[1] = the
# idempotency key, ARGV[2] = the pending record. Returns {state, other key}.
_CLAIM = """
for i = 2, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] then
    return {'conflict', owner}
  end
end
local existing = redis.call('GET', KEYS[1])
if existing then
  local ok, decoded = pcall(cjson.decode, existing)
  if ok and decoded['status'] == 'posted' then
    return {'posted', ''}
  end
  return {'pending', ''}
end
redis.call('SET', KEYS[1], ARGV[2])
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1])
end
return {'new', ''}
"""


@dataclass(frozen=True)
class Claim:
    state: State
    other_key: str | None = None  # with ``conflict``: the key that already journals an event


class IdempotencyLedger:
    def __init__(self, url: str, prefix: str = "remitflow") -> None:
        self._redis = redis_client(url)
        self._prefix = f"{prefix}:erp:"
        self._owner = f"{prefix}:erp-event:"
        self._claim: Any = self._redis.register_script(_CLAIM)

    def _key(self, idempotency_key: str) -> str:
        return self._prefix + idempotency_key

    def claim(self, idempotency_key: str, event_ids: Sequence[str] = ()) -> Claim:
        """``new`` when this call claimed the key; else the state it was found in."""
        return self.claim_many([(idempotency_key, event_ids)])[0]

    def claim_many(self, journals: Sequence[tuple[str, Sequence[str]]]) -> list[Claim]:
        """:meth:`claim` for each ``(idempotency key, event ids)``, in order, in one round trip.

        Each claim is still its own script run: the same outcomes as claiming one by one,
        a key named twice included (the second finds it ``pending``).
        """
        record = orjson.dumps({"status": "pending", "claimed_at": time.time()})
        with self._redis.pipeline(transaction=False) as pipe:
            for key, event_ids in journals:
                keys = [self._key(key), *(self._owner + e for e in sorted(event_ids))]
                self._claim(keys=keys, args=[key, record], client=pipe)
            answers = pipe.execute()
        return [
            Claim(state.decode(), other.decode() if other else None) for state, other in answers
        ]

    def mark_posted(self, idempotency_key: str, response: str) -> None:
        self.mark_posted_many([idempotency_key], response)

    def mark_posted_many(self, idempotency_keys: Sequence[str], response: str) -> None:
        """Record each key as posted with ``response``, in one round trip."""
        record = orjson.dumps({"status": "posted", "posted_at": time.time(), "response": response})
        with self._redis.pipeline(transaction=False) as pipe:
            for key in idempotency_keys:
                pipe.set(self._key(key), record)
            pipe.execute()

    def status(self, idempotency_key: str) -> dict[str, object] | None:
        raw = self._redis.get(self._key(idempotency_key))
        return orjson.loads(raw) if raw else None

    def owner(self, event_id: str) -> str | None:
        """The idempotency key whose journal carries this event's cash, if any."""
        raw = self._redis.get(self._owner + event_id)
        return raw.decode() if isinstance(raw, bytes) else raw

    def keys(self) -> list[str]:
        n = len(self._prefix)
        return sorted(k.decode()[n:] for k in self._redis.scan_iter(match=self._prefix + "*"))
