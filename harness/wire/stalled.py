"""A stalled SSE subscriber: a raw socket with a tiny receive buffer that stops reading after
the response head, so the server's writes back up as they would behind a frozen browser tab.

The conformance suite uses it to check that a slow subscriber is evicted rather than buffered
without bound, and the load generators to measure the server's memory meanwhile. Framing is
:mod:`harness.wire.http1` and :mod:`harness.wire.sse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Final

from harness.wire.chunked import ChunkedError
from harness.wire.http1 import BodyDecoder, Endpoint, parse_head, request_bytes, sse_headers
from harness.wire.observe import Watch
from harness.wire.sse import SSEParser

__all__ = ["Drained", "StalledReader"]

DATA_EVENTS: Final = frozenset({"token", "progress", "data", "error"})
"""The event types that carry task data (control events such as ``end`` are not counted)."""


@dataclass(frozen=True, slots=True)
class Drained:
    """What a stalled subscriber finally read: how many data events, and how it ended."""

    events: int
    ended: bool  # the server ended the connection (end of body or reset)
    how: str


class StalledReader:
    """Open with :meth:`open`; nothing is read after the head until :meth:`drain`."""

    def __init__(
        self, sock: socket.socket, status: int, body: BodyDecoder, leftover: bytes, watch: Watch
    ) -> None:
        self._sock = sock
        self.status = status
        self._watch = watch
        self._body = body
        self.received = len(leftover)  # body bytes received so far
        self._parser = SSEParser.watched(watch)
        self._events = 0
        self._broken = False  # the chunked coding broke: count no further
        self._take(leftover)

    @classmethod
    async def open(
        cls, url: str, token: str | None, *, receive_buffer: int = 4096, timeout: float = 10
    ) -> StalledReader:
        """Send the request and read the response head; the status is in :attr:`status`."""
        endpoint = Endpoint.parse(url)
        if endpoint.tls:
            raise ValueError(f"a stalled subscriber needs a plain http:// URL, not {url}")
        headers = sse_headers(token)
        watch = Watch("sse", "GET", url, headers.items(), label="stalled reader")
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (endpoint.host, endpoint.port))
                await loop.sock_sendall(sock, request_bytes("GET", endpoint, headers.items()))
                received = b""
                while (parsed := parse_head(received)) is None:
                    chunk = await loop.sock_recv(sock, 4096)
                    if not chunk:
                        raise ConnectionError(f"{url}: closed before the response head")
                    received += chunk
        except BaseException as exc:
            watch.end("timeout" if isinstance(exc, TimeoutError) else "reset")
            sock.close()
            raise
        head, leftover = parsed
        watch.response(head.status, head.headers)
        return cls(sock, head.status, BodyDecoder(head), leftover, watch)

    async def drain(
        self, *, events: int | None = None, event_size: int = 0, timeout: float
    ) -> Drained:
        """Read until the server ends the connection, ``events`` data events (of about
        ``event_size`` bytes each) arrived, or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ended, how = False, f"still open after {timeout:.0f} s"
        while True:
            if (
                events is not None
                and self.received >= events * event_size
                and self._events >= events
            ):
                how = "delivered the whole burst"
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    chunk = await loop.sock_recv(self._sock, 1 << 20)
            except TimeoutError:
                break
            except OSError as error:
                ended, how = True, f"reset ({error.__class__.__name__})"
                self._watch.end("reset")
                break
            if not chunk:
                ended, how = True, "end of body"
                self._watch.end(self._body.end())
                break
            self.received += len(chunk)
            self._take(chunk)
            # HTTP/1.1 may end the response with its terminating chunk and keep the connection
            # for another request: that is an end too, not a stream still open.
            if self._body.done:
                ended, how = True, "end of body (connection kept open)"
                self._watch.end(self._body.end())
                break
        return Drained(self._events, ended, how)

    def _take(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            payload = self._body.feed(chunk)
        except ChunkedError:  # events are counted up to the first bad chunk
            self._broken = True
            return
        self._events += sum(1 for e in self._parser.feed(payload) if e.event in DATA_EVENTS)

    def close(self) -> None:
        self._watch.end("client-close")
        with contextlib.suppress(OSError):
            self._sock.close()
