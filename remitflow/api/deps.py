"""What every route needs: the stores, the configuration, and who is asking."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from remitflow.config import Config
from remitflow.refdata import ReferenceData
from remitflow.resolutions import Resolver
from remitflow.settings import Settings
from sinks.erp_ledger import IdempotencyLedger
from state.case_index import CaseIndex
from state.config_store import ConfigStore

from .auth import Sessions, Tokens

CONFIG_CACHE_S = 30.0


class ConfigSource:
    """The deployment's configuration: the one ``serve --config`` was given, else the one in
    Redis (``remitflow refdata load``), re-read at most every 30 s so a new load is seen."""

    def __init__(self, settings: Settings, fixed: Config | None = None) -> None:
        self._fixed = fixed
        self._store = ConfigStore(settings.redis_url, settings.topic_prefix)
        self._cached: tuple[float, Config] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Config:
        """The configuration; :class:`LookupError` when there is none."""
        if self._fixed is not None:
            return self._fixed
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CONFIG_CACHE_S:
                return self._cached[1]
            stored = self._store.current()
            if stored is None:
                raise LookupError(
                    "no configuration: load one with `remitflow refdata load FILE` "
                    "(or start serve with --config)"
                )
            config = stored.parse()
            self._cached = (time.monotonic(), config)
            return config

    def refdata(self) -> ReferenceData | None:
        """Reference data for display and payer filters; None when there is none."""
        try:
            return self()[0]
        except LookupError:
            return None


@dataclass(frozen=True)
class Services:
    settings: Settings
    cases: CaseIndex
    ledger: IdempotencyLedger
    tokens: Tokens
    sessions: Sessions
    config: ConfigSource
    resolver: Resolver


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Stores = Annotated[Services, Depends(services)]
_bearer = HTTPBearer(auto_error=False, description="a token of REMITFLOW_API_TOKENS")


def api_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The operator the bearer token names; 401 without a token or with a wrong one."""
    tokens = services(request).tokens
    operator = tokens.operator(credentials.credentials if credentials else None)
    if operator is None:
        raise HTTPException(
            status_code=401,
            detail="a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.operator = operator
    return operator


Operator = Annotated[str, Depends(api_operator)]
