"""Structured logs: one JSON object per line on stderr, with correlation ids as fields.

``REMITFLOW_LOG_LEVEL`` (default ``INFO``) sets the level. Messages and fields carry ids,
counts, stages and reasons, never PHI (patient names, member ids, control numbers): the
parsers drop or hash those before anything could log them, and tests/test_phi_scan.py runs the
whole pipeline at DEBUG and scans every line.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Fields a call may attach with ``extra=`` to correlate a line with a case or an event.
FIELDS = ("case_id", "event_id", "idempotency_key", "stage", "count", "topic", "file")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _Stderr(logging.Handler):
    """Whatever ``sys.stderr`` is when a line is written (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # a log line must never take the dataflow down
            self.handleError(record)


def configure(level: str | None = None) -> None:
    """JSON lines on stderr for the ``remitflow`` loggers (idempotent)."""
    chosen = (level or os.environ.get("REMITFLOW_LOG_LEVEL") or "INFO").upper()
    logger = logging.getLogger("remitflow")
    logger.setLevel(getattr(logging, chosen, logging.INFO))
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
