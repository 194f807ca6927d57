"""``remitflow serve``: the case status API and the exceptions page (DESIGN.md §5–§6).

The JSON API (OpenAPI at ``/openapi.json``, bearer tokens) answers auditors and tools: a case
with its full lineage, lookups by trace, bank reference and payer/dates, the exception queue,
and resolutions. ``/ui/`` serves the same to finance operators in a browser. Both read the
Redis case index and the ERP idempotency ledger; resolutions write through the normal sink
path (:mod:`remitflow.resolutions`). Requests are logged as method, path (never the query, where
a careless client might put a token), status and time; tokens are never logged.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from remitflow import __version__
from remitflow.config import Config
from remitflow.resolutions import EventArchive, Resolver, SinkWriter
from remitflow.settings import Settings
from sinks.erp_ledger import IdempotencyLedger
from state.case_index import CaseIndex

from . import routes, ui
from .auth import Sessions, Tokens
from .deps import ConfigSource, Services

log = logging.getLogger("remitflow.api")

__all__ = ["ServeError", "create_app", "serve"]


class ServeError(ValueError):
    """``serve`` cannot start as configured (for the command line: a usage error)."""


def create_app(
    settings: Settings,
    config: Config | None = None,
    *,
    archive: EventArchive | None = None,
) -> FastAPI:
    """The application over the deployment ``settings`` describes. ``config`` (reference data
    and matching settings) defaults to the one loaded into Redis."""
    tokens = Tokens(settings.api_tokens)
    if not tokens:
        log.warning("REMITFLOW_API_TOKENS is empty: every request is refused")
    cases = CaseIndex(settings.redis_url, settings.topic_prefix)
    ledger = IdempotencyLedger(settings.redis_url, settings.topic_prefix)
    source = ConfigSource(settings, config)
    resolver = Resolver(
        settings,
        cases,
        ledger.owner,
        source,
        SinkWriter(settings),
        archive or EventArchive(settings.kafka_bootstrap),
    )
    app = FastAPI(
        title="remitflow case status API",
        version=__version__,
        description=(
            "Where each reconciliation case stands: lineage from the source files to the ERP, "
            "lookups, the exception queue, and operator resolutions. Every endpoint but "
            "/healthz needs a bearer token of REMITFLOW_API_TOKENS. No PHI is served."
        ),
    )
    app.state.services = Services(
        settings=settings,
        cases=cases,
        ledger=ledger,
        tokens=tokens,
        sessions=Sessions(settings.redis_url, settings.topic_prefix, tokens),
        config=source,
        resolver=resolver,
    )
    app.include_router(routes.router)
    app.include_router(ui.router)
    app.add_exception_handler(ui.LoginRequired, ui.login_redirect)
    app.add_exception_handler(RedisError, _redis_down)

    @app.get("/healthz", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness and Redis reachability; no data, no token."""
        cases.get("healthz")  # one round trip; raises when Redis does not answer
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return Response(status_code=303, headers={"Location": "/ui/exceptions"})

    app.middleware("http")(_access_log)
    return app


async def _access_log(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    log.info(
        "%s %s %d %.0f ms",
        request.method,
        request.url.path,
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    return response


def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("Redis does not answer: %s", type(exc).__name__)
    return JSONResponse({"detail": "the case index (Redis) does not answer"}, status_code=503)


def serve(settings: Settings, *, host: str = "127.0.0.1", config: Config | None = None) -> None:
    """Serve the API on ``host``:``settings.api_port`` until SIGTERM/Ctrl-C, which stop it
    gracefully (requests in flight finish) and return normally, as ``run`` does."""
    if not settings.api_tokens:
        raise ServeError(
            "REMITFLOW_API_TOKENS is empty: set at least one token (name:token,...) "
            "— the API serves no data without one"
        )
    app = create_app(settings, config)
    server = _Server(
        uvicorn.Config(
            app,
            access_log=False,  # ours (above) leaves query strings out
            log_config=None,  # remitflow.logs formats the lines
            server_header=False,
            proxy_headers=True,
        )
    )
    # Bound here, so that port 0 (any free port) can be told and a busy port is one line.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, settings.api_port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{settings.api_port}: {exc.strerror}") from None
    log.info("serving the case API on %s:%d", host, sock.getsockname()[1])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class _Server(uvicorn.Server):
    """Stops on SIGTERM/SIGINT without re-raising the signal afterwards (uvicorn's default,
    which would end the process with status 143 after a clean shutdown)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: do not wait for requests in flight
        else:
            self.should_exit = True
