"""A cheap asyncio SSE client for load generators: thousands of streams per process, each
handing complete frames to a sink that counts them.

It does not parse events into objects: at hundreds of thousands of deliveries per second a full
parser in the client would be the bottleneck. It reads the head and de-chunks the body with
:mod:`harness.wire.http1` (so a frame split across chunks is still whole), cuts the payload at
the last blank line, and gives the sink everything before it. The exchange is observable (start,
head, end) but not frame by frame, for speed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from harness.wire.chunked import ChunkedError
from harness.wire.http1 import (
    BodyDecoder,
    Endpoint,
    HeadError,
    parse_head,
    request_bytes,
    sse_headers,
)
from harness.wire.observe import Watch

__all__ = ["CountingConnection", "FrameSink", "open_counting"]


class FrameSink(Protocol):
    """Receives what a :class:`CountingConnection` reads."""

    def scan(self, frames: bytes) -> None:
        """Whole frames (ending with a blank line, ``\\n\\n``), as the server sent them."""

    def lost(self) -> None:
        """A connection closed."""


class CountingConnection(asyncio.Protocol):
    """The protocol of one stream; :attr:`status` resolves with the response status."""

    def __init__(self, url: str, token: str | None, sink: FrameSink) -> None:
        endpoint = Endpoint.parse(url)
        headers = sse_headers(token or None)
        self._request = request_bytes("GET", endpoint, headers.items())
        self._watch = Watch("sse", "GET", url, headers.items(), label="counting client")
        self._sink = sink
        self._head: bytes | None = b""  # the head received so far; None once parsed
        self._body: BodyDecoder | None = None
        self._tail = b""
        self._closing = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.status: asyncio.Future[int] = loop.create_future()
        self.lost = loop.create_future()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self._head is not None:
            try:
                parsed = parse_head(self._head + data)
            except HeadError as error:
                self._fail(error)
                return
            if parsed is None:
                self._head += data
                return
            head, data = parsed
            self._head = None
            self._body = BodyDecoder(head)
            self._watch.response(head.status, head.headers)
            if not self.status.done():
                self.status.set_result(head.status)
            if head.status != 200:
                self.close()
                return
        assert self._body is not None
        try:
            payload = self._body.feed(data)
        except ChunkedError as error:
            self._fail(error)
            return
        tail = self._tail + payload if self._tail else payload
        cut = tail.rfind(b"\n\n")
        if cut < 0:
            self._tail = tail
        else:
            self._tail = tail[cut + 2 :]
            self._sink.scan(tail[: cut + 2])
        if self._body.done:
            self._watch.end(self._body.end())
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink.lost()
        if exc is not None:
            self._watch.end("reset")
        elif self._closing:
            self._watch.end("client-close")
        else:
            self._watch.end(self._body.end() if self._body is not None else "reset")
        if not self.status.done():
            self.status.set_exception(ConnectionError(f"closed before the headers: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        if not self.status.done():
            self.status.set_exception(ConnectionError(f"not an HTTP/1.1 SSE response: {error}"))
        if self.transport is not None:
            self.transport.abort()


async def open_counting(
    url: str, token: str | None, sink: FrameSink, *, timeout: float = 30
) -> CountingConnection:
    """An open stream whose response was 200; ``ConnectionError`` for any other status."""
    endpoint = Endpoint.parse(url)
    conn = CountingConnection(url, token, sink)
    loop = asyncio.get_running_loop()
    connecting = loop.create_connection(lambda: conn, endpoint.host, endpoint.port)
    await asyncio.wait_for(connecting, timeout)
    status = await asyncio.wait_for(conn.status, timeout)
    if status != 200:
        raise ConnectionError(f"{url}: HTTP {status}")
    return conn
