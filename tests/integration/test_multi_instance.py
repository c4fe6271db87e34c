"""Several server instances sharing PostgreSQL and NATS behave as one server (seed 7.8, 8.4,
8.5, 11.3): delivery, consolidated trees, lifecycle and revocation across instances, resume on
another instance, and broker restarts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from harness.cluster import ReferenceCluster
from harness.publisher import Publisher
from harness.sse_client import StreamClosed
from harness.world import TenantWorld

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster() -> AsyncIterator[ReferenceCluster]:
    async with ReferenceCluster(
        instances=2, settings={"keepalive_interval": 1, "nats_heartbeat": 1}
    ) as c:
        yield c


@pytest.fixture
async def world(cluster: ReferenceCluster) -> AsyncIterator[TenantWorld]:
    first = cluster.instances[0]
    w = await TenantWorld.create(first.http_url, first.grpc_address, cluster.admin_token)
    yield w
    await w.close()


async def test_publish_on_a_is_received_on_b(cluster: ReferenceCluster, world: TenantWorld) -> None:
    a, b = cluster.instances
    wf = await world.workflow()
    async with (
        await world.subscribe(wf, base=b.http_url) as on_b,
        world.publisher(a.grpc_address) as pub,
    ):
        await pub.token("crossed", workflow_id=wf, task_id=str(uuid.uuid4()))
        assert (await on_b.next_event()).data == "crossed"


async def test_each_event_reaches_every_instance_once() -> None:
    async with ReferenceCluster(instances=3) as cluster:
        first = cluster.instances[0]
        world = await TenantWorld.create(first.http_url, first.grpc_address, cluster.admin_token)
        wf = await world.workflow()
        streams = [await world.subscribe(wf, base=i.http_url) for i in cluster.instances]
        for n, instance in enumerate(cluster.instances):
            async with world.publisher(instance.grpc_address) as pub:
                await pub.data(f"from-{n}", workflow_id=wf, task_id=str(uuid.uuid4()))
        for stream in streams:
            got = [e.data for e in await stream.next_events(3)]
            await stream.assert_no_event(within=0.3)
            assert got == ["from-0", "from-1", "from-2"]
            await stream.close()
        await world.close()


async def test_consolidated_on_b_picks_up_a_child_created_through_a(
    cluster: ReferenceCluster, world: TenantWorld
) -> None:
    a, b = cluster.instances
    root = await world.workflow()
    async with await world.subscribe(root, consolidated=True, base=b.http_url) as on_b:
        child = await world.workflow(parent=root)  # through A's management API
        async with world.publisher(a.grpc_address) as pub:
            await pub.data("child event", workflow_id=child, task_id=str(uuid.uuid4()))
        event = await on_b.next_event()
    assert event.json()["workflowExecutionId"] == child


async def test_completion_through_a_ends_the_stream_on_b(
    cluster: ReferenceCluster, world: TenantWorld
) -> None:
    b = cluster.instances[1]
    wf = await world.workflow()
    async with await world.subscribe(wf, base=b.http_url) as on_b:
        await world.api.complete_workflow(world.slug, wf)
        assert (await on_b.next_event()).event == "end"
        await on_b.wait_closed(2)


async def test_revocation_through_a_ends_the_stream_on_b(
    cluster: ReferenceCluster, world: TenantWorld
) -> None:
    b = cluster.instances[1]
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user")
    async with await world.subscribe(wf, token=user.token, base=b.http_url) as on_b:
        await world.api.revoke_token(user.id)
        assert (await on_b.next_event(timeout=5)).event == "auth-expired"


async def test_resume_on_b_after_a_is_killed(cluster: ReferenceCluster, world: TenantWorld) -> None:
    a, b = cluster.instances
    wf = await world.workflow()
    task = str(uuid.uuid4())
    async with world.publisher(b.grpc_address) as pub:
        on_a = await world.subscribe(wf, base=a.http_url)
        for i in range(3):
            await pub.token(f"t{i}", workflow_id=wf, task_id=task)
        seen = await on_a.next_events(3)
        a.kill()  # SIGKILL: the client loses its server mid-stream
        await on_a.wait_closed(5)
        await on_a.close()
        for i in range(3, 5):
            await pub.token(f"t{i}", workflow_id=wf, task_id=task)
        async with await world.subscribe(wf, base=b.http_url, last_event_id=seen[-1].id) as on_b:
            await pub.token("t5", workflow_id=wf, task_id=task)
            rest = await on_b.next_events(3)
            await on_b.assert_no_event(within=0.3)
    assert [e.data for e in rest] == ["t3", "t4", "t5"]


async def test_cursor_older_than_retention_yields_gap() -> None:
    async with ReferenceCluster(instances=2, settings={"nats_max_age": 1}) as cluster:
        a, b = cluster.instances
        world = await TenantWorld.create(a.http_url, a.grpc_address, cluster.admin_token)
        wf = await world.workflow()
        async with world.publisher() as pub, await world.subscribe(wf) as stream:
            await pub.token("old", workflow_id=wf, task_id=str(uuid.uuid4()))
            old = await stream.next_event()
        async with world.publisher() as pub:  # never seen by the client
            await pub.token("missed", workflow_id=wf, task_id=str(uuid.uuid4()))
        await asyncio.sleep(1.6)  # retention is age-based: let both expire
        async with world.publisher() as pub:
            await pub.token("new", workflow_id=wf, task_id=str(uuid.uuid4()))
        async with await world.subscribe(wf, base=b.http_url, last_event_id=old.id) as resumed:
            gap, new = await resumed.next_events(2)
        await world.close()
    assert (gap.event, new.data) == ("gap", "new")


async def test_nats_restart_mid_stream(cluster: ReferenceCluster, world: TenantWorld) -> None:
    """Streams continue or end cleanly with a resumable cursor, readiness reports the broker,
    publishes during the outage are answered at once, and everything recovers by itself."""
    a, b = cluster.instances
    assert cluster.nats is not None
    wf = await world.workflow()
    task = str(uuid.uuid4())
    async with world.publisher(a.grpc_address) as pub:
        stream = await world.subscribe(wf, base=b.http_url)
        await pub.token("before", workflow_id=wf, task_id=task)
        before = await stream.next_event()
        nats = cluster.nats
        await nats.stop()  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await pub.token("during", workflow_id=wf, task_id=task)  # fire-and-forget
        assert loop.time() - began < 2
        await _wait_ready(world, b.http_url, ready=False)
        await nats.start()
        await _wait_ready(world, b.http_url, ready=True)
        await _wait_ready(world, a.http_url, ready=True)
        # Publishes stay fire-and-forget: one sent while instance a is still re-creating the
        # broker's stream is acknowledged and lost, so the worker keeps sending until one lands.
        keep_sending = asyncio.create_task(_publish_until_cancelled(pub, wf, task))
        received: list[str] = []
        try:
            try:
                received.append((await stream.next_event(timeout=10)).data)
            except StreamClosed:  # ended cleanly: resume from the last id
                await stream.close()
                stream = await world.subscribe(wf, base=b.http_url, last_event_id=before.id)
                first = await stream.next_event(timeout=10)
                # The broker's memory stream died with it: the client is told, never misled.
                assert first.event == "gap"
                received.append((await stream.next_event(timeout=10)).data)
        finally:
            keep_sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_sending
            await stream.close()
    assert received == ["after"], "nothing from the outage, nothing before the cursor"
    errors = (await world.metrics(a.http_url)).get("flovyn_stream_publish_errors_total", 0)
    assert errors >= 1


async def _publish_until_cancelled(pub: Publisher, workflow: str, task: str) -> None:
    while True:
        await pub.token("after", workflow_id=workflow, task_id=task)
        await asyncio.sleep(0.25)


async def _wait_ready(world: TenantWorld, base: str, *, ready: bool) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{base}/health/ready") as response:
                if (response.status == 200) == ready:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"/health/ready never became {'ready' if ready else 'unready'}")


async def test_backend_follows_configuration(cluster: ReferenceCluster) -> None:
    """Seed 8.4/8.5: NATS when configured, in-memory otherwise."""
    async with ReferenceCluster(instances=1, nats=False) as single:
        world = await TenantWorld.create(single.instances[0].http_url, "", single.admin_token)
        memory_doc = await world.api.discovery()  # type: ignore[attr-defined]
        await world.close()
    first = cluster.instances[0]
    world = await TenantWorld.create(first.http_url, first.grpc_address, cluster.admin_token)
    nats_doc = await world.api.discovery()  # type: ignore[attr-defined]
    await world.close()
    assert memory_doc["bus"] == "memory"
    assert nats_doc["bus"] == "nats-jetstream"
    assert "multi-instance" in nats_doc["profiles"]
