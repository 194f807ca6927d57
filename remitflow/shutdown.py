"""Graceful shutdown: SIGTERM (or Ctrl-C) ends the input, and the dataflow finishes cleanly.

Raising from a signal handler would abort Bytewax inside whatever Python call it was making (a
Kafka poll, a sink write) and panic the worker. Instead the handler only sets a flag; the
Kafka input partitions see it at their next poll and end, so every in-flight batch reaches the
sinks and is acknowledged, Bytewax commits a last snapshot with the offsets reached, and the
next ``run`` resumes from exactly there. A second signal does the default (stops at once;
recovery still resumes from the last snapshot, and the sinks are idempotent).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_STOP = threading.Event()


def requested() -> bool:
    return _STOP.is_set()


def request() -> None:
    _STOP.set()


def reset() -> None:
    """For tests that run several dataflows in one process."""
    _STOP.clear()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _STOP.is_set():
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
    _STOP.set()


def _on_signal_once(signum: int, frame: FrameType | None) -> None:
    _STOP.set()


@contextlib.contextmanager
def handling(*, worker: bool = False) -> Iterator[None]:
    """:func:`install` for the duration of a run, then the previous handlers again (a test
    process runs several dataflows and must get Ctrl-C back)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    install(worker=worker)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def install(*, worker: bool = False) -> None:
    """Route SIGTERM and SIGINT to the flag (main thread only, as Python requires).

    A ``worker`` process of a local cluster takes its stop from the parent only: it ignores
    Ctrl-C (the terminal sends it to the whole process group) and never escalates, so a
    signal that reaches it twice (the group's and the parent's) still stops it cleanly.
    """
    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _on_signal_once)
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)
