"""Running a dataflow: in this process, or as a local cluster of worker processes.

Several workers run as processes (Python threads would share one interpreter lock): each process
builds the same dataflow from a module-level factory and picklable arguments, and joins a Bytewax
cluster on loopback; partitions and keys are spread over them.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from remitflow import logs, metrics_server, shutdown, step_metrics

FlowFactory = Callable[..., Dataflow]


@contextlib.contextmanager
def throughput_gc() -> Iterator[None]:
    """Fewer garbage collections while the dataflow runs.

    File mode keeps every open item until end of input, and CPython's generational collector
    rescans all of them at every full collection: with the default thresholds that is a third
    of the run time at 100k items. Parsed events and state form no reference cycles, so
    collecting young objects every 500,000 allocations (CPython: 700) costs memory only
    briefly (the reconcile benchmark's dataflow: 0.83 s of collection at 50k/20/100, about
    0.4 s here).
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(500_000, 100, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def recovery_config(recovery_dir: Path | None, partitions: int) -> RecoveryConfig | None:
    """Bytewax recovery in ``recovery_dir``, initialised with ``partitions`` when empty."""
    if recovery_dir is None:
        return None
    if not any(recovery_dir.glob("*.sqlite3")):
        recovery_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(recovery_dir, max(1, partitions))
    return RecoveryConfig(recovery_dir)


def _worker(
    factory: FlowFactory,
    args: tuple[Any, ...],
    addresses: list[str],
    proc_id: int,
    recovery_dir: Path | None,
    epoch_interval: timedelta | None,
    graceful: bool,
    environment: dict[str, str],
) -> None:
    logs.configure()  # a fresh interpreter: the parent's logging setup is not inherited
    if graceful:
        shutdown.install(worker=True)  # a worker process: its handlers live as long as it
    os.environ.update(environment)
    with throughput_gc():
        cli_main(
            factory(*args),
            process_id=proc_id,
            addresses=addresses,
            epoch_interval=epoch_interval,
            recovery_config=RecoveryConfig(recovery_dir) if recovery_dir is not None else None,
        )


def execute(
    factory: FlowFactory,
    args: tuple[Any, ...],
    *,
    workers: int = 1,
    recovery_dir: Path | None = None,
    epoch_interval: timedelta | None = None,
    graceful: bool = False,
) -> None:
    """Build ``factory(*args)`` and run it to its end on ``workers`` processes.

    ``graceful``: SIGTERM and Ctrl-C end the input (:mod:`remitflow.shutdown`), in this process
    and in every worker process, and the dataflow finishes with a last snapshot.
    """
    recovery = recovery_config(recovery_dir, workers)
    with (
        shutdown.handling() if graceful else contextlib.nullcontext(),
        metrics_server.worker_processes(workers) as environments,
    ):
        _execute(
            factory, args, workers, recovery, recovery_dir, epoch_interval, graceful, environments
        )


def _execute(
    factory: FlowFactory,
    args: tuple[Any, ...],
    workers: int,
    recovery: RecoveryConfig | None,
    recovery_dir: Path | None,
    epoch_interval: timedelta | None,
    graceful: bool,
    environments: list[dict[str, str]],
) -> None:
    # ``cli_main`` rather than ``run_main``/``cluster_main``: only it starts Bytewax's API
    # server, the one place its per-step metrics are served (remitflow.step_metrics).
    if workers <= 1:
        with throughput_gc(), step_metrics.environment(environments[0]):
            cli_main(factory(*args), epoch_interval=epoch_interval, recovery_config=recovery)
        return
    addresses = [f"127.0.0.1:{step_metrics.free_port()}" for _ in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                factory,
                args,
                addresses,
                i,
                recovery_dir,
                epoch_interval,
                graceful,
                environments[i],
            ),
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    forwarded = False
    while any(p.is_alive() for p in procs):
        if graceful and shutdown.requested() and not forwarded:
            forwarded = True  # each worker stops its own input partitions
            for p in procs:
                if p.pid is not None and p.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=0.2)
        if any(p.exitcode not in (None, 0) for p in procs):
            break  # one worker failed: the cluster cannot finish; stop the others
    for p in procs:
        if p.is_alive():
            p.terminate()
        p.join(timeout=30)
        if p.is_alive():
            p.kill()  # a worker stuck past SIGTERM: recovery resumes from its last snapshot
            p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} worker process(es) failed: exit codes {failed}")
