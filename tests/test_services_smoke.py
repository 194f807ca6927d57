"""Smoke tests of the local servers (scripts/services.sh): a real Kafka broker and Redis.

They prove the servers do what remitflow's continuous mode relies on: topics can be created and
deleted, an idempotent producer's messages all arrive and in order per key, and Redis keeps the
SET NX semantics the ERP idempotency ledger is built on. Skipped unless REMITFLOW_SERVICES=1
(then a missing server is a failure) or both servers already answer. Loopback only.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer

# NewTopic is confluent_kafka.admin's public name, but its stub does not list the re-export.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

pytestmark = pytest.mark.services

BOOTSTRAP = os.environ.get("REMITFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9092").split(",")[0]
REDIS_URL = os.environ.get("REMITFLOW_REDIS_URL", "redis://127.0.0.1:6379/0")
TOPIC_PREFIX = os.environ.get("REMITFLOW_TOPIC_PREFIX", "remitflow")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MESSAGES = 100
KEYS = 7
TIMEOUT_S = 60.0


def _host_port(host: str | None, port: int | None, default_port: int) -> tuple[str, int]:
    if host not in LOOPBACK:
        raise ValueError(f"smoke tests only talk to loopback servers, not {host!r}")
    return host, port or default_port


_kafka_parts = urlsplit(f"//{BOOTSTRAP}")
KAFKA_ADDRESS = _host_port(_kafka_parts.hostname, _kafka_parts.port, 9092)
_redis_parts = urlsplit(REDIS_URL)
REDIS_ADDRESS = _host_port(_redis_parts.hostname, _redis_parts.port, 6379)


def _accepts(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=0.5).close()
    except OSError:
        return False
    return True


def _servers_wanted() -> bool:
    if os.environ.get("REMITFLOW_SERVICES") == "1":
        return True
    return _accepts(KAFKA_ADDRESS) and _accepts(REDIS_ADDRESS)


if not _servers_wanted():
    pytest.skip(
        "local servers not running (bash scripts/services.sh start; REMITFLOW_SERVICES=1)",
        allow_module_level=True,
    )


@pytest.fixture
def topic() -> Iterator[str]:
    """A fresh 4-partition topic, deleted afterwards (auto-creation is off on the broker)."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    name = f"{TOPIC_PREFIX}.smoke-{uuid.uuid4().hex[:12]}"
    created = admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])
    created[name].result(timeout=30)
    try:
        yield name
    finally:
        admin.delete_topics([name])[name].result(timeout=30)


def test_idempotent_producer_round_trip(topic: str) -> None:
    errors: list[KafkaError] = []
    delivered: list[tuple[int | None, int | None]] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append((message.partition(), message.offset()))

    producer = Producer(
        {"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "linger.ms": 5}
    )
    for seq in range(MESSAGES):
        producer.produce(topic, key=f"k{seq % KEYS}", value=str(seq), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(timeout=30) == 0
    assert errors == []
    assert len(set(delivered)) == MESSAGES

    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"{topic}-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    by_key: dict[str, list[int]] = {}
    received = 0
    deadline = time.monotonic() + TIMEOUT_S
    try:
        consumer.subscribe([topic])
        while received < MESSAGES and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            key, value = message.key(), message.value()
            assert key is not None and value is not None
            by_key.setdefault(key.decode(), []).append(int(value))
            received += 1
    finally:
        consumer.close()

    assert received == MESSAGES
    assert sorted(seq for values in by_key.values() for seq in values) == list(range(MESSAGES))
    # One key lives in one partition, and a partition keeps the producer's order.
    for name, values in by_key.items():
        assert values == sorted(values), name
    assert len(by_key) == KEYS


def test_redis_set_nx_round_trip() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    key = f"{TOPIC_PREFIX}:smoke:{uuid.uuid4().hex}"
    try:
        assert client.set(key, b"first", nx=True, ex=60) is True
        assert client.set(key, b"second", nx=True, ex=60) is None
        assert client.get(key) == b"first"
        assert client.delete(key) == 1
        assert client.get(key) is None
    finally:
        client.delete(key)
        client.close()
