"""A local Redis Cluster of real redis-server processes for tests and benchmarks.

Interface (benchmarks/scale.py uses it too; keep it stable):

    cluster = start_local_cluster(base_dir: Path, masters: int = 3, replicas: int = 1)
    cluster.url           # "redis+cluster://127.0.0.1:<port>,..." (every node as a seed)
    cluster.nodes         # list[ClusterNodeProcess]: .port, .url, .node_id, .kill(), .start()
    cluster.masters()     # the nodes that are masters now (changes after a failover)
    cluster.replicas_of(master)   # its replicas now
    cluster.master_of_partition(partition) / cluster.master_of_slot(slot)
    cluster.reshard(slot_or_partition, to_node, *, keys_per_step=10, pause_seconds=0.0)
    cluster.failover(master)      # CLUSTER FAILOVER on one of its replicas; returns the new master
    cluster.flush()               # FLUSHALL on every master
    cluster.stop()

Nodes run with AOF and `appendfsync always` (as production does), each in its own
directory under `base_dir`, on free ports of 127.0.0.1. `start_local_cluster` returns once
every node says `cluster_state:ok` and every replica is in sync. A partition number given to
`reshard` means the slot of its hash tag `{p<k>}`. Every helper is synchronous (a test that
keeps writing meanwhile runs it in a thread: `await asyncio.to_thread(cluster.reshard, ...)`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import key_slot

from tests.support.redis_process import RedisProcess
from tests.support.servers import free_port

NODE_TIMEOUT_MS = 3_000
"""Cluster node timeout: a master unreachable this long is failed over by its replica."""
READY_TIMEOUT_SECONDS = 30.0


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("redis-cli is not on PATH (it comes with redis-server / redis-tools)")
    return found


def slot_of_partition(partition: int) -> int:
    return int(key_slot(f"{{p{partition}}}".encode()))


class ClusterNodeProcess(RedisProcess):
    """One redis-server of the cluster, on one port and data directory for its life."""

    def __init__(self, port: int, bus_port: int, data_dir: Path) -> None:
        super().__init__(
            data_dir,
            port,
            extra_args=[
                "--cluster-enabled", "yes",
                # Any free port: the default (port + 10000) may not exist or be taken.
                "--cluster-port", str(bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            ],
        )  # fmt: skip
        self.bus_port = bus_port
        self.node_id = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)


@dataclass
class LocalCluster:
    """A running local cluster: see the module docstring for the interface."""

    nodes: list[ClusterNodeProcess]
    master_count: int

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def node_by_id(self, node_id: str) -> ClusterNodeProcess:
        return next(node for node in self.nodes if node.node_id == node_id)

    def topology(self) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by a live node: id, address, flags, master id, slots."""
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                raw = node.client().execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            rows = []
            for line in text.strip().splitlines():
                parts = line.split()
                rows.append(
                    {
                        "id": parts[0],
                        "flags": parts[2],
                        "master": parts[3],
                        "slots": " ".join(parts[8:]),
                    }
                )
            return rows
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[ClusterNodeProcess]:
        return [
            self.node_by_id(row["id"])
            for row in self.topology()
            if "master" in row["flags"] and "fail" not in row["flags"]
        ]

    def replicas_of(self, master: ClusterNodeProcess) -> list[ClusterNodeProcess]:
        return [
            self.node_by_id(row["id"])
            for row in self.topology()
            if row["master"] == master.node_id and "fail" not in row["flags"]
        ]

    def master_of_slot(self, slot: int) -> ClusterNodeProcess:
        return self._owner(slot)

    def _owner(self, slot: int) -> ClusterNodeProcess:
        for row in self.topology():
            if "master" not in row["flags"]:
                continue
            for part in row["slots"].split():
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                first, _, last = part.partition("-")
                if int(first) <= slot <= int(last or first):
                    return self.node_by_id(row["id"])
        raise RuntimeError(f"slot {slot} has no owner")

    def master_of_partition(self, partition: int) -> ClusterNodeProcess:
        return self._owner(slot_of_partition(partition))

    def reshard(
        self,
        slot_or_partition: int,
        to_node: ClusterNodeProcess,
        *,
        partition: bool = True,
        keys_per_step: int = 10,
        pause_seconds: float = 0.0,
    ) -> None:
        """Move one slot (by default the slot of partition `slot_or_partition`) to `to_node`.

        What `redis-cli --cluster reshard` does for one slot: IMPORTING on the target,
        MIGRATING on the source, MIGRATE the keys `keys_per_step` at a time (with
        `pause_seconds` between steps, to keep the slot half-moved for a while), then
        CLUSTER SETSLOT NODE on every master. Clients meanwhile get ASK and TRYAGAIN.
        """
        slot = slot_of_partition(slot_or_partition) if partition else slot_or_partition
        source = self._owner(slot)
        if source.node_id == to_node.node_id:
            return
        target_client, source_client = to_node.client(), source.client()
        target_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", to_node.node_id)
        while True:
            keys = source_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, keys_per_step)
            if not keys:
                break
            source_client.execute_command(
                "MIGRATE", "127.0.0.1", to_node.port, "", 0, 10_000, "KEYS", *keys
            )
            if pause_seconds:
                time.sleep(pause_seconds)
        for node in [to_node, source, *self.masters()]:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", to_node.node_id)
        self.wait_until_ready()

    def failover(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        """CLUSTER FAILOVER on a replica of `master` (it first catches up, so nothing
        acknowledged is lost); the replica, master now, is returned once all agree."""
        replica = self.replicas_of(master)[0]
        replica.client().execute_command("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            role = replica.client().execute_command("ROLE")
            if role[0] in (b"master", "master"):
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"replica {replica.address} did not take over")
        self.wait_until_ready()
        return replica

    def wait_until_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Every live node says cluster_state:ok and agrees on the slot owners; every
        replica's link to its master is up."""
        deadline = time.monotonic() + timeout
        while True:
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the local Redis Cluster did not become ready")
            time.sleep(0.1)

    def _ready(self) -> bool:
        views = set()
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                client = node.client()
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
                replication = client.info("replication")
                if replication.get("role") == "slave" and (
                    replication.get("master_link_status") != "up"
                ):
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                views.add(repr(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots)))
            except redis.RedisError:
                return False
        return len(views) == 1

    def flush(self) -> None:
        """FLUSHALL on every master: a test starts on an empty cluster."""
        for node in self.masters():
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_local_cluster(base_dir: Path, masters: int = 3, replicas: int = 1) -> LocalCluster:
    """Start `masters * (1 + replicas)` nodes and join them into a cluster (see above)."""
    nodes = [
        ClusterNodeProcess(port=port, bus_port=free_port(), data_dir=base_dir / f"node-{port}")
        for port in (free_port() for _ in range(masters * (1 + replicas)))
    ]
    cluster = LocalCluster(nodes=nodes, master_count=masters)
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                redis_cli_binary(),
                "--cluster", "create",
                *(node.address for node in nodes),
                "--cluster-replicas", str(replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )  # fmt: skip
        for node in nodes:
            raw = node.client().execute_command("CLUSTER", "MYID")
            node.node_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        cluster.wait_until_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster
