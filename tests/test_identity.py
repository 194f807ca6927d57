"""Identities and PHI hashing."""

from __future__ import annotations

import hashlib
import hmac

from remitflow.identity import PhiHasher, content_id, idempotency_key, normalize_trace


def test_phi_hash_is_hmac_sha256_with_the_secret() -> None:
    expected = hmac.new(b"secret", b"5554555444", hashlib.sha256).hexdigest()[:32]
    hasher = PhiHasher(b"secret")
    assert hasher("5554555444") == "h:" + expected
    assert hasher("5554555444") == hasher("5554555444")  # the keyed state is not consumed
    assert PhiHasher(b"other")("5554555444") != hasher("5554555444")


def test_trace_normalisation() -> None:
    assert normalize_trace("0012524965") == normalize_trace("12524965") == "12524965"
    assert normalize_trace(" 1qg-1111 1111 ") == "1QG11111111"
    assert normalize_trace("000") == "0"
    assert normalize_trace(None) == ""


def test_content_id_separates_parts() -> None:
    assert content_id("x", ["ab", "c"]) != content_id("x", ["a", "bc"])
    assert content_id("x", ["a"]).startswith("x-")


def test_idempotency_key_ignores_order_not_content() -> None:
    a = idempotency_key("NORTH", ["rem-1", "bank-2"])
    assert a == idempotency_key("NORTH", ["bank-2", "rem-1"])
    assert a != idempotency_key("SOUTH", ["rem-1", "bank-2"])
    assert a != idempotency_key("NORTH", ["rem-1", "bank-3"])
    assert a != idempotency_key("NORTH", ["rem-1", "bank-2"], rule_version="r2")
