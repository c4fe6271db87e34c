"""A blocking SSE connection over a plain socket, for Locust users (gevent makes it cooperative).

A raw socket rather than ``requests``: the user must see each event the moment its bytes arrive
(no read-ahead buffering), and hundreds of streams per process must stay cheap. The framing is
:mod:`harness.wire.http1` and :mod:`harness.wire.sse`; this module only moves bytes.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

from harness.wire.http1 import (
    BodyDecoder,
    Endpoint,
    HeadError,
    ResponseHead,
    parse_head,
    request_bytes,
    sse_headers,
)
from harness.wire.observe import Watch
from harness.wire.sse import SSEEvent, SSEParser

__all__ = ["HTTPStatusError", "SSEConnection"]

_READ = 65536


class HTTPStatusError(Exception):
    """The server answered something other than 200."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


class SSEConnection:
    """``open()`` sends the request and reads the head (raising :class:`HTTPStatusError` for
    non-200); ``events()`` yields events until the server ends the stream. A read that waits
    longer than ``read_timeout`` raises ``TimeoutError``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        last_event_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._endpoint = Endpoint.parse(url)
        self._headers = sse_headers(token or None, last_event_id or None)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._pending = b""  # body bytes that arrived with the head
        self._body: BodyDecoder | None = None
        self._watch: Watch | None = None
        self.parser = SSEParser()

    @property
    def last_event_id(self) -> str | None:
        return self.parser.last_event_id

    def open(self) -> None:
        endpoint = self._endpoint
        self._watch = watch = Watch("sse", "GET", self.url, self._headers.items())
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=self._timeout)
            if endpoint.tls:
                context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=endpoint.host)
            self._sock = sock
            sock.sendall(request_bytes("GET", endpoint, self._headers.items()))
            received = b""
            while (parsed := _head(self.url, received)) is None:
                data = sock.recv(_READ)
                if not data:
                    raise ConnectionError(f"{self.url}: connection closed before the response head")
                received += data
        except BaseException as exc:
            watch.end("timeout" if isinstance(exc, TimeoutError) else "reset")
            raise
        head, leftover = parsed
        self._body = body = BodyDecoder(head)
        if head.status != 200:
            text = body.feed(leftover).decode(errors="replace")
            watch.response(head.status, head.headers, text)
            watch.end(body.end())
            raise HTTPStatusError(head.status, text)
        watch.response(head.status, head.headers)
        self.parser = SSEParser.watched(watch)
        self._pending = leftover

    def events(self, read_timeout: float) -> Iterator[SSEEvent]:
        sock, body, watch = self._sock, self._body, self._watch
        assert sock is not None and body is not None and watch is not None, "open() first"
        sock.settimeout(read_timeout)
        data, self._pending = self._pending, b""
        while True:
            if data:
                yield from self.parser.feed(body.feed(data))
                if body.done:
                    watch.end(body.end())
                    return
            try:
                data = sock.recv(_READ)
            except TimeoutError:
                watch.end("timeout")
                raise TimeoutError(f"{self.url}: nothing received for {read_timeout}s") from None
            except OSError:
                watch.end("reset")
                raise
            if not data:
                watch.end(body.end())
                return

    def close(self) -> None:
        if self._watch is not None:
            self._watch.end("client-close")
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _head(url: str, received: bytes) -> tuple[ResponseHead, bytes] | None:
    try:
        return parse_head(received)
    except HeadError as error:  # callers handle a broken connection, as for any socket error
        raise ConnectionError(f"{url}: {error}") from None
