"""`harness.TestHarness`: the implementation plan's `test_stream_data_to_sse`, ported line for
line, and the harness's other ways in (a target file, the synchronous facade)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from harness import SyncTestHarness, TestHarness
from harness.cluster import ReferenceCluster
from harness.targets import TargetError, write_target_file
from taskstream_proto.task_streaming_pb2 import TOKEN, StreamTaskDataRequest

pytestmark = pytest.mark.integration


async def test_stream_data_to_sse() -> None:
    harness = await TestHarness.start()

    # Create workflow
    workflow_id = await harness.create_workflow("test-wf")

    # Start SSE listener in background
    tx: asyncio.Queue[bytes] = asyncio.Queue(10)
    connected = asyncio.Event()  # the plan slept 100 ms here; we wait for the response head
    url = f"{harness.http_url()}/api/tenants/{harness.tenant_slug()}/stream/workflows/{workflow_id}"

    async def listen() -> None:
        headers = {"Authorization": f"Bearer {harness.user_token()}"}  # streams need a token
        async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as response:
            connected.set()
            async for chunk in response.content.iter_any():
                await tx.put(chunk)

    sse_handle = asyncio.create_task(listen())

    # Give SSE time to connect
    await asyncio.wait_for(connected.wait(), 5)

    # Stream data via gRPC
    await harness.grpc_client().StreamTaskData(
        StreamTaskDataRequest(
            task_execution_id=str(uuid.uuid4()),  # the contract wants UUIDs, not "task-1"
            workflow_execution_id=workflow_id,
            sequence=1,
            type=TOKEN,
            payload="hello world",
            timestamp_ms=12345,
        )
    )

    # Verify SSE received event
    event_data = await asyncio.wait_for(tx.get(), 5)

    assert "hello world" in event_data.decode(errors="replace")

    sse_handle.cancel()
    await harness.close()


@pytest.fixture
async def cluster() -> AsyncIterator[ReferenceCluster]:
    async with ReferenceCluster(instances=1, nats=False) as cluster:
        yield cluster


async def test_a_target_file_is_tested_without_starting_anything(
    cluster: ReferenceCluster, tmp_path: Path
) -> None:
    path = tmp_path / "targets.toml"
    write_target_file(path, [cluster.target("first"), cluster.target("second")])
    async with await TestHarness.start(path, name="second") as harness:
        assert harness.cluster is None and harness.target.name == "second"
        workflow_id = await harness.create_workflow()
        task_id = await harness.create_task(workflow_id)
        async with await harness.subscribe(workflow_id) as stream:
            async with harness.publisher() as pub:
                await pub.token("hi", workflow_id=workflow_id, task_id=task_id)
            assert (await stream.next_event()).data == "hi"
    with pytest.raises(TargetError, match="no target named 'third'"):
        await TestHarness.start(path, name="third")
    assert cluster.instances[0].running  # the harness stopped only what it started


async def test_the_grpc_client_sends_the_worker_token_unless_told_otherwise(
    cluster: ReferenceCluster,
) -> None:
    async with await TestHarness.start(cluster.target()) as harness:
        workflow_id = await harness.create_workflow()
        request = StreamTaskDataRequest(
            task_execution_id=str(uuid.uuid4()),
            workflow_execution_id=workflow_id,
            sequence=1,
            type=TOKEN,
            payload="x",
        )
        stub = harness.grpc_client()
        assert (await stub.StreamTaskData(request)).acknowledged
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.StreamTaskData(request, metadata=(("authorization", "Bearer fwt_wrong"),))
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_the_synchronous_facade(tmp_path: Path) -> None:
    with SyncTestHarness.start() as harness:
        workflow_id = harness.create_workflow("test-wf")
        task_id = harness.create_task(workflow_id)
        stream = harness.subscribe(workflow_id)
        assert harness.publisher().send("token", "hi", workflow_id=workflow_id, task_id=task_id)
        event = next(stream.events(read_timeout=5))
        assert (event.event, event.data) == ("token", "hi")
        request = StreamTaskDataRequest(
            task_execution_id=task_id, workflow_execution_id=workflow_id, sequence=9, type=TOKEN
        )
        assert harness.grpc_client().StreamTaskData(request, timeout=10).acknowledged
        assert harness.http_url().startswith("http://127.0.0.1:")
