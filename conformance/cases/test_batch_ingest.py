"""SPEC §3.6: StreamTaskDataBatch and StreamTaskDataStream."""

from __future__ import annotations

import asyncio

import grpc

from conformance import requirement
from conformance.checks import expect, expect_in
from conformance.fixtures import Facts
from conformance.wire import events_upto, new_id, rpc_status
from harness.publisher import Publisher, batch_request
from harness.world import TenantWorld
from taskstream_proto import task_streaming_pb2 as pb


def _codes(rejected: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    return [(index, code) for index, code, _message in rejected]


@requirement("grpc/3.6/1")
async def test_a_batch_is_delivered_in_order(world: TenantWorld) -> None:
    wf, task = await world.workflow(), new_id()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        ack = await pub.batch(
            [pub.request("token", str(i), workflow_id=wf, task_id=task) for i in range(20)]
        )
        events = await events_upto(stream, 20)
    expect("answer (accepted, rejected)", (ack.accepted, ack.rejected), (20, []))
    expect("payloads delivered", [e.data for e in events], [str(i) for i in range(20)])


@requirement("grpc/3.6/2")
async def test_bad_events_are_rejected_by_index(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        ack = await pub.batch(
            [
                pub.request("token", "a", workflow_id=wf, task_id=new_id()),
                pub.request(0, "type 0", workflow_id=wf, task_id=new_id()),
                pub.request("token", "unknown", workflow_id=new_id(), task_id=new_id()),
                pub.request("token", "bad id", workflow_id="not-a-uuid", task_id=new_id()),
                pub.request("token", "b", workflow_id=wf, task_id=new_id()),
            ]
        )
        events = await events_upto(stream, 2)
    expect("accepted", ack.accepted, 2)
    expect(
        "rejections (index, code)",
        _codes(ack.rejected),
        [(1, "INVALID_ARGUMENT"), (2, "NOT_FOUND"), (3, "INVALID_ARGUMENT")],
    )
    expect("payloads delivered", [e.data for e in events], ["a", "b"])


@requirement("grpc/3.6/3")
async def test_a_cross_tenant_event_in_a_batch_reaches_nobody(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    wf, own = await world.workflow(), await other_world.workflow()
    async with await world.subscribe(wf) as stream:
        async with other_world.publisher() as intruder:
            ack = await intruder.batch(
                [
                    intruder.request("token", "own", workflow_id=own, task_id=new_id()),
                    intruder.request("token", "intrusion", workflow_id=wf, task_id=new_id()),
                ]
            )
        async with world.publisher() as owner:
            await owner.token("marker", workflow_id=wf, task_id=new_id())
        first = await stream.next_event()
    expect("answer (accepted, rejections)", (ack.accepted, _codes(ack.rejected)),
           (1, [(1, "PERMISSION_DENIED")]))  # fmt: skip
    expect("first event after a cross-tenant batch", first.data, "marker")


@requirement("grpc/3.6/4")
async def test_one_batch_serves_several_workflows(world: TenantWorld) -> None:
    one, two = await world.workflow(), await world.workflow()
    async with (
        await world.subscribe(one) as first,
        await world.subscribe(two) as second,
        world.publisher() as pub,
    ):
        ack = await pub.batch(
            [
                pub.request("token", f"{name}{i}", workflow_id=wf, task_id=new_id())
                for i in range(3)
                for name, wf in (("one", one), ("two", two))
            ]
        )
        got_one, got_two = await events_upto(first, 3), await events_upto(second, 3)
    expect("accepted", ack.accepted, 6)
    expect("first workflow's events", [e.data for e in got_one], ["one0", "one1", "one2"])
    expect("second workflow's events", [e.data for e in got_two], ["two0", "two1", "two2"])


@requirement("grpc/3.6/5")
async def test_an_empty_batch_accepts_nothing(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        ack = await pub.batch([])
    expect("answer (accepted, rejected)", (ack.accepted, ack.rejected), (0, []))


@requirement("grpc/3.6/6")
async def test_a_batch_over_the_events_limit_is_refused_whole(
    world: TenantWorld, facts: Facts
) -> None:
    wf = await world.workflow()
    count = facts.max_batch_events + 1
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        status = await rpc_status(
            pub.batch([pub.request("token", "x", workflow_id=wf, task_id=new_id())] * count)
        )
        await pub.token("marker", workflow_id=wf, task_id=new_id())
        first = await stream.next_event()
    expect_in(f"status of a batch of {count}", status, ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"))
    expect("first event after the refused batch", first.data, "marker")


@requirement("grpc/3.6/7")
async def test_a_batch_without_a_worker_token_is_refused(world: TenantWorld) -> None:
    wf = await world.workflow()
    statuses = {}
    for name, token in (("no token", None), ("user token", world.user.token)):
        async with Publisher(world.grpc_address, token) as pub:
            request = pub.request("token", "x", workflow_id=wf, task_id=new_id())
            statuses[name] = await rpc_status(pub.batch([request]))
    expect("statuses", statuses,
           {"no token": "UNAUTHENTICATED", "user token": "PERMISSION_DENIED"})  # fmt: skip


def _open_stream(
    pub: Publisher, token: str | None
) -> grpc.aio.StreamUnaryCall[pb.StreamTaskDataBatchRequest, pb.StreamTaskDataBatchResponse]:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return pub._stub.StreamTaskDataStream(metadata=metadata)  # type: ignore[call-arg]


@requirement("grpc/3.6/8")
async def test_a_stream_keeps_order_across_batches(world: TenantWorld) -> None:
    wf, task = await world.workflow(), new_id()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:

        def events(first: int) -> list[pb.StreamTaskDataRequest]:
            return [
                pub.request("token", str(i), workflow_id=wf, task_id=task)
                for i in range(first, first + 4)
            ]

        unknown = pub.request("token", "unknown", workflow_id=new_id(), task_id=new_id())
        call = _open_stream(pub, world.worker.token)
        for message in (events(0), [unknown, *events(4)], events(8)):
            await call.write(batch_request(message))
        await call.done_writing()
        answer = await call
        delivered = await events_upto(stream, 12)
    expect("accepted", answer.accepted, 12)
    expect("rejections (index, code)", [(r.index, r.code) for r in answer.rejected],
           [(4, "NOT_FOUND")])  # fmt: skip
    expect("payloads delivered", [e.data for e in delivered], [str(i) for i in range(12)])


@requirement("grpc/3.6/9")
async def test_a_stream_without_credentials_ends_at_once(world: TenantWorld) -> None:
    async with Publisher(world.grpc_address, None) as pub:
        call = _open_stream(pub, None)
        try:
            status = await rpc_status(asyncio.wait_for(call, 5.0))
        except TimeoutError:
            status = "no status within 5 s"
        finally:
            call.cancel()
    expect("status of a stream without credentials, before it is closed", status,
           "UNAUTHENTICATED")  # fmt: skip
