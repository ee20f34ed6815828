"""`--executor ray` on a real two-node Ray cluster (Ray's own `ray.cluster_utils.Cluster`: a head and one more node,
each a raylet of its own with 1 CPU), reached through `ray: {address: ...}` in the config: clean, dedup and decontam
give the same kept ids, the same (origin, reason) rejects and the same counts as the local executor for every stage
(ingest included), and the pipeline's own shard tasks (`run_shard`) ran on both nodes.

Which node ran a task is read from the nodes' worker logs, without patching factory: each node gets a Ray temp dir,
hence a logs folder, of its own (as each host of a real cluster has), and a Ray worker writes `:task_name:<function>`
to its `worker-*.out` log as it starts each task (the marker Ray's log monitor uses to prefix task output). The
markers of both nodes must add up to the number of shards of all four stages, and each node must have run at least
a quarter of them: factory asks Ray to SPREAD shard tasks (with Ray's default, which fills the driver's node first,
the second node got as few as 2 of 28)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.factory.test_ray_executor import run

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'factory[ray]')")

STAGES = ["clean", "dedup", "decontam"]
TASK_MARKER = ":task_name:run_shard"  # ray._private.ray_constants.LOG_PREFIX_TASK_NAME + the task's function


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and one worker node, 1 CPU each, each with a Ray temp dir of its own; torn down after the module."""
    from ray.cluster_utils import Cluster

    # A short folder of our own: Ray's unix sockets live under it (paths must stay under 108 bytes), and with
    # RAY_TMPDIR there Cluster records its address in <it>/ray/ray_current_cluster, not in /tmp/ray where an
    # address-less ray.init() of any other process on this machine (another run's local cluster) would join it.
    base = Path(tempfile.mkdtemp(prefix="factory-ray-"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("RAY_TMPDIR", str(base))
        # raylets, so their workers, keep the environment they start with: conftest's cache, not ~/.cache
        mp.setenv("FACTORY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "factory-cache"))
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": str(base / "ray")})
        try:
            c.add_node(num_cpus=1, temp_dir=str(base / "node"))
            c.wait_for_nodes()
            yield c
        finally:
            ray.shutdown()  # a no-op unless a failed run left this process connected
            c.shutdown()
            shutil.rmtree(base, ignore_errors=True)


def shard_tasks_started(node) -> int:
    """How many `run_shard` tasks the workers of this node (a `ray._private.node.Node`) started."""
    logs = Path(node.get_logs_dir_path()).glob("worker-*.out")
    return sum(
        line.strip() == TASK_MARKER for log in logs for line in log.read_text(errors="replace").splitlines()
    )


def test_two_nodes_give_the_same_outputs_as_local_and_both_run_shard_tasks(cluster, tmp_path):
    nodes = cluster.list_all_nodes()
    assert len(nodes) == 2
    assert (
        not ray.is_initialized()
    )  # else factory would use this process's connection, not the config's address

    local = run(tmp_path, "local", executor="local")
    on_ray = run(tmp_path, "ray", executor="ray", ray={"address": cluster.address})
    for stage in local:
        assert on_ray[stage] == local[stage], stage
    assert (
        local["ingest"][3] >= 4 and local["ingest"][2]["rejected"] == 1 and local["dedup"][2]["rejected"] > 0
    )
    assert not ray.is_initialized()  # factory disconnected again (and left the cluster running)

    per_node = {("head" if n is cluster.head_node else "worker"): shard_tasks_started(n) for n in nodes}
    assert sum(per_node.values()) == sum(shards for *_, shards in on_ray.values()), per_node
    # spread over both (Ray's default scheduling would fill the driver's node first: as few as 2 of 28 elsewhere)
    assert min(per_node.values()) >= sum(per_node.values()) // 4, f"run_shard tasks per node: {per_node}"
