"""StreamTaskDataBatch and StreamTaskDataStream over a real gRPC channel, and the batch path's
promises: one lookup per workflow per batch, nothing of a refused batch delivered."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, cast

import aiohttp
import grpc
import pytest

from harness.admin import fetch_metrics
from harness.publisher import Publisher, batch_request
from harness.world import TenantWorld
from reference_server.app import Server
from reference_server.directory import Directory
from taskstream_proto import task_streaming_pb2 as pb
from tests.conftest import ServerFactory

pytestmark = pytest.mark.integration


def _id() -> str:
    return str(uuid.uuid4())


StreamCall = grpc.aio.StreamUnaryCall[pb.StreamTaskDataBatchRequest, pb.StreamTaskDataBatchResponse]


def _open_stream(pub: Publisher) -> StreamCall:
    """A bare StreamTaskDataStream call, written to message by message."""
    metadata = [("authorization", f"Bearer {pub.credentials}")] if pub.credentials else []
    return pub._stub.StreamTaskDataStream(metadata=metadata)  # type: ignore[call-arg]


def _events(pub: Publisher, n: int, wf: str) -> pb.StreamTaskDataBatchRequest:
    return batch_request(
        [pub.request("token", str(i), workflow_id=wf, task_id=_id()) for i in range(n)]
    )


async def test_a_batch_is_delivered_in_order(world: TenantWorld) -> None:
    wf, task = await world.workflow(), _id()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        ack = await pub.batch(
            [pub.request("token", str(i), workflow_id=wf, task_id=task) for i in range(50)]
        )
        events = await stream.next_events(50)
    assert (ack.accepted, ack.rejected) == (50, [])
    assert [e.data for e in events] == [str(i) for i in range(50)]
    assert len({e.id for e in events}) == 50


async def test_bad_events_are_rejected_by_index_and_reach_nobody(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    wf, theirs = await world.workflow(), await other_world.workflow()
    async with await other_world.subscribe(theirs) as their_stream:
        async with await world.subscribe(wf) as stream, world.publisher() as pub:
            ack = await pub.batch(
                [
                    pub.request("token", "a", workflow_id=wf, task_id=_id()),
                    pub.request(0, "bad type", workflow_id=wf, task_id=_id()),
                    pub.request("token", "unknown", workflow_id=_id(), task_id=_id()),
                    pub.request("token", "intrusion", workflow_id=theirs, task_id=_id()),
                    pub.request("token", "bad id", workflow_id="nope", task_id=_id()),
                    pub.request("token", "x" * 70_000, workflow_id=wf, task_id=_id()),
                    pub.request("token", "b", workflow_id=wf, task_id=_id()),
                ]
            )
            events = await stream.next_events(2)
        async with other_world.publisher() as owner:
            await owner.token("marker", workflow_id=theirs, task_id=_id())
        first_of_theirs = await their_stream.next_event()
    assert ack.accepted == 2
    assert [(index, code) for index, code, _ in ack.rejected] == [
        (1, "INVALID_ARGUMENT"),
        (2, "NOT_FOUND"),
        (3, "PERMISSION_DENIED"),
        (4, "INVALID_ARGUMENT"),
        (5, "INVALID_ARGUMENT"),
    ]
    assert [e.data for e in events] == ["a", "b"]
    assert first_of_theirs.data == "marker"


async def test_one_batch_serves_several_workflows(world: TenantWorld) -> None:
    one, two = await world.workflow(), await world.workflow()
    async with (
        await world.subscribe(one) as first,
        await world.subscribe(two) as second,
        world.publisher() as pub,
    ):
        ack = await pub.batch(
            [
                pub.request("token", f"{n}{i}", workflow_id=wf, task_id=_id())
                for i in range(3)
                for n, wf in (("one", one), ("two", two))
            ]
        )
        got_one, got_two = await first.next_events(3), await second.next_events(3)
    assert ack.accepted == 6
    assert [e.data for e in got_one] == ["one0", "one1", "one2"]
    assert [e.data for e in got_two] == ["two0", "two1", "two2"]


async def test_an_empty_batch_accepts_nothing(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        ack = await pub.batch([])
    assert (ack.accepted, ack.rejected) == (0, [])


@pytest.mark.parametrize(
    ("limits", "events", "payload"),
    [({"max_batch_events": 5}, 6, "x"), ({"max_batch_bytes": 1000}, 3, "y" * 400)],
)
async def test_a_batch_over_a_limit_is_refused_whole(
    make_server: ServerFactory, limits: dict[str, Any], events: int, payload: str
) -> None:
    server = await make_server(**limits)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    try:
        wf = await world.workflow()
        async with await world.subscribe(wf) as stream, world.publisher() as pub:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pub.batch(
                    [pub.request("token", payload, workflow_id=wf, task_id=_id())] * events
                )
            await pub.token("marker", workflow_id=wf, task_id=_id())
            first = await stream.next_event()
    finally:
        await world.close()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most" in (refused.value.details() or "")
    assert first.data == "marker"


@pytest.mark.parametrize(
    ("kind", "code"), [(None, "UNAUTHENTICATED"), ("user", "PERMISSION_DENIED")]
)
async def test_a_batch_needs_a_worker_token(
    world: TenantWorld, kind: str | None, code: str
) -> None:
    wf = await world.workflow()
    token = world.user.token if kind == "user" else ""
    async with Publisher(world.grpc_address, token or None) as pub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pub.batch([pub.request("token", "x", workflow_id=wf, task_id=_id())])
    assert refused.value.code().name == code


async def test_a_batch_of_one_workflow_looks_it_up_once(server: Server, world: TenantWorld) -> None:
    assert server.ctx is not None
    ctx = server.ctx
    wf = await world.workflow()
    ctx.directory = Directory(ctx.store)  # forget what creating the workflow taught it
    lookups: list[uuid.UUID] = []
    original = ctx.store.workflow

    async def counted(workflow_id: uuid.UUID) -> Any:
        lookups.append(workflow_id)
        return await original(workflow_id)

    ctx.store.workflow = counted  # type: ignore[method-assign]
    async with world.publisher() as pub:
        for _ in range(2):
            ack = await pub.batch(
                [pub.request("token", "x", workflow_id=wf, task_id=_id()) for _ in range(50)]
            )
            assert ack.accepted == 50
    assert lookups == [uuid.UUID(wf)]  # once in the first batch, cached for the second


async def test_a_stream_keeps_order_across_batches(world: TenantWorld) -> None:
    wf, task = await world.workflow(), _id()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        async with pub.stream(flush_events=7, flush_ms=5) as producer:
            for i in range(30):
                await producer.token(str(i), workflow_id=wf, task_id=task)
        events = await stream.next_events(30)
    assert producer.result is not None
    assert (producer.result.accepted, producer.result.rejected) == (30, [])
    assert producer.batches == 5  # four full batches of 7, then the rest on close
    assert [e.data for e in events] == [str(i) for i in range(30)]


async def test_a_stream_flushes_on_its_timer(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with (
        await world.subscribe(wf) as stream,
        world.publisher() as pub,
        pub.stream(flush_events=1000, flush_ms=10) as producer,
    ):
        await producer.token("soon", workflow_id=wf, task_id=_id())
        # Delivered while the call is still open: the timer flushed it.
        assert (await stream.next_event()).data == "soon"


async def test_a_stream_numbers_rejections_across_batches(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        call = _open_stream(pub)
        await call.write(_events(pub, 3, wf))
        await call.write(_events(pub, 1, _id()))
        await call.done_writing()
        response = await call
    assert response.accepted == 3
    assert [(r.index, r.code) for r in response.rejected] == [(3, "NOT_FOUND")]


async def test_a_stream_ends_at_once_on_a_limit_breach(make_server: ServerFactory) -> None:
    server = await make_server(max_batch_events=2)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    try:
        wf = await world.workflow()
        async with world.publisher() as pub:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async with pub.stream(flush_events=3) as producer:
                    for i in range(3):
                        await producer.token(str(i), workflow_id=wf, task_id=_id())
                    # The call is over before the client closes it.
                    await producer.flush()
                    for i in range(100):
                        await producer.token(str(i), workflow_id=wf, task_id=_id())
    finally:
        await world.close()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_stream_without_credentials_ends_at_once(world: TenantWorld) -> None:
    async with Publisher(world.grpc_address, None) as pub:
        call = _open_stream(pub)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call  # never writes nor closes: the status comes anyway
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _unauthenticated_answers(world: TenantWorld) -> float:
    """How many calls the server has answered UNAUTHENTICATED (its own count)."""
    async with aiohttp.ClientSession() as session:
        samples = await fetch_metrics(session, world.http_url)
    return samples.get('flovyn_stream_grpc_requests_total{code="UNAUTHENTICATED"}', 0.0)


async def test_a_revoked_token_ends_an_open_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        call = _open_stream(pub)
        await call.write(_events(pub, 1, wf))
        before = await _unauthenticated_answers(world)
        await world.api.revoke_token(world.worker.id)
        # The server checks the token on each message it takes (the first one too, if it takes
        # it only after the revocation): the producer writes one at a time until the call ends.
        status = asyncio.ensure_future(call.code())
        with contextlib.suppress(grpc.aio.AioRpcError):
            for _ in range(10):
                await call.write(_events(pub, 1, wf))
                await asyncio.wait({status}, timeout=1.0)
                if status.done():
                    break
        code = await status
    # A write racing the server's end of the call fails in grpc's client, which then reports its
    # own INTERNAL instead of the server's status; what the server answered is in its count.
    assert code in {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL}
    assert await _unauthenticated_answers(world) == before + 1


@pytest.mark.parametrize("method", ["StreamTaskDataBatch", "StreamTaskDataStream"])
async def test_undecodable_batches_are_invalid_argument(world: TenantWorld, method: str) -> None:
    path = f"/flovyn.v1.TaskExecution/{method}"
    md = (("authorization", f"Bearer {world.worker.token}"),)
    async with grpc.aio.insecure_channel(world.grpc_address) as channel:
        # Bytes in, bytes out: no client-side encoding. A truncated `events` field.
        channel = cast(Any, channel)  # the stubs want serializers we leave out on purpose
        if method == "StreamTaskDataBatch":
            call: Any = channel.unary_unary(path)(b"\x0a\x05ab", metadata=md, timeout=5)
        else:
            call = channel.stream_unary(path)(iter([b"\x0a\x05ab"]), metadata=md, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a StreamTaskDataBatchRequest" in (refused.value.details() or "")
