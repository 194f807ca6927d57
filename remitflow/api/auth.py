"""Who may read and resolve cases: bearer tokens for the API, sessions for the browser.

``REMITFLOW_API_TOKENS`` is a comma-separated list; an entry ``alice:tok1`` gives the token
``tok1`` the operator name ``alice`` (recorded with each resolution), a plain ``tok1`` is
``token-<n>`` by its place in the list. No token configured, no data: every request is refused.

Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
configured token (no early exit), so timing says nothing about how close a guess was. They
are never logged, and never stored: the browser exchanges one for a session (a random id in an
``HttpOnly``, ``SameSite=Strict`` cookie; Redis keeps the session under the id's digest, with
the operator, the token's digest, so that removing a token from the configuration ends its
sessions, and a CSRF token that every form posts back).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from remitflow.stores import redis_client

_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
SESSION_TTL_S = 8 * 3600  # a working day; then log in again
COOKIE = "remitflow_session"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    """The configured tokens, as digests, with the operator each one names."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._known: list[tuple[bytes, str]] = []
        for n, entry in enumerate(entries, start=1):
            name, sep, token = entry.strip().partition(":")
            if sep and token and _NAME.match(name):
                self._known.append((_digest(token), name))
            elif entry.strip():
                self._known.append((_digest(entry.strip()), f"token-{n}"))

    def __bool__(self) -> bool:
        return bool(self._known)

    def operator(self, token: str | None) -> str | None:
        """The operator ``token`` names, or None (also for no token at all)."""
        if not token:
            return None
        return self.operator_of_digest(_digest(token))

    def operator_of_digest(self, digest: bytes) -> str | None:
        found: str | None = None
        for known, name in self._known:
            if hmac.compare_digest(known, digest) and found is None:
                found = name
        return found


@dataclass(frozen=True)
class Session:
    operator: str
    csrf: str


class Sessions:
    """Browser sessions in Redis (``<prefix>:ui-session:<sha256 of the id>``)."""

    def __init__(self, url: str, prefix: str, tokens: Tokens, ttl_s: int = SESSION_TTL_S) -> None:
        self._redis = redis_client(url, decode_responses=True)
        self._prefix = f"{prefix}:ui-session:"
        self._tokens = tokens
        self.ttl_s = ttl_s

    def _key(self, session_id: str) -> str:
        return self._prefix + hashlib.sha256(session_id.encode()).hexdigest()

    def open(self, token: str) -> tuple[str, Session] | None:
        """A new session for a valid token: (the id for the cookie, the session)."""
        operator = self._tokens.operator(token)
        if operator is None:
            return None
        session_id = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32))
        key = self._key(session_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "operator": operator,
                    "token": _digest(token).hex(),
                    "csrf": session.csrf,
                },
            )
            pipe.expire(key, self.ttl_s)
            pipe.execute()
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        fields = self._redis.hgetall(self._key(session_id))
        if not fields:
            return None
        try:
            digest = bytes.fromhex(str(fields["token"]))
        except (KeyError, ValueError):
            return None
        operator = self._tokens.operator_of_digest(digest)  # the token may have been removed
        if operator is None:
            return None
        return Session(operator, str(fields.get("csrf", "")))

    def close(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 100:
            self._redis.delete(self._key(session_id))


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a posted CSRF token with the session's."""
    return bool(given) and hmac.compare_digest(_digest(given or ""), _digest(expected))
