"""Bytewax's own per-step metrics, gathered into remitflow's ``/metrics``.

Bytewax 0.21 records, per step and worker, items in and out and the duration of each batch
call (``bytewax_item_inp_count``, ``bytewax_stateful_batch_on_batch_duration_seconds``, ...)
in its Rust OpenTelemetry registry, which Python cannot read. It serves them only from its
"dataflow API" server, one per process, started by ``cli_main`` when
``BYTEWAX_DATAFLOW_API_ENABLED`` is set. So each process the runner starts gets its own
free port (:func:`api_environment`), and the ``/metrics`` handler scrapes those
ports and adds the ``bytewax_*`` families remitflow's registry does not already hold
(:class:`StepScraper`). Recording costs the hot path nothing more: Bytewax keeps these
counters whether or not they are served.

Bytewax binds that server on all interfaces and has no setting for it; it serves the step
metrics and the dataflow's shape (no data). ``REMITFLOW_STEP_METRICS=off`` leaves it unstarted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

SWITCH_ENV = "REMITFLOW_STEP_METRICS"
SCRAPE_TIMEOUT_S = 1.0


_claimed_here = False


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in {"off", "0", "false", "no"}


def claim_this_process() -> bool:
    """True once per process: whether a dataflow run here may start Bytewax's API server.

    Bytewax registers its metrics exporter globally when the server starts, and a second
    start in the same process fails the run ("Duplicate metrics collector registration").
    ``remitflow run`` runs one dataflow per process; a process running several (tests, a
    notebook) serves step metrics for the first only. Worker processes are always fresh.
    """
    global _claimed_here
    first, _claimed_here = not _claimed_here, True
    return first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_environment(port: int, cache_dir: Path) -> dict[str, str]:
    """What a process needs in its environment for Bytewax to serve its metrics on ``port``.

    The server also writes ``dataflow.json``: into ``cache_dir``, not the working directory.
    """
    return {
        "BYTEWAX_DATAFLOW_API_ENABLED": "1",
        "BYTEWAX_DATAFLOW_API_PORT": str(port),
        "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(cache_dir),
    }


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (Bytewax reads them when a run starts)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class StepScraper:
    """Scrapes the Bytewax API ports of the current run; keeps each port's last answer.

    A worker that has finished no longer answers, and its counters are the run's totals:
    the last answer stays served until the next run sets new ports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ports: tuple[int, ...] = ()
        self._last: dict[int, str] = {}

    def use(self, ports: Iterable[int]) -> None:
        with self._lock:
            self._ports = tuple(ports)
            self._last = {}

    def families(self, exclude: set[str]) -> list[Metric]:
        """Bytewax's families over all ports, one family per name, minus ``exclude``."""
        with self._lock:
            ports = self._ports
        merged: dict[str, Metric] = {}
        for port in ports:
            text = _scrape(port)
            with self._lock:
                if text is not None and port in self._ports:
                    self._last[port] = text
                text = self._last.get(port)
            if text is None:
                continue  # not started yet: nothing recorded to lose
            for family in text_string_to_metric_families(text):
                if not family.name.startswith("bytewax_") or family.name in exclude:
                    continue  # the Python registry's families are served from remitflow's side
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                into.samples.extend(family.samples)  # workers differ by worker_index
        return list(merged.values())


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(  # a fixed http URL on loopback
            f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S
        ) as response:
            return bytes(response.read()).decode("utf-8")
    except (OSError, urllib.error.URLError, ValueError):
        return None
