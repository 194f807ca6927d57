"""Clients of the servers (Kafka, Redis), their security settings, and waiting out a restart.

Every Kafka client remitflow makes takes its settings from :func:`kafka_config`: the
bootstrap servers plus, from the environment, ``REMITFLOW_KAFKA_SECURITY_PROTOCOL``
(``SASL_SSL``, ``SSL``, ...), ``REMITFLOW_KAFKA_SASL_MECHANISM``, ``REMITFLOW_KAFKA_SASL_USERNAME``,
``REMITFLOW_KAFKA_SASL_PASSWORD`` (or ``..._FILE``), ``REMITFLOW_KAFKA_SSL_CA_LOCATION``,
``REMITFLOW_KAFKA_SSL_CERTIFICATE_LOCATION``, ``REMITFLOW_KAFKA_SSL_KEY_LOCATION`` and
``REMITFLOW_KAFKA_SSL_KEY_PASSWORD`` (or ``..._FILE``) for mTLS. Secrets are read when a
client is made and never printed.

Every Redis client remitflow makes comes from :func:`redis_client`, so that timeouts, AUTH and
TLS are set in one place: the URL carries the scheme (``rediss://`` for TLS), user and database;
a password may instead come from ``REMITFLOW_REDIS_PASSWORD`` or a file named by
``REMITFLOW_REDIS_PASSWORD_FILE`` (a mounted secret), and a private CA from
``REMITFLOW_REDIS_CA_FILE``. :func:`safe_url` is the only form of the URL that may be printed.

A Redis or broker restart must not stop a 24/7 run, and must never let the ERP sink post a
journal it could not record first: :func:`retrying` re-runs an operation while the server does
not answer (capped backoff, counted in ``remitflow_store_retries``) and gives up loudly after
``REMITFLOW_STORE_WAIT_S`` seconds, when recovery takes over.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from remitflow.metrics import STORE_RETRIES
from remitflow.settings import read_secret

T = TypeVar("T")
log = logging.getLogger("remitflow.stores")
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def _secret(name: str) -> str | None:
    return read_secret(os.environ, name)


# librdkafka property ← environment variable (passwords may come from a ``_FILE`` instead).
_KAFKA_SECURITY = {
    "security.protocol": "REMITFLOW_KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "REMITFLOW_KAFKA_SASL_MECHANISM",
    "sasl.username": "REMITFLOW_KAFKA_SASL_USERNAME",
    "sasl.password": "REMITFLOW_KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "REMITFLOW_KAFKA_SSL_CA_LOCATION",
    "ssl.certificate.location": "REMITFLOW_KAFKA_SSL_CERTIFICATE_LOCATION",
    "ssl.key.location": "REMITFLOW_KAFKA_SSL_KEY_LOCATION",
    "ssl.key.password": "REMITFLOW_KAFKA_SSL_KEY_PASSWORD",
}


def kafka_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings for a client of ``bootstrap``, with the deployment's security."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    for prop, variable in _KAFKA_SECURITY.items():
        value = _secret(variable)
        if value:
            config[prop] = value
    return {**config, **overrides}


def redis_client(url: str, *, decode_responses: bool = False) -> redis.Redis:
    options: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
    }
    password = _secret("REMITFLOW_REDIS_PASSWORD")
    if password:
        options["password"] = password
    ca = os.environ.get("REMITFLOW_REDIS_CA_FILE")
    if ca:
        options["ssl_ca_certs"] = ca
    return redis.Redis.from_url(url, **options)


def safe_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def wait_budget_s() -> float:
    try:
        return max(0.0, float(os.environ.get("REMITFLOW_STORE_WAIT_S", "300")))
    except ValueError:
        return 300.0


def retrying(
    operation: Callable[[], T],
    *,
    store: str,
    what: str,
    budget_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``operation()``, re-run while ``store`` does not answer, for at most ``budget_s``."""
    budget = wait_budget_s() if budget_s is None else budget_s
    started = time.monotonic()
    delay = 0.2
    while True:
        try:
            return operation()
        except TRANSIENT as exc:
            waited = time.monotonic() - started
            if waited + delay > budget:
                raise
            STORE_RETRIES.labels(store=store).inc()
            log.warning(
                "%s does not answer (%s) while %s; retrying in %.1f s (waited %.0f s of %.0f s)",
                store,
                type(exc).__name__,
                what,
                delay,
                waited,
                budget,
            )
            sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)
