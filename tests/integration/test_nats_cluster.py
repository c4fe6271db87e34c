"""The harness's three-node NATS cluster: real `nats-server -js` processes clustered over
loopback routes, each node killed, restarted (same ports, same store), paused and resumed; and
reference servers on it that keep every stored event when a node dies."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import grpc
import nats
import pytest
from nats.js import api

from conformance.embedded import EMBEDDED_SETTINGS, target_entry, write_target_file
from harness.cluster import ReferenceCluster
from harness.nats_cluster import NatsCluster, jetstream_answers
from harness.services import wait_until
from harness.sse_client import SSEStream
from harness.world import TenantWorld

pytestmark = pytest.mark.integration
MULTI_INSTANCE = "bus/5.1/1,bus/5.2/1,bus/5.2/2,bus/5.3/1"


async def test_nodes_are_killed_restarted_paused_and_resumed() -> None:
    async with NatsCluster(3) as cluster:
        assert len(cluster.urls) == 3 and cluster.url == ",".join(cluster.urls)
        nc = await nats.connect(cluster.urls)
        js = nc.jetstream(timeout=5)
        config = api.StreamConfig(
            name="T", subjects=["t.>"], storage=api.StorageType.FILE, num_replicas=3
        )
        await js.add_stream(config)
        for i in range(5):
            await js.publish("t.x", str(i).encode())
        victim = cluster.nodes[0]
        ports = (victim.port, victim.route_port)
        victim.kill()
        assert not victim.running and not await victim.ready()

        async def stored_after_kill() -> bool:
            try:
                await js.publish("t.x", b"5", timeout=1)
            except Exception:  # no stream leader until the survivors elect one
                return False
            return True

        await wait_until(stored_after_kill, 20, "a publish on the two survivors")
        await victim.start()  # same ports, same store: it rejoins and catches up
        assert (victim.port, victim.route_port) == ports
        await wait_until(cluster.ready, 20, "the cluster after the restart")
        assert (await js.stream_info("T")).state.messages == 6

        paused = cluster.nodes[1]
        paused.pause()
        assert not await paused.ready() and not await cluster.ready()
        paused.resume()
        await wait_until(cluster.ready, 20, "the cluster after the pause")
        await nc.close()
        assert await jetstream_answers(cluster.url)


async def test_servers_on_the_cluster_keep_streams_across_a_node_kill() -> None:
    """Two instances on three nodes (R3, file): an event published before, during and after
    the loss of one node reaches a subscriber that resumes with its last id."""
    settings = {"publish_ack": "stored", "nats_heartbeat": 1, "keepalive_interval": 1}
    async with ReferenceCluster(instances=2, nats_nodes=3, settings=settings) as cluster:
        assert cluster.nats_cluster is not None
        a, b = cluster.instances
        world = await TenantWorld.create(a.http_url, a.grpc_address, cluster.admin_token)
        wf, task = await world.workflow(), str(uuid.uuid4())
        stream = await world.subscribe(wf, base=b.http_url)
        async with world.publisher(a.grpc_address) as pub:
            assert await pub.token("before", workflow_id=wf, task_id=task)
            before = await stream.next_event(timeout=10)
            cluster.nats_cluster.nodes[0].kill()
            acked, sent = ["before"], 0
            async with asyncio.timeout(30):
                while len(acked) < 10:  # until the survivors (after an election) store them
                    sent += 1
                    try:
                        if await pub.token(f"during-{sent}", workflow_id=wf, task_id=task):
                            acked.append(f"during-{sent}")
                    except grpc.aio.AioRpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE
        await stream.close()
        got = ["before"]
        async with await _resume(world, wf, a.http_url, before.id) as resumed:
            while got[-1] != acked[-1]:  # unacknowledged events may be there too
                got.append((await resumed.next_event(timeout=10)).data)
        await world.close()
    assert [g for g in got if g in acked] == acked


async def _resume(world: TenantWorld, wf: str, base: str, last_id: str | None) -> SSEStream:
    """Open with `Last-Event-ID` as a client does: a 503 (the bus failing over) is retried."""
    async with asyncio.timeout(20):
        while True:
            stream = await world.subscribe(wf, base=base, last_event_id=last_id)
            if stream.status == 200:
                return stream
            await stream.close()
            await asyncio.sleep(0.2)


async def test_multi_instance_conformance_on_the_three_node_cluster(tmp_path: Path) -> None:
    """The suite's cross-instance requirements hold for servers on three NATS nodes."""
    settings = {**EMBEDDED_SETTINGS, "nats_heartbeat": 1}
    async with ReferenceCluster(instances=2, nats_nodes=3, settings=settings) as cluster:
        target = tmp_path / "target.toml"
        write_target_file(target, [target_entry(cluster, "three-nodes", "admin-api")])
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "conformance", "--target", str(target), "-n", "0",
            "--id", MULTI_INSTANCE, "--report", str(tmp_path / "report"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = (await done.communicate())[0].decode(errors="replace")
    results = json.loads((tmp_path / "report" / "index.json").read_text())["three-nodes"]
    assert done.returncode == 0, output[-3000:]
    assert {rid: r["verdict"] for rid, r in results.items()} == dict.fromkeys(
        MULTI_INSTANCE.split(","), "PASS"
    )
