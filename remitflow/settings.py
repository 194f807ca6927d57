"""Deployment settings from the environment (DESIGN.md §6); the same names as scripts/ and
docker-compose.yml use, so a process finds the servers the scripts started."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "remitflow"
    redis_url: str = "redis://127.0.0.1:6379/0"
    recovery_dir: Path = Path(".run/recovery")
    metrics_port: int = 9464
    api_port: int = 8080
    api_tokens: tuple[str, ...] = field(default_factory=tuple, repr=False)
    partitions: int = 4  # of topics remitflow creates
    erp_url: str | None = None  # journals over HTTP; unset: to the erp-postings topic
    erp_token: str | None = field(default=None, repr=False)  # a secret: never printed
    # The HTTP adapter's retry budget per journal; past it the journal is dead-lettered.
    erp_max_attempts: int = 6
    erp_budget_s: float = 60.0
    erp_timeout_s: float = 10.0  # one attempt; an answer later than this is retried

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings, or :class:`SettingsError` naming the variable that is unusable."""
        e = os.environ if env is None else env
        d = cls()
        return cls(
            kafka_bootstrap=e.get("REMITFLOW_KAFKA_BOOTSTRAP", d.kafka_bootstrap),
            topic_prefix=e.get("REMITFLOW_TOPIC_PREFIX", d.topic_prefix),
            redis_url=e.get("REMITFLOW_REDIS_URL", d.redis_url),
            recovery_dir=Path(e.get("REMITFLOW_RECOVERY_DIR", str(d.recovery_dir))),
            # 0: any free port (tests, several runs on one host)
            metrics_port=_number(e, "REMITFLOW_METRICS_PORT", d.metrics_port, 0, 65535),
            api_port=_number(e, "REMITFLOW_API_PORT", d.api_port, 0, 65535),
            api_tokens=tuple(
                t for t in (read_secret(e, "REMITFLOW_API_TOKENS") or "").split(",") if t
            ),
            partitions=_number(e, "REMITFLOW_TOPIC_PARTITIONS", d.partitions, 1, 10_000),
            erp_url=e.get("REMITFLOW_ERP_URL") or None,
            erp_token=read_secret(e, "REMITFLOW_ERP_TOKEN"),
            erp_max_attempts=_number(e, "REMITFLOW_ERP_MAX_ATTEMPTS", d.erp_max_attempts, 1, 100),
            erp_budget_s=_number(e, "REMITFLOW_ERP_BUDGET_S", d.erp_budget_s, 0.1, 86_400.0),
            erp_timeout_s=_number(e, "REMITFLOW_ERP_TIMEOUT_S", d.erp_timeout_s, 0.05, 600.0),
        )


class SettingsError(ValueError):
    """An environment variable remitflow cannot use."""


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """``name``, or the content of the file ``name_FILE`` names (a mounted secret)."""
    value = env.get(name)
    path = env.get(f"{name}_FILE")
    if not value and path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read it ({exc.strerror})") from None
    return value or None


def _number(env: Mapping[str, str], name: str, default: N, low: N, high: N) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class Topics:
    """Topic names: ``<prefix>.<name>`` (DESIGN.md §6)."""

    prefix: str = "remitflow"

    def name(self, short: str) -> str:
        return f"{self.prefix}.{short}"

    @property
    def remittances(self) -> str:
        return self.name("remittances")

    @property
    def bank_transactions(self) -> str:
        return self.name("bank-transactions")

    @property
    def postings(self) -> str:
        return self.name("postings")

    @property
    def dead_letter(self) -> str:
        return self.name("dead-letter")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.remittances, self.bank_transactions, self.postings)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(
            self.name(n)
            for n in ("matched", "variances", "unmatched", "erp-postings", "dead-letter")
        )
