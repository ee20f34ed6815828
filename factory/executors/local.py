"""The local executor: runs shard tasks on a process pool over all cores, or in-process when workers == 1.

At most `2 * workers` tasks are in flight, so a producer that builds tasks from a stream (ingest) never holds more
than that many chunks in memory. The pool uses the `forkserver` start method: safe with the progress bar's thread.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_unordered(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
    """Yield fn(task) for every task as each finishes; the first failure cancels the rest and is re-raised."""
    if workers <= 1:
        for task in tasks:
            yield fn(task)
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["factory.runner", "stages"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    pending: set[Future] = set()
    try:
        for task in tasks:
            pending.add(pool.submit(fn, task))
            if len(pending) >= 2 * workers:
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
        pool.shutdown(wait=True, cancel_futures=True)
