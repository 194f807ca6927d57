"""The deployment's configuration (reference data and ``[matching]``) kept in Redis.

Every process of a deployment (each ``run`` worker, ``ingest``, ``serve``) must reconcile with
the same GL accounts, bank accounts and payer names; one copy in Redis, loaded by
``remitflow refdata load FILE``, is that single source. The TOML text is stored as loaded and
checked on the way in and on the way out, so a bad document never reaches a dataflow; each load
gets a version and a digest, so operators can see which configuration a run used.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from remitflow.config import Config, ConfigError, parse_config_text
from remitflow.stores import redis_client


@dataclass(frozen=True)
class StoredConfig:
    version: int
    sha256: str
    loaded_at: float  # Unix time
    origin: str  # the file it was loaded from
    text: str

    def parse(self) -> Config:
        return parse_config_text(self.text, f"redis v{self.version} (from {self.origin})")


class ConfigStore:
    def __init__(self, url: str, prefix: str = "remitflow") -> None:
        self._redis = redis_client(url, decode_responses=True)
        self._key = f"{prefix}:config"

    def load(self, path: str | Path) -> StoredConfig:
        """Check the file like ``--config`` would, then make it the deployment's configuration."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration {p}: {exc}") from None
        parse_config_text(text, p)  # refuse what a dataflow could not use
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self._key, "version", 1)
            pipe.hset(
                self._key,
                mapping={
                    "sha256": digest,
                    "loaded_at": repr(time.time()),
                    "origin": str(p),
                    "text": text,
                },
            )
            version = int(pipe.execute()[0])
        return StoredConfig(version, digest, time.time(), str(p), text)

    def current(self) -> StoredConfig | None:
        raw = self._redis.hgetall(self._key)
        if not raw:
            return None
        fields = {str(k): str(v) for k, v in raw.items()}
        return StoredConfig(
            version=int(fields["version"]),
            sha256=fields["sha256"],
            loaded_at=float(fields["loaded_at"]),
            origin=fields["origin"],
            text=fields["text"],
        )
