"""The wire adapters against real servers (the reference server, PostgreSQL-backed, or a scripted
aiohttp one), and the complete exchanges each reports to the observation hooks."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from conformance.wire import http_get, sse_answer
from harness.wire.blocking import HTTPStatusError, SSEConnection
from harness.wire.counting import open_counting
from harness.wire.observe import Recorder, observing
from harness.wire.stalled import StalledReader
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
        stalled = await StalledReader.open(world.workflow_url(wf), world.user.token)
        stalled.close()
    (exchange,) = recorder.exchanges
    assert exchange.label == "stalled reader" and exchange.status == 200
    assert exchange.end == "client-close"


async def test_the_blocking_connection_reads_a_stream_to_its_terminating_chunk(
    world: TenantWorld,
) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    recorder = Recorder()
    with observing(recorder):
        conn = SSEConnection(world.workflow_url(wf), world.user.token)
        await asyncio.to_thread(conn.open)
        async with world.publisher() as pub:
            await pub.token("hello", workflow_id=wf, task_id=task)
        await world.api.complete_workflow(world.slug, wf)
        events = await asyncio.to_thread(lambda: list(conn.events(read_timeout=5)))
        conn.close()
    assert [(e.event, e.data) for e in events] == [("token", "hello"), ("end", events[1].data)]
    assert conn.last_event_id == events[-1].id
    (stream,) = [e for e in recorder.exchanges if e.protocol == "sse"]
    assert stream.end == "terminating-chunk" and len(stream.frames) >= 2


async def test_the_blocking_connection_raises_for_an_error_status(world: TenantWorld) -> None:
    conn = SSEConnection(world.workflow_url(str(uuid.uuid4())), "sk_wrong")
    with pytest.raises(HTTPStatusError) as error:
        await asyncio.to_thread(conn.open)
    conn.close()
    assert error.value.status == 401 and '"status"' in error.value.body


class Frames:
    """A counting client's sink that keeps what it was given."""

    def __init__(self) -> None:
        self.scanned: list[bytes] = []
        self.closed = 0

    def scan(self, frames: bytes) -> None:
        self.scanned.append(frames)

    def lost(self) -> None:
        self.closed += 1


async def test_the_counting_client_reassembles_frames_split_across_chunks() -> None:
    async def split(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b'data: {"t":12', b'34}\n\ndata: {"t":5', b"6}\n", b"\n"):
            await response.write(piece)  # one chunk each
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/s", split)
    recorder, sink = Recorder(), Frames()
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        with observing(recorder):
            conn = await open_counting(str(server.make_url("/s")), None, sink)
            await asyncio.wait_for(conn.lost, 5)
    assert b"".join(sink.scanned) == b'data: {"t":1234}\n\ndata: {"t":56}\n\n'
    assert sink.closed == 1
    (exchange,) = recorder.exchanges
    assert exchange.label == "counting client" and exchange.status == 200
    assert exchange.end == "terminating-chunk"
