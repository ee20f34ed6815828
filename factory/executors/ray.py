"""The Ray executor: the same shard tasks as the local executor, as Ray tasks on a cluster (the only Ray import).

`RayExecutor(address, workers)` connects to a running cluster (`address`: `auto`, `ray://host:10001`, or
`host:6379`) or, with no address, starts a local one with `workers` CPUs; it shuts down only a cluster it
started. `map_unordered(fn, tasks)` runs `fn(task)` as one Ray task per task (fn is the runner's module-level
`run_shard`, or a stage's prepare-pass function, exactly as on the local executor), at most `2 x cluster CPUs` in
flight so that a streaming producer (ingest) stays bounded, and yields results as they finish; the first failure
cancels the rest and is re-raised. Everything a task reads or writes goes through the run directory, so every
worker must reach it by the same name: an object-store URI (`factory.store`; each node with its own credentials)
or a shared filesystem mounted at the same path; each worker needs factory installed (`pip install
'factory[ray]'`).

Dedup's global passes are already "a few map steps plus files on disk" (signatures per shard, band keys hashed
into partitions, candidate pairs per partition, decisions per shard): on this executor each of those steps is a
set of Ray tasks, so band grouping is a task-level shuffle over partition files and clustering runs on the
candidate pairs only, in the driver.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from factory.errors import UserError

INSTALL_HINT = "pip install 'factory[ray]'"


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at a `host:port` or `ray://host:port` address (ray.init
    retries a dead GCS address for about ten minutes before it gives up). `auto` is left to Ray."""
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"cannot connect to the Ray cluster at {address}: nothing answers there ({exc.strerror or exc}); start "
            "the head with `ray start --head` and give its address (HEAD_IP:6379, or ray://HEAD_IP:10001)"
        ) from None


class RayExecutor:
    """`with RayExecutor(address, workers) as ex: for result in ex.map_unordered(fn, tasks): ...`"""

    def __init__(self, address: str | None, workers: int):
        try:
            import ray
        except ImportError:
            raise UserError(f"the ray executor needs Ray: {INSTALL_HINT}") from None
        self._ray = ray
        self.address = address
        self.workers = max(1, workers)
        self._started = False
        self._remotes: dict[Callable, Any] = {}

    def __enter__(self) -> RayExecutor:
        ray = self._ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if self.address:
                _check_reachable(self.address)
                kwargs["address"] = self.address
            else:  # "local": a new cluster, even when RAY_ADDRESS or a `ray start` on this machine names one
                kwargs.update(address="local", num_cpus=self.workers)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
                raise UserError(f"cannot connect to {where}: {first}") from None
            self._started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", self.workers)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def _remote(self, fn: Callable) -> Any:
        if fn not in self._remotes:
            # SPREAD: shard tasks over every node (Ray's default fills the driver's node first); their files are
            # in the run directory, so no node is closer to them than another
            self._remotes[fn] = self._ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(fn)
        return self._remotes[fn]

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Yield fn(task) for every task as each finishes, computed by Ray tasks."""
        ray = self._ray
        remote = self._remote(fn)
        pending: list = []
        try:
            for task in tasks:
                pending.append(remote.remote(task))
                if len(pending) >= 2 * self.workers:
                    done, pending = ray.wait(pending, num_returns=1)
                    yield from ray.get(done)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield from ray.get(done)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
