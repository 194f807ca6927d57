"""Content-derived identities and PHI hashing.

An event's id must survive a re-sent file under another name, a bank reporting a transaction
again in its final previous-day file, and a replay: so it is a hash of content, never of a path
or a position. blake2b is in the standard library, fast, and keyed hashing is not needed here
(ids are not secrets); PHI, which must not be reversible by guessing, uses HMAC with a
deployment secret instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable

from remitflow.settings import SettingsError, read_secret

_DEV_SECRET = b"remitflow-development-secret-do-not-use-in-production"
PHI_SECRET_ENV = "REMITFLOW_PHI_SECRET"
PHI_SECRET_FILE_ENV = "REMITFLOW_PHI_SECRET_FILE"  # e.g. a Docker or Kubernetes secret
MIN_SECRET_BYTES = 16


class PhiSecretMissing(RuntimeError):
    """Production commands refuse to hash patient identifiers with a guessable key."""


def content_id(prefix: str, parts: Iterable[str]) -> str:
    """A stable id from ordered content parts (unit separator between them)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return f"{prefix}-{h.hexdigest()}"


def phi_secret(*, required: bool = False) -> bytes:
    """The deployment secret for PHI hashes, from the environment or a file it names.

    Without one, ``required`` (every command that feeds a deployment) raises
    :class:`PhiSecretMissing`; otherwise (the demo, tests) a fixed development value is used,
    whose hashes anyone could recompute. The secret itself is never logged or printed.
    """
    try:
        value = (read_secret(os.environ, PHI_SECRET_ENV) or "").encode()
    except SettingsError as exc:  # the file named is unreadable
        raise PhiSecretMissing(str(exc)) from None
    if value:
        if len(value) < MIN_SECRET_BYTES:
            raise PhiSecretMissing(
                f"the PHI secret is shorter than {MIN_SECRET_BYTES} bytes: use a random one"
            )
        return value
    if required:
        raise PhiSecretMissing(
            f"set {PHI_SECRET_ENV} (or {PHI_SECRET_FILE_ENV}): patient control numbers are "
            "hashed with it, and only `remitflow demo` runs with the development secret"
        )
    return _DEV_SECRET


class PhiHasher:
    """Keyed hash of patient identifiers (CLP01): joinable across systems, unreadable."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes | None = None) -> None:
        # Keyed once; each value hashes a copy (saves re-deriving the HMAC pads per claim).
        self._keyed = hmac.new(secret if secret is not None else phi_secret(), None, hashlib.sha256)

    def __call__(self, value: str) -> str:
        digest = self._keyed.copy()
        digest.update(value.encode("utf-8", "surrogatepass"))
        return "h:" + digest.hexdigest()[:32]


_TRACE_JUNK = re.compile(r"[\s\-_./\\]+")


def normalize_trace(trace: str | None) -> str:
    """Trace key for `trace_normalized`: case, whitespace, punctuation and leading zeros ignored.

    Banks and payers disagree on how a trace is written (``0012524965`` vs ``12524965``,
    ``1qg11111111`` vs ``1QG11111111``); the cascade tries the exact trace first, then this.
    """
    if not trace:
        return ""
    t = _TRACE_JUNK.sub("", trace).upper().lstrip("0")
    return t or "0"


RULE_VERSION = "r1"


def idempotency_key(
    entity: str | None, event_ids: Iterable[str], rule_version: str = RULE_VERSION
) -> str:
    """The ERP idempotency key of a case: the same case yields the same key on every replay.

    Built from the entity, the matching rule version and the sorted ids of the source events,
    so it depends on what was matched, not on when, where or in which order it was decided.
    """
    return content_id("idem", [entity or "", rule_version, *sorted(event_ids)])
