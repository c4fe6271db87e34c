"""Every adapter of the harness reports complete exchanges to the observation hooks, against
the real reference server (PostgreSQL-backed, real sockets)."""

from __future__ import annotations

import uuid

import grpc
import pytest

from conformance.wire import StalledSubscriber, http_get, sse_answer
from harness.wire.observe import Recorder, observing
from harness.world import TenantWorld

pytestmark = pytest.mark.integration


async def test_an_sse_stream_is_one_exchange_from_request_to_terminating_chunk(
    world: TenantWorld,
) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    recorder = Recorder()
    with observing(recorder):
        async with await world.subscribe(wf) as stream:
            async with world.publisher() as pub:
                await pub.token("hello", workflow_id=wf, task_id=task)
            await stream.next_event()
            await world.api.complete_workflow(world.slug, wf)
            await stream.wait_closed(5)
    sse = [e for e in recorder.exchanges if e.protocol == "sse"]
    assert len(sse) == 1
    exchange = sse[0]
    assert exchange.method == "GET" and exchange.status == 200
    assert ("Authorization", "Bearer <redacted>") in exchange.request_headers
    assert world.user.token not in repr(exchange)
    assert dict(exchange.response_headers)["Content-Type"].startswith("text/event-stream")
    events = [f for f in exchange.frames if f.kind == "event" and f.data is not None]
    assert [f.event for f in events] == ["token", "end"]
    assert events[0].id is not None and events[0].data == "hello"
    assert exchange.end == "terminating-chunk"
    assert exchange.ended_at is not None and exchange.ended_at >= events[-1].at >= 0
    grpc_calls = [e for e in recorder.exchanges if e.protocol == "grpc"]
    assert [e.grpc_code for e in grpc_calls] == ["OK"]
    http = [e for e in recorder.exchanges if e.protocol == "http"]
    assert [e.method for e in http] == ["POST"]  # completing the workflow
    assert http[0].status is not None and http[0].status < 300 and http[0].end is not None


async def test_an_error_response_keeps_its_problem_body(world: TenantWorld) -> None:
    recorder = Recorder()
    with observing(recorder):
        answer = await sse_answer(world.workflow_url(str(uuid.uuid4())), token="sk_not_a_token")
        status, _, _ = await http_get(world.http_url + "/no-such-path")
    assert answer.status == 401 and status == 404
    unauthorized, missing = recorder.exchanges
    assert unauthorized.protocol == "sse" and unauthorized.status == 401
    assert unauthorized.body is not None and '"status"' in unauthorized.body
    assert dict(unauthorized.response_headers)["Content-Type"] == "application/problem+json"
    assert unauthorized.end in ("eof", "terminating-chunk") and unauthorized.frames == []
    assert missing.protocol == "http" and missing.status == 404 and missing.end is not None


async def test_grpc_calls_record_code_details_and_a_cut_request(world: TenantWorld) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    recorder = Recorder()
    with observing(recorder):
        async with world.publisher() as pub:
            await pub.token("x" * 1000, workflow_id=wf, task_id=task)
            with pytest.raises(grpc.aio.AioRpcError):
                await pub.send("token", "y", workflow_id=wf, task_id=task, token="wrong")
    accepted, refused = recorder.exchanges
    assert accepted.method == "/flovyn.v1.TaskExecution/StreamTaskData"
    assert accepted.url == world.grpc_address and accepted.grpc_code == "OK"
    assert accepted.request_summary is not None and "800 more" in accepted.request_summary
    assert accepted.request_headers == [("authorization", "Bearer <redacted>")]
    assert accepted.ended_at is not None
    assert refused.grpc_code == "UNAUTHENTICATED" and refused.grpc_details


async def test_the_stalled_reader_is_observed(world: TenantWorld) -> None:
    wf = await world.workflow()
    recorder = Recorder()
    with observing(recorder):
        stalled = await StalledSubscriber.open(world.workflow_url(wf), world.user.token)
        stalled.close()
    (exchange,) = recorder.exchanges
    assert exchange.label == "stalled reader" and exchange.status == 200
    assert exchange.end == "client-close"
