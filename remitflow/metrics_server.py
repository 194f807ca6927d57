"""The ``/metrics`` endpoint of ``remitflow run`` (``REMITFLOW_METRICS_PORT``), multi-process aware.

One endpoint per deployment process, whatever the number of workers:

* one process: the dataflow runs here, and this process's registry is served (remitflow's
  metrics, ``bytewax_kafka_consumer_lag`` which Bytewax's Kafka source keeps in the same
  registry, and the process collectors);
* ``--processes N``: the runner spawns N worker processes (:mod:`dataflows.runner`) inside
  :func:`worker_processes`, which points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder first.
  Each worker then writes its values to files there (prometheus_client's multiprocess mode)
  and this process serves their sum: counters and histograms added up, live-sum gauges over
  the workers alive. Families no worker wrote (nothing observed yet, or this process's own
  collectors) come from this process's registry, so the exposition names the same metrics
  in both cases.

Either way, Bytewax's own per-step metrics are scraped from each process's Bytewax API server
and added (:mod:`remitflow.step_metrics`).

The last run's folder stays served after its workers exit (their counters are the run's
totals); the next run, :meth:`MetricsEndpoint.stop` or the end of the process removes it. No
server, no folder: workers then keep their values to themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from remitflow import step_metrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ADDR_ENV = "REMITFLOW_METRICS_ADDR"
DEFAULT_ADDR = "0.0.0.0"  # containers: Prometheus scrapes over the compose network


class _Exposition:
    """What ``/metrics`` shows: this process's registry, or the current workers' files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: Path | None = None  # the worker files of the current (or last) run
        self.servers = 0
        self.steps = step_metrics.StepScraper()  # Bytewax's per-step metrics

    def use(self, folder: Path | None) -> None:
        with self._lock:
            previous, self._folder = self._folder, folder
        if previous is not None and previous != folder:
            shutil.rmtree(previous, ignore_errors=True)

    def describe(self) -> list[Metric]:
        return []  # names vary with the run: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            folder = self._folder
        own = list(REGISTRY.collect())
        if folder is None:
            workers: list[Metric] = []
        else:
            files = MultiProcessCollector(None, path=str(folder))  # type: ignore[no-untyped-call]
            workers = list(files.collect())  # type: ignore[no-untyped-call]
        written = {family.name for family in workers}
        yield from workers
        yield from (family for family in own if family.name not in written)
        yield from self.steps.families(written | {family.name for family in own})


_EXPOSITION = _Exposition()
_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(_EXPOSITION)
atexit.register(_EXPOSITION.use, None)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` server; :meth:`stop` it (or use it as a context manager)."""

    address: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        _EXPOSITION.servers -= 1
        if not _EXPOSITION.servers:
            _EXPOSITION.use(None)

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(port: int, addr: str | None = None) -> MetricsEndpoint:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread (port 0: any free port).

    ``addr`` defaults to ``REMITFLOW_METRICS_ADDR``, else ``0.0.0.0``. Raises ``OSError`` when
    the port cannot be bound.
    """
    address = addr or os.environ.get(ADDR_ENV) or DEFAULT_ADDR
    server, thread = start_http_server(port, address, registry=_REGISTRY)
    _EXPOSITION.servers += 1
    return MetricsEndpoint(address, int(server.server_port), server, thread)


@contextlib.contextmanager
def worker_processes(workers: int) -> Iterator[list[dict[str, str]]]:
    """Around spawning and joining ``workers`` worker processes (or running in this one).

    Yields one environment per process (``max(workers, 1)``) for the runner to apply where
    that process starts Bytewax: while an endpoint is serving, it opens Bytewax's API server on
    a port of its own, whose per-step metrics ``/metrics`` then scrapes
    (:mod:`remitflow.step_metrics`). The environments are empty when nothing is served.

    While an endpoint is serving and ``workers > 1``: a fresh folder for the workers' metric
    files, named by ``PROMETHEUS_MULTIPROC_DIR`` in the environment the workers inherit (this
    process's values are already bound: the variable only takes effect in new interpreters).
    Afterwards the variable is restored and the workers' live gauges (open items, retry queue)
    are dropped: the processes that held those items are gone. Their counters stay served.
    """
    processes = max(workers, 1)
    if not _EXPOSITION.servers:
        if workers <= 1:
            _EXPOSITION.use(None)
        yield [{} for _ in range(processes)]
        return
    with tempfile.TemporaryDirectory(prefix="remitflow-bytewax-api-") as api_cache:
        environments: list[dict[str, str]] = [{} for _ in range(processes)]
        if step_metrics.enabled() and (workers > 1 or step_metrics.claim_this_process()):
            ports = [step_metrics.free_port() for _ in range(processes)]
            _EXPOSITION.steps.use(ports)
            environments = [
                step_metrics.api_environment(port, Path(api_cache) / str(i))
                for i, port in enumerate(ports)
            ]
            for i in range(processes):
                (Path(api_cache) / str(i)).mkdir()
        if workers <= 1:
            _EXPOSITION.use(None)  # the dataflow runs here: this registry has its metrics
            yield environments
            return
        with _multiprocess_folder():
            yield environments


@contextlib.contextmanager
def _multiprocess_folder() -> Iterator[None]:
    folder = Path(tempfile.mkdtemp(prefix="remitflow-metrics-"))
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(folder)
    _EXPOSITION.use(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        for live in folder.glob("gauge_live*_*.db"):
            live.unlink(missing_ok=True)
