"""The observation hooks: observer scoping, redaction, exchange life cycle, SSE frames."""

from __future__ import annotations

import asyncio

from harness.wire.observe import (
    Exchange,
    Frame,
    Recorder,
    Watch,
    current_observers,
    observing,
    redact_headers,
    redact_url,
)
from harness.wire.sse import SSEParser


class Log:
    """An observer that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def on_start(self, exchange: Exchange) -> None:
        self.calls.append(("start", exchange.url))

    def on_response(self, exchange: Exchange) -> None:
        self.calls.append(("response", exchange.status))

    def on_frame(self, exchange: Exchange, frame: Frame) -> None:
        self.calls.append(("frame", frame.data))

    def on_end(self, exchange: Exchange) -> None:
        self.calls.append(("end", exchange.end))


def test_observing_nests_and_restores() -> None:
    outer, inner = Recorder(), Recorder()
    assert current_observers() == ()
    with observing(outer):
        with observing(inner):
            assert current_observers() == (outer, inner)
            Watch("http", "GET", "http://a/1")
        Watch("http", "GET", "http://a/2")
    Watch("http", "GET", "http://a/3")
    assert [e.url for e in outer.exchanges] == ["http://a/1", "http://a/2"]
    assert [e.url for e in inner.exchanges] == ["http://a/1"]


async def test_tasks_see_the_observers_of_the_block_that_started_them() -> None:
    recorder = Recorder()

    async def request(n: int) -> None:
        Watch("http", "GET", f"http://a/{n}")

    with observing(recorder):
        task = asyncio.create_task(request(1))
    await asyncio.create_task(request(2))  # started outside: not observed
    await task
    assert [e.url for e in recorder.exchanges] == ["http://a/1"]


def test_an_exchange_keeps_its_observers_after_the_block() -> None:
    log = Log()
    with observing(log):
        watch = Watch("sse", "GET", "http://a/s")
    watch.response(200, [("Content-Type", "text/event-stream")])
    watch.frame(Frame(at=0.1, kind="event", event="token", id="1", data="x"))
    watch.end("terminating-chunk")
    watch.end("client-close")  # the first end counts
    assert log.calls == [
        ("start", "http://a/s"),
        ("response", 200),
        ("frame", "x"),
        ("end", "terminating-chunk"),
    ]
    assert watch.exchange.ended_at is not None and watch.exchange.ended_at >= 0


def test_credentials_are_redacted_in_headers_and_urls() -> None:
    recorder = Recorder()
    with observing(recorder):
        watch = Watch(
            "sse",
            "GET",
            "http://h/api/x?lastEventId=5&access_token=fst_secret",
            [("Authorization", "Bearer sk_secret"), ("Accept", "text/event-stream")],
        )
    watch.response(200, [("Set-Cookie", "session=abc")])
    exchange = recorder.exchanges[0]
    assert "secret" not in exchange.url and "lastEventId=5" in exchange.url
    assert exchange.request_headers == [
        ("Authorization", "Bearer <redacted>"),
        ("Accept", "text/event-stream"),
    ]
    assert exchange.response_headers == [("Set-Cookie", "<redacted>")]
    assert redact_headers([("authorization", "opaque")]) == [("authorization", "<redacted>")]
    assert redact_url("http://h/p?a=1") == "http://h/p?a=1"


def test_long_bodies_are_truncated() -> None:
    recorder = Recorder()
    with observing(recorder):
        Watch("http", "GET", "http://h/").response(500, [], "x" * 70_000)
    body = recorder.exchanges[0].body
    assert body is not None and body.startswith("x" * 65536) and body.endswith("more characters)")


def test_without_observers_nothing_is_built() -> None:
    watch = Watch("http", "GET", "http://h/", [("Authorization", "Bearer s")])
    watch.response(200, [("A", "b")], "body")
    assert not watch.active
    assert watch.exchange.request_headers == [] and watch.exchange.body is None
    assert watch.exchange.status == 200


def test_parser_reports_every_block_and_comment_in_order() -> None:
    frames: list[Frame] = []
    parser = SSEParser(frames.append, origin=100.0)
    events = parser.feed(
        b": hello\n\nid: 1\nevent: token\ndata: a\ndata: b\n\nid: 2\nretry: 500\n\ndata: c\n\n",
        now=100.5,
    )
    assert [e.data for e in events] == ["a\nb", "c"]
    assert frames == [
        Frame(at=0.5, kind="comment", data="hello"),
        Frame(at=0.5, kind="event", event="token", id="1", data="a\nb"),
        Frame(at=0.5, kind="event", event="message", id="2", data=None, retry=500),
        Frame(at=0.5, kind="event", event="message", id="2", data="c"),
    ]
