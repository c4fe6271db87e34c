"""End to end on one in-process reference server: gRPC publish → bus → SSE (seed phases 5, 10)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration


async def test_event_published_over_grpc_reaches_the_sse_subscriber(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        assert await pub.token("hello world", workflow_id=wf, task_id=task)
        event = await stream.next_event()
    assert (event.event, event.data) == ("token", "hello world")
    assert event.id is not None and event.id.isdigit()


async def test_response_headers_are_those_of_an_event_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.headers["Cache-Control"] == "no-cache"
        assert stream.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in stream.headers


async def test_every_event_type_keeps_its_name_and_order(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        for kind in ("token", "progress", "data", "error"):
            await pub.send(kind, f"{kind}-payload", workflow_id=wf, task_id=task)
        events = await stream.next_events(4)
    assert [(e.event, e.data) for e in events] == [
        ("token", "token-payload"), ("progress", "progress-payload"),
        ("data", "data-payload"), ("error", "error-payload"),
    ]  # fmt: skip
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 4


async def test_multiple_subscribers_receive_the_same_event(world: TenantWorld) -> None:
    wf = await world.workflow()
    streams = [await world.subscribe(wf) for _ in range(3)]
    async with world.publisher() as pub:
        await pub.data("shared", workflow_id=wf, task_id=str(uuid.uuid4()))
    received = [await s.next_event() for s in streams]
    for s in streams:
        await s.close()
    assert {(e.data, e.id) for e in received} == {("shared", received[0].id)}


async def test_payload_line_breaks_cannot_forge_events(world: TenantWorld) -> None:
    wf = await world.workflow()
    evil = "ok\n\nevent: error\ndata: forged\nid: 999\n\nretry: 1"
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await pub.token(evil, workflow_id=wf, task_id=str(uuid.uuid4()))
        await pub.token("next", workflow_id=wf, task_id=str(uuid.uuid4()))
        first, second = await stream.next_events(2)
    assert (first.event, first.data) == ("token", evil)
    assert second.data == "next"
    assert stream.retry is None


async def test_events_of_other_workflows_are_not_delivered(world: TenantWorld) -> None:
    wf, other = await world.workflow(), await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await pub.token("elsewhere", workflow_id=other, task_id=str(uuid.uuid4()))
        await pub.token("here", workflow_id=wf, task_id=str(uuid.uuid4()))
        assert (await stream.next_event()).data == "here"


async def test_keepalive_comments_arrive_at_the_configured_interval(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream:
        first = await stream.wait_comment(3)
        second = await stream.wait_comment(3)
    assert first.text == "keep-alive"
    assert 0.7 <= second.received_at - first.received_at <= 1.6


async def test_idle_timeout_ends_the_stream_and_events_reset_it(make_server, pg_url) -> None:  # type: ignore[no-untyped-def]
    server: Server = await make_server(idle_timeout=1.5, keepalive_interval=0.5)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    wf = await world.workflow()
    loop = asyncio.get_running_loop()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        opened = loop.time()
        for _ in range(3):  # keep it busy past the idle timeout
            await asyncio.sleep(0.8)
            await pub.token("tick", workflow_id=wf, task_id=str(uuid.uuid4()))
        await stream.next_events(3)
        await stream.wait_closed(4)
        lasted = loop.time() - opened
    await world.close()
    assert lasted >= 2.4 + 1.4  # the last event at ~2.4 s restarted the 1.5 s countdown


async def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    async with world.publisher() as pub:
        stream = await world.subscribe(wf)
        for i in range(3):
            await pub.token(f"t{i}", workflow_id=wf, task_id=task)
        seen = await stream.next_events(3)
        await stream.close()
        for i in range(3, 6):  # published while disconnected
            await pub.token(f"t{i}", workflow_id=wf, task_id=task)
        async with await world.subscribe(wf, last_event_id=seen[1].id) as resumed:
            await pub.token("t6", workflow_id=wf, task_id=task)
            rest = await resumed.next_events(5)
            await resumed.assert_no_event(within=0.3)
    assert [e.data for e in rest] == ["t2", "t3", "t4", "t5", "t6"]


async def test_last_event_id_query_parameter_resumes_too(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        async with await world.subscribe(wf) as stream:
            await pub.token("a", workflow_id=wf, task_id=str(uuid.uuid4()))
            first = await stream.next_event()
        await pub.token("b", workflow_id=wf, task_id=str(uuid.uuid4()))
        query = {"lastEventId": first.id or ""}
        async with await world.subscribe(wf, query=query) as resumed:
            assert (await resumed.next_event()).data == "b"


async def test_from_start_replays_what_is_retained(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        for i in range(3):
            await pub.token(f"early{i}", workflow_id=wf, task_id=str(uuid.uuid4()))
    async with await world.subscribe(wf, query={"from": "start"}) as stream:
        assert [e.data for e in await stream.next_events(3)] == ["early0", "early1", "early2"]


async def test_without_a_cursor_the_stream_is_live_only(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        await pub.token("before", workflow_id=wf, task_id=str(uuid.uuid4()))
        async with await world.subscribe(wf) as stream:
            await pub.token("after", workflow_id=wf, task_id=str(uuid.uuid4()))
            assert (await stream.next_event()).data == "after"


@pytest.mark.parametrize("cursor", ["999999999", "not-a-cursor"])
async def test_unplaceable_cursor_yields_gap_then_retained_events(
    world: TenantWorld, cursor: str
) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        await pub.token("kept", workflow_id=wf, task_id=str(uuid.uuid4()))
    async with await world.subscribe(wf, last_event_id=cursor) as stream:
        gap, kept = await stream.next_events(2)
    assert gap.event == "gap"
    assert kept.data == "kept"


async def test_cursor_older_than_retention_yields_gap(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = await make_server(replay_max_events=2)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    wf = await world.workflow()
    async with world.publisher() as pub, await world.subscribe(wf) as stream:
        for i in range(5):
            await pub.token(f"e{i}", workflow_id=wf, task_id=str(uuid.uuid4()))
        first = (await stream.next_events(5))[0]
    async with await world.subscribe(wf, last_event_id=first.id) as resumed:
        events = await resumed.next_events(3)
    await world.close()
    assert [e.event for e in events] == ["gap", "token", "token"]
    assert [e.data for e in events[1:]] == ["e3", "e4"]


async def test_completion_sends_end_and_closes(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream:
        await world.api.complete_workflow(world.slug, wf, "FAILED")
        end = await stream.next_event()
        await stream.wait_closed(2)
    assert end.event == "end"
    assert json.loads(end.data) == {"status": "FAILED"}


async def test_connecting_to_a_finished_workflow_replays_then_ends(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        await pub.token("last words", workflow_id=wf, task_id=str(uuid.uuid4()))
    await world.api.complete_workflow(world.slug, wf)
    async with await world.subscribe(wf, query={"from": "start"}) as stream:
        events = await stream.next_events(2)
        await stream.wait_closed(2)
    assert [e.event for e in events] == ["token", "end"]
    async with await world.subscribe(wf) as live_only:
        assert (await live_only.next_event()).event == "end"
        await live_only.wait_closed(2)


async def test_client_disconnect_releases_the_subscription(world: TenantWorld) -> None:
    wf = await world.workflow()
    stream = await world.subscribe(wf)
    gauge = 'flovyn_stream_subscribers_active{kind="workflow"}'
    assert (await world.metrics())[gauge] == 1
    await stream.close()
    for _ in range(40):
        if (await world.metrics())[gauge] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await world.metrics())[gauge] == 0


async def test_metrics_count_published_and_delivered_events(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await pub.progress("50%", workflow_id=wf, task_id=str(uuid.uuid4()))
        await stream.next_event()
    samples = await world.metrics()
    assert samples['flovyn_stream_events_published_total{type="PROGRESS"}'] == 1
    assert samples['flovyn_stream_events_delivered_total{type="PROGRESS"}'] == 1
    assert samples['flovyn_stream_sse_responses_total{status="200"}'] >= 1
    assert samples["flovyn_stream_delivery_latency_seconds_count"] >= 1


async def test_slow_subscriber_is_evicted_without_slowing_others(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = await make_server(subscriber_buffer=8)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    wf = await world.workflow()
    # A raw socket that sends the request and never reads: its buffers fill up, then the server's
    # per-subscriber queue overflows and the subscriber is evicted.
    reader, writer = await asyncio.open_connection(*server.http_url[7:].split(":"))
    path = world.workflow_url(wf).split(server.http_url)[1]
    auth = f"Authorization: Bearer {world.user.token}"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    payload = "x" * 60_000
    async with await world.subscribe(wf) as healthy, world.publisher() as pub:
        for i in range(200):
            await pub.data(payload + str(i), workflow_id=wf, task_id=str(uuid.uuid4()))
            await healthy.next_event(timeout=5)
            if (await world.metrics()).get("flovyn_stream_subscriber_evictions_total", 0):
                break
    writer.close()
    samples = await world.metrics()
    await world.close()
    assert samples["flovyn_stream_subscriber_evictions_total"] == 1
