"""Real Redis Cluster and Sentinel setups on free loopback ports, started and stopped by the tests.

`LocalCluster`: 3 masters + 3 replicas (`redis-server --cluster-enabled yes`, joined by
`redis-cli --cluster create ... --cluster-replicas 1`). `LocalSentinel`: a master, its replicas and three
Sentinels watching it. Both can kill a master and bring a node back, for failover tests; neither touches a
Redis it did not start.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_proc import RedisProcess, free_port, redis_server_binary

NODE_TIMEOUT_MS = 1000
# Replicas sync at once (the default waits 5 s to batch diskless syncs) and report their offset every second.
QUICK_REPLICATION = ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 30.0, pause: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(pause)


def command(port: int, *args: str | int) -> object:
    """One command on one node; a node that is down answers None."""
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1, decode_responses=True)
    try:
        return client.execute_command(*args)
    except redis.ConnectionError:
        return None
    finally:
        client.close()


def info(port: int, section: str) -> dict[str, str]:
    raw = command(port, "INFO", section)
    return raw if isinstance(raw, dict) else {}


@dataclass
class ClusterNodeView:
    node_id: str
    port: int
    role: str  # "master" or "slave"
    master_id: str
    failed: bool
    slots: list[tuple[int, int]]


def cluster_nodes(port: int) -> list[ClusterNodeView]:
    raw = command(port, "CLUSTER", "NODES")
    if raw is None:
        return []
    views = []
    for line in str(raw).strip().splitlines():
        parts = line.split()
        node_id, address, flags, master = parts[0], parts[1], parts[2].split(","), parts[3]
        slots = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        port_text = address.split("@")[0].rpartition(":")[2]
        role = "master" if "master" in flags else "slave"
        failed = "fail" in flags or "fail?" in flags or "noaddr" in flags
        views.append(ClusterNodeView(node_id, int(port_text), role, master, failed, slots))
    return views


@dataclass
class LocalCluster:
    directory: Path
    masters: int = 3
    replicas_per_master: int = 1
    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}/"

    def start(self) -> None:
        count = self.masters * (1 + self.replicas_per_master)
        for i in range(count):
            node = RedisProcess(
                self.directory / f"node{i}",
                extra=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    # Its own free port: the default (port + 10000) may be taken or above 65535.
                    "--cluster-port", str(free_port()),
                    *QUICK_REPLICATION,
                ],
            )  # fmt: skip
            node.start()
            self.nodes.append(node)
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is needed to create a cluster"
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)]
        create += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        wait_for("a healthy cluster", self.healthy)

    def healthy(self) -> bool:
        """Every live node: cluster ok, the same number of masters with slots, every replica in sync."""
        live = [n for n in self.nodes if n.proc is not None]
        for node in live:
            if "cluster_state:ok" not in str(command(node.port, "CLUSTER", "INFO")):
                return False
            views = [v for v in cluster_nodes(node.port) if not v.failed]
            if sum(1 for v in views if v.role == "master" and v.slots) != self.masters:
                return False
            replication = info(node.port, "replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def master_of(self, slot: int) -> RedisProcess:
        for view in cluster_nodes(self.live()[0].port):
            if view.role == "master" and not view.failed and any(lo <= slot <= hi for lo, hi in view.slots):
                return self.by_port(view.port)
        raise LookupError(f"no master serves slot {slot}")

    def replica_of(self, master: RedisProcess) -> RedisProcess:
        views = cluster_nodes(master.port)
        me = next(v for v in views if v.port == master.port)
        return self.by_port(next(v.port for v in views if v.master_id == me.node_id and not v.failed))

    def by_port(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def live(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def kill(self, node: RedisProcess) -> None:
        node.kill()
        node.proc = None

    def restart(self, node: RedisProcess) -> None:
        """Back on its port with its nodes.conf: a failed-over master rejoins as a replica."""
        node.start()

    def migrate_slot(
        self, slot: int, target: RedisProcess, batch_size: int = 100, pause: float = 0.0, finish: bool = True
    ) -> None:
        """Move one slot to `target` the way redis-cli --cluster reshard does. Small batches with pauses keep
        the slot half-moved for a while, so callers meet ASK and TRYAGAIN answers."""
        source = self.master_of(slot)
        ids = {view.port: view.node_id for view in cluster_nodes(source.port)}
        command(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
        command(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
        while batch := command(source.port, "CLUSTER", "GETKEYSINSLOT", slot, batch_size):
            command(source.port, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *batch)  # type: ignore[misc]
            time.sleep(pause)
        if finish:
            self.finish_migration(slot, source, target)

    def finish_migration(self, slot: int, source: RedisProcess, target: RedisProcess) -> None:
        ids = {view.port: view.node_id for view in cluster_nodes(source.port)}
        for node in [target, source, *(n for n in self.masters_now() if n not in (target, source))]:
            command(node.port, "CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])

    def masters_now(self) -> list[RedisProcess]:
        views = cluster_nodes(self.live()[0].port)
        return [self.by_port(v.port) for v in views if v.role == "master" and v.slots and not v.failed]

    def flush(self) -> None:
        for node in self.live():
            if info(node.port, "replication").get("role") == "master":
                command(node.port, "FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _sentinel_process(directory: Path, port: int, config: str) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "sentinel.conf"
    conf.write_text(config)  # Sentinel rewrites its own file, so each gets one
    log = open(directory / "sentinel.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [redis_server_binary(), str(conf), "--sentinel"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=directory,
    )
    log.close()
    return proc


@dataclass
class LocalSentinel:
    directory: Path
    master_name: str = "usersecrets"
    replicas: int = 2
    sentinel_count: int = 3
    down_after_ms: int = 500
    data: list[RedisProcess] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.master_name}"

    def start(self) -> None:
        master = RedisProcess(self.directory / "data0", extra=QUICK_REPLICATION)
        master.start()
        self.data.append(master)
        for i in range(self.replicas):
            replica = RedisProcess(
                self.directory / f"data{i + 1}",
                extra=["--replicaof", "127.0.0.1", str(master.port), *QUICK_REPLICATION],
            )
            replica.start()
            self.data.append(replica)
        wait_for("replicas in sync", lambda: info(master.port, "replication").get("connected_slaves") == self.replicas)
        quorum = self.sentinel_count // 2 + 1
        for i in range(self.sentinel_count):
            port = free_port()
            config = "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {self.directory / f'sentinel{i}'}",
                    f"sentinel monitor {self.master_name} 127.0.0.1 {master.port} {quorum}",
                    f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.master_name} 2000",
                    f"sentinel parallel-syncs {self.master_name} {self.replicas}",
                    "",
                ]
            )
            self.sentinels.append(_sentinel_process(self.directory / f"sentinel{i}", port, config))
            self.sentinel_ports.append(port)
        wait_for("sentinels that know each other and the replicas", self._sentinels_ready)

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            state = command(port, "SENTINEL", "MASTER", self.master_name)
            if not isinstance(state, dict | list):
                return False
            fields = state if isinstance(state, dict) else dict(zip(state[::2], state[1::2], strict=True))
            if int(fields.get("num-other-sentinels", 0)) != self.sentinel_count - 1:
                return False
            if int(fields.get("num-slaves", 0)) != self.replicas:
                return False
        return True

    def master_port(self) -> int | None:
        """The master the first live Sentinel names."""
        for port in self.sentinel_ports:
            answer = command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            if answer:
                return int(answer[1])  # type: ignore[index]
        return None

    def master(self) -> RedisProcess:
        port = self.master_port()
        return next(n for n in self.data if n.port == port)

    def replicas_in_sync(self, master: RedisProcess, count: int) -> bool:
        return info(master.port, "replication").get("connected_slaves") == count

    def kill(self, node: RedisProcess) -> None:
        node.kill()
        node.proc = None

    def flush(self) -> None:
        command(self.master().port, "FLUSHALL")

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for node in self.data:
            node.stop()
