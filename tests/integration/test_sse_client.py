"""Integration tests of harness.sse_client.SSEStream against a real aiohttp server.

The server runs on 127.0.0.1 with an OS-assigned port and plays scripted streams. Steps
are bytes (written and flushed), floats (sleep), or asyncio.Events (wait for the test to
release the next step), which keeps timing-sensitive assertions deterministic.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from harness.sse_client import SSEStream, StreamClosed
from harness.wire.sse import SSEComment

pytestmark = pytest.mark.integration

Step = bytes | float | asyncio.Event
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ScriptedServer:
    """A real HTTP server whose routes play scripts and record request headers."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/{path:.*}", self._handle)
        self.server = TestServer(self.app, host="127.0.0.1", port=0)
        self.requests: dict[str, list[CIMultiDictProxy[str]]] = defaultdict(list)
        self._routes: dict[str, Handler] = {}

    async def start(self) -> None:
        # A short shutdown timeout so a held-open handler never stalls teardown.
        await self.server.start_server(shutdown_timeout=0.5)

    async def close(self) -> None:
        await self.server.close()

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def route(self, path: str, handler: Handler) -> str:
        self._routes[path] = handler
        return self.url(path)

    def script(self, path: str, *steps: Step, hold: bool = False) -> str:
        """Serve ``steps`` as text/event-stream; ``hold`` keeps the response open."""

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await resp.prepare(request)
            for step in steps:
                if isinstance(step, bytes):
                    await resp.write(step)
                elif isinstance(step, asyncio.Event):
                    await step.wait()
                else:
                    await asyncio.sleep(step)
            if hold:
                await asyncio.Event().wait()  # until the client disconnects
            await resp.write_eof()
            return resp

        return self.route(path, handler)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path].append(request.headers)
        handler = self._routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    srv = ScriptedServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def _reader_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("sse-reader")]


# -- events ----------------------------------------------------------------------------


async def test_events_arrive_in_order_with_fields(server: ScriptedServer) -> None:
    url = server.script(
        "/events",
        b"retry: 1000\n\n",
        b'id: 1\nevent: task\ndata: {"task": "t1", "n": 1}\n\n',
        b"data: plain\n\n",
        hold=True,
    )
    async with SSEStream.open(url) as s:
        assert s.status == 200
        assert s.content_type == "text/event-stream"
        assert s.headers["Cache-Control"] == "no-cache"
        assert s.body_text is None
        first = await s.next_event()
        assert (first.event, first.id, first.retry) == ("task", "1", 1000)
        assert first.json() == {"task": "t1", "n": 1}
        second = await s.next_event()
        assert (second.event, second.data, second.id) == ("message", "plain", "1")
        assert s.events_received == [first, second]
        assert s.last_event_id == "1"
        assert s.retry == 1000
        assert s.opened_at <= first.received_at <= second.received_at <= time.monotonic()
        assert not s.closed


async def test_line_endings_split_across_network_writes(server: ScriptedServer) -> None:
    gate = asyncio.Event()
    url = server.script(
        "/crlf",
        *(b"data: a\r", 0.05, b"\ndata: b\r", 0.05, b"\n\r", 0.05, b"\n", gate, b": hb\r\n"),
        hold=True,
    )
    async with SSEStream.open(url) as s:
        event = await s.next_event()
        assert event.data == "a\nb"
        gate.set()
        assert (await s.wait_comment(timeout=2)).text == "hb"
        # Everything before the comment is parsed: the LF after CR was no blank line.
        await s.assert_no_event(within=0.05)


async def test_comments_recorded_with_arrival_times(server: ScriptedServer) -> None:
    gate1, gate2 = asyncio.Event(), asyncio.Event()
    url = server.script("/hb", gate1, b": hb 1\n\n", gate2, b":hb 2\n", hold=True)
    async with SSEStream.open(url) as s:
        gate1.set()
        c1 = await s.wait_comment(timeout=2)
        await asyncio.sleep(0.1)
        gate2.set()
        c2 = await s.wait_comment(timeout=2)
        assert isinstance(c1, SSEComment)
        assert (c1.text, c2.text) == ("hb 1", "hb 2")
        assert s.comments == [c1, c2]
        assert s.opened_at <= c1.received_at
        assert c2.received_at - c1.received_at >= 0.09
        assert s.events_received == []


async def test_wait_comment_times_out(server: ScriptedServer) -> None:
    url = server.script("/quiet", b"data: x\n\n", hold=True)
    async with SSEStream.open(url) as s:
        with pytest.raises(TimeoutError, match=r"no comment within 0\.1s"):
            await s.wait_comment(timeout=0.1)


# -- timeouts and assert_no_event ------------------------------------------------------


async def test_next_event_timeout_is_clear(server: ScriptedServer) -> None:
    url = server.script("/silent", hold=True)
    async with SSEStream.open(url) as s:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no event within 0\.2s \(0 received"):
            await s.next_event(timeout=0.2)
        assert time.monotonic() - start >= 0.19
        assert not s.closed


async def test_timed_out_wait_does_not_lose_later_event(server: ScriptedServer) -> None:
    gate = asyncio.Event()
    url = server.script("/late", gate, b"data: late\n\n", hold=True)
    async with SSEStream.open(url) as s:
        with pytest.raises(TimeoutError):
            await s.next_event(timeout=0.05)
        waiter = asyncio.create_task(s.next_event(timeout=10))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        assert (await s.next_event(timeout=2)).data == "late"


async def test_next_events_total_timeout(server: ScriptedServer) -> None:
    url = server.script("/one", b"data: 1\n\n", hold=True)
    async with SSEStream.open(url) as s:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"got 1 of 3 events within 0\.3s"):
            await s.next_events(3, timeout=0.3)
        assert time.monotonic() - start < 1.0


async def test_next_events_returns_batch(server: ScriptedServer) -> None:
    url = server.script("/batch", b"data: 1\n\ndata: 2\n\n", 0.05, b"data: 3\n\n", hold=True)
    async with SSEStream.open(url) as s:
        events = await s.next_events(3, timeout=2)
        assert [e.data for e in events] == ["1", "2", "3"]


async def test_assert_no_event_passes_for_silent_stream(server: ScriptedServer) -> None:
    url = server.script("/silent", b": only a comment\n\n", hold=True)
    async with SSEStream.open(url) as s:
        start = time.monotonic()
        await s.assert_no_event(within=0.2)
        assert time.monotonic() - start >= 0.19


async def test_assert_no_event_fails_when_event_arrives(server: ScriptedServer) -> None:
    gate = asyncio.Event()
    url = server.script("/surprise", gate, b"event: late\ndata: boo\n\n", hold=True)
    async with SSEStream.open(url) as s:
        gate.set()
        with pytest.raises(AssertionError, match=r"unexpected event.*event='late'.*'boo'"):
            await s.assert_no_event(within=2)


async def test_assert_no_event_fails_for_already_queued_event(server: ScriptedServer) -> None:
    gate = asyncio.Event()
    url = server.script("/queued", gate, b"data: early\n\n: after\n", hold=True)
    async with SSEStream.open(url) as s:
        gate.set()
        await s.wait_comment(timeout=2)  # the event before it is queued by now
        assert len(s.events_received) == 1
        with pytest.raises(AssertionError, match="early"):
            await s.assert_no_event(within=0.01)


async def test_assert_no_event_returns_early_when_stream_ends(server: ScriptedServer) -> None:
    url = server.script("/bye", b": bye\n\n")
    async with SSEStream.open(url) as s:
        start = time.monotonic()
        await s.assert_no_event(within=5)
        assert time.monotonic() - start < 2
        assert s.closed


# -- end of stream ---------------------------------------------------------------------


async def test_server_ending_stream_closes_and_raises(server: ScriptedServer) -> None:
    url = server.script("/finite", b"data: a\n\n", b"data: b\n\ndata: unterminated\n")
    async with SSEStream.open(url) as s:
        await s.wait_closed(timeout=2)
        assert s.closed
        assert s.closed_event.is_set()
        assert s.error is None
        assert [e.data for e in await s.next_events(2)] == ["a", "b"]
        with pytest.raises(StreamClosed, match=r"ended by server\) after 2 events"):
            await s.next_event()
        with pytest.raises(StreamClosed):  # and keeps raising
            await s.next_event(timeout=0.01)
        with pytest.raises(StreamClosed, match="got 0 of 1"):
            await s.next_events(1)
        assert _reader_tasks() == []


async def test_stream_end_wakes_pending_waiters(server: ScriptedServer) -> None:
    gate = asyncio.Event()
    url = server.script("/wake", gate)
    async with SSEStream.open(url) as s:
        event_waiter = asyncio.create_task(s.next_event(timeout=10))
        comment_waiter = asyncio.create_task(s.wait_comment(timeout=10))
        await asyncio.sleep(0.01)
        start = time.monotonic()
        gate.set()
        with pytest.raises(StreamClosed):
            await event_waiter
        with pytest.raises(StreamClosed):
            await comment_waiter
        assert time.monotonic() - start < 2


async def test_wait_closed_times_out_on_open_stream(server: ScriptedServer) -> None:
    url = server.script("/open", hold=True)
    async with SSEStream.open(url) as s:
        with pytest.raises(TimeoutError, match=r"still open after 0\.1s"):
            await s.wait_closed(timeout=0.1)


async def test_transport_error_ends_stream_with_error(server: ScriptedServer) -> None:
    async def abort(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: before abort\n\n")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()  # no chunked terminator: the body is incomplete
        return resp

    url = server.route("/abort", abort)
    async with SSEStream.open(url) as s:
        await s.wait_closed(timeout=2)
        assert isinstance(s.error, aiohttp.ClientError)
        assert (await s.next_event()).data == "before abort"
        with pytest.raises(StreamClosed, match="error"):
            await s.next_event()


# -- non-200 ---------------------------------------------------------------------------


async def test_non_200_problem_json_is_exposed(server: ScriptedServer) -> None:
    problem = {
        "type": "https://example.test/problems/unauthenticated",
        "title": "Unauthenticated",
        "status": 401,
    }

    async def unauthorized(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            problem,
            status=401,
            content_type="application/problem+json",
            headers={"WWW-Authenticate": "Bearer"},
        )

    url = server.route("/private", unauthorized)
    async with SSEStream.open(url) as s:
        assert s.status == 401
        assert s.content_type == "application/problem+json"
        assert s.headers["WWW-Authenticate"] == "Bearer"
        assert s.body_text is not None and "Unauthenticated" in s.body_text
        assert await s.problem() == problem
        assert s.closed
        with pytest.raises(StreamClosed, match="status 401"):
            await s.next_event()
        await s.assert_no_event(within=1)


async def test_non_json_error_body(server: ScriptedServer) -> None:
    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="try later")

    url = server.route("/down", unavailable)
    async with SSEStream.open(url) as s:
        assert s.status == 503
        assert s.body_text == "try later"
        with pytest.raises(ValueError):
            await s.problem()


async def test_problem_on_200_is_an_error(server: ScriptedServer) -> None:
    url = server.script("/ok", hold=True)
    async with SSEStream.open(url) as s:
        with pytest.raises(ValueError, match="no error body"):
            await s.problem()


async def test_404_for_unknown_path(server: ScriptedServer) -> None:
    async with SSEStream.open(server.url("/nope")) as s:
        assert s.status == 404
        assert s.closed


# -- request headers and reconnect -----------------------------------------------------


async def test_headers_and_token_sent(server: ScriptedServer) -> None:
    url = server.script("/auth", b"data: x\n\n", hold=True)
    async with SSEStream.open(
        url, token="s3cret", last_event_id="17", headers={"X-Request-Id": "req-1"}
    ) as s:
        await s.next_event()
        assert s.request_headers["Authorization"] == "Bearer s3cret"
    (sent,) = server.requests["/auth"]
    assert sent["Accept"] == "text/event-stream"
    assert sent["Authorization"] == "Bearer s3cret"
    assert sent["Last-Event-ID"] == "17"
    assert sent["X-Request-Id"] == "req-1"


async def test_no_token_no_authorization_header(server: ScriptedServer) -> None:
    url = server.script("/anon", b"data: x\n\n", hold=True)
    async with SSEStream.open(url) as s:
        await s.next_event()
        assert s.last_event_id is None
    (sent,) = server.requests["/anon"]
    assert "Authorization" not in sent
    assert "Last-Event-ID" not in sent


async def test_reconnect_sends_last_event_id(server: ScriptedServer) -> None:
    url = server.script("/resume", b"id: 41\ndata: a\n\nid: 42\ndata: b\n\n")
    async with SSEStream.open(url, token="tok", headers={"X-Test": "1"}) as s:
        await s.next_events(2)
        await s.wait_closed(timeout=2)
        assert s.last_event_id == "42"
        async with await s.reconnect() as s2:
            assert s2.status == 200
            assert s2.sent_last_event_id == "42"
            # No id received on the new connection yet: resuming again keeps "42".
            assert s2.last_event_id == "42"
            await s2.wait_closed(timeout=2)
            async with await s2.reconnect(last_event_id="7") as s3:
                assert s3.status == 200
    first, second, third = server.requests["/resume"]
    assert "Last-Event-ID" not in first
    assert second["Last-Event-ID"] == "42"
    assert third["Last-Event-ID"] == "7"
    for sent in (first, second, third):
        assert sent["Authorization"] == "Bearer tok"
        assert sent["X-Test"] == "1"


async def test_reconnect_omits_empty_last_event_id(server: ScriptedServer) -> None:
    url = server.script("/reset", b"id: 1\ndata: a\n\nid\ndata: b\n\n")
    async with SSEStream.open(url) as s:
        assert [e.id for e in await s.next_events(2)] == ["1", ""]
        async with await s.reconnect() as s2:
            assert s2.status == 200
    assert "Last-Event-ID" not in server.requests["/reset"][1]


async def test_reconnect_rejects_unknown_override(server: ScriptedServer) -> None:
    url = server.script("/x", hold=True)
    async with SSEStream.open(url) as s:
        with pytest.raises(TypeError, match="bogus"):
            await s.reconnect(bogus=1)


async def test_reconnect_to_other_url(server: ScriptedServer) -> None:
    url = server.script("/a", b"id: 5\ndata: a\n\n")
    other = server.script("/b", hold=True)
    async with SSEStream.open(url) as s:
        await s.next_event()
        async with await s.reconnect(url=other) as s2:
            assert s2.url == other
    assert server.requests["/b"][0]["Last-Event-ID"] == "5"


# -- lifecycle ---------------------------------------------------------------------------


async def test_owned_session_closed_and_reader_gone(server: ScriptedServer) -> None:
    url = server.script("/life", b"data: x\n\n", hold=True)
    s = await SSEStream.open(url)
    assert _reader_tasks() != []
    await s.next_event()
    await s.close()
    assert s.closed
    assert s.session.closed
    assert _reader_tasks() == []
    with pytest.raises(StreamClosed, match="closed by client"):
        await s.next_event()
    await s.close()  # idempotent


async def test_external_session_left_open(server: ScriptedServer) -> None:
    url = server.script("/shared", b"id: 3\ndata: x\n\n", hold=True)
    async with aiohttp.ClientSession() as session:
        async with await SSEStream.open(url, session=session) as s:
            await s.next_event()
            async with await s.reconnect() as s2:
                assert s2.session is session
        assert not session.closed
        async with session.get(server.url("/shared")) as resp:  # still usable
            assert resp.status == 200


async def test_reconnect_from_owned_session_gets_its_own(server: ScriptedServer) -> None:
    url = server.script("/own", b"data: x\n\n", hold=True)
    async with SSEStream.open(url) as s:
        s2 = await s.reconnect()
        assert s2.session is not s.session
    assert not s2.session.closed
    await s2.close()
    assert s2.session.closed


async def test_context_manager_forms(server: ScriptedServer) -> None:
    url = server.script("/cm", b"data: x\n\n", hold=True)
    async with SSEStream.open(url) as direct:
        assert (await direct.next_event()).data == "x"
    assert direct.closed and direct.session.closed
    async with await SSEStream.open(url) as awaited:
        assert (await awaited.next_event()).data == "x"
    assert awaited.closed and awaited.session.closed


async def test_unused_opener_is_harmless() -> None:
    SSEStream.open("http://127.0.0.1:9/never")  # no coroutine created, so no warning


async def test_close_while_waiting_raises_stream_closed(server: ScriptedServer) -> None:
    url = server.script("/wait", hold=True)
    async with SSEStream.open(url) as s:
        waiter = asyncio.create_task(s.next_event(timeout=10))
        await asyncio.sleep(0.01)
        await s.close()
        with pytest.raises(StreamClosed):
            await waiter


async def test_open_timeout_when_headers_never_come(server: ScriptedServer) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(text="too late")

    url = server.route("/slow", slow)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no response headers within 0\.2s"):
        await SSEStream.open(url, timeout=0.2)
    assert time.monotonic() - start < 2
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await SSEStream.open(url, session=session, timeout=0.1)
        assert not session.closed


async def test_connection_refused_propagates() -> None:
    srv = ScriptedServer()
    await srv.start()
    url = srv.url("/gone")
    await srv.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await SSEStream.open(url, timeout=2)


async def test_repr_mentions_state(server: ScriptedServer) -> None:
    url = server.script("/repr", hold=True)
    async with SSEStream.open(url) as s:
        assert "status=200 open" in repr(s)
    assert "closed" in repr(s)
