"""The harness's three-node NATS cluster: real `nats-server -js` processes clustered over
loopback routes, each node killed, restarted (same ports, same store), paused and resumed; and
reference servers on it that keep every stored event when a node dies."""

from __future__ import annotations

import asyncio
import itertools
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
STREAM = "FLOVYN_STREAMS"  # the servers' default stream name
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


@pytest.mark.parametrize("mode", ["unary", "batch"])
async def test_no_acknowledged_event_is_lost_when_the_stream_leader_dies(mode: str) -> None:
    """Two instances on three nodes (R3, file) under steady load, unary or in batches of 5; the
    node leading the stream is killed mid-load. Every acknowledged event reaches a subscriber
    that resumes with its last id, in order."""
    settings = {"publish_ack": "stored", "nats_heartbeat": 1, "keepalive_interval": 1}
    async with ReferenceCluster(instances=2, nats_nodes=3, settings=settings) as cluster:
        nodes = cluster.nats_cluster
        assert nodes is not None
        a, b = cluster.instances
        world = await TenantWorld.create(a.http_url, a.grpc_address, cluster.admin_token)
        wf, task = await world.workflow(), str(uuid.uuid4())
        stream = await world.subscribe(wf, base=b.http_url)
        acked: list[str] = []
        after_kill = asyncio.Event()
        async with world.publisher(a.grpc_address) as pub:

            async def produce() -> None:
                for n in itertools.count():
                    payloads = [f"{n}.{i}" for i in range(5 if mode == "batch" else 1)]
                    try:
                        if mode == "batch":
                            requests = [pub.request("token", p, workflow_id=wf, task_id=task)
                                        for p in payloads]  # fmt: skip
                            ok = (await pub.batch(requests)).accepted == len(payloads)
                        else:
                            ok = await pub.token(payloads[0], workflow_id=wf, task_id=task)
                    except grpc.aio.AioRpcError as error:  # the survivors elect a leader
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                        await asyncio.sleep(0.05)
                        continue
                    if ok:
                        acked.extend(payloads)
                        if after_kill.is_set() and len(acked) > killed_at + 20:
                            return

            killed_at = 10**9
            producer = asyncio.create_task(produce())
            first = await stream.next_event(timeout=10)
            leader = await nodes.stream_leader(STREAM)
            nodes.nodes[leader if leader is not None else 0].kill()
            killed_at = len(acked)
            after_kill.set()
            async with asyncio.timeout(40):
                await producer
        await stream.close()
        got = [first.data]
        async with await _resume(world, wf, a.http_url, first.id) as resumed:
            while got[-1] != acked[-1]:  # unacknowledged events may be there too
                got.append((await resumed.next_event(timeout=10)).data)
        await world.close()
    assert leader is not None
    assert [g for g in got if g in set(acked)] == acked


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
