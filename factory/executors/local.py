"""The local executor: shard tasks on a process pool over all cores, or in-process when workers == 1.

One pool serves a whole run (every stage). On Linux its workers are forked, all at once, when the executor is
entered, before the progress bar starts its thread: they inherit the already imported modules, so a pool costs
milliseconds instead of a second of imports per stage. Elsewhere they are spawned.

At most `2 * workers` tasks are in flight, so a producer that builds tasks from a stream (ingest) never holds more
than that many chunks in memory. The first failing task cancels the rest and its exception is re-raised.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ready(_: int) -> int:
    return os.getpid()


class LocalExecutor:
    """`with LocalExecutor(workers) as ex: for result in ex.map_unordered(fn, tasks): ...`"""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1:
            method = "fork" if sys.platform == "linux" else "spawn"
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
            list(self._pool.map(_ready, range(self.workers)))  # start every worker now
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Yield fn(task) for every task as each finishes."""
        if self._pool is None:
            for task in tasks:
                yield fn(task)
            return
        pending: set[Future] = set()
        try:
            for task in tasks:
                pending.add(self._pool.submit(fn, task))
                if len(pending) >= 2 * self.workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()
            wait(pending)
