"""A blocking SSE connection for Locust users: one HTTP/1.1 GET over a plain socket (which
gevent makes cooperative), the body de-chunked and fed to `harness.sse.SSEParser`.

A raw socket rather than `requests`: the user must see each event the moment its bytes arrive
(no read-ahead buffering), and hundreds of streams per process must stay cheap.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from harness.sse import SSEEvent, SSEParser

_MAX_HEAD = 64 * 1024


class HTTPStatusError(Exception):
    """The server answered something other than 200."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


class Dechunker:
    """Incremental HTTP/1.1 chunked transfer decoding; `done` after the last chunk."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk still to come
        self._state = "size"  # size | data | crlf | done

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        buffer, out = self._buffer + data, []
        while True:
            if self._state == "size":
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(buffer[:end].split(b";", 1)[0], 16)
                buffer = buffer[end + 2 :]
                if size == 0:
                    self._state = "done"
                    break
                self._left, self._state = size, "data"
            elif self._state == "data":
                if not buffer:
                    break
                piece = buffer[: self._left]
                out.append(piece)
                buffer = buffer[len(piece) :]
                self._left -= len(piece)
                if self._left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(buffer) < 2:
                    break
                buffer, self._state = buffer[2:], "size"
            else:
                break
        self._buffer = buffer
        return b"".join(out)


class SSEConnection:
    """`open()` sends the request and reads the head (raising `HTTPStatusError` for non-200);
    `events()` yields events until the server ends the stream. A read that waits longer than
    `read_timeout` raises `TimeoutError`."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        last_event_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {self._host}:{self._port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
        ]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if last_event_id:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._body = b""
        self._chunks: Dechunker | None = None
        self.parser = SSEParser()

    @property
    def last_event_id(self) -> str | None:
        return self.parser.last_event_id

    def open(self) -> None:
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        if self._tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._host)
        self._sock = sock
        sock.sendall(self._request)
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data or len(head) > _MAX_HEAD:
                raise ConnectionError(f"{self.url}: connection closed before the response head")
            head += data
        head, _, self._body = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self._chunks = Dechunker()
        if status != 200:
            body = self._body if self._chunks is None else self._chunks.feed(self._body)
            raise HTTPStatusError(status, body.decode(errors="replace"))

    def events(self, read_timeout: float) -> Iterator[SSEEvent]:
        assert self._sock is not None, "open() first"
        self._sock.settimeout(read_timeout)
        data, self._body = self._body, b""
        while True:
            if data:
                if self._chunks is not None:
                    data = self._chunks.feed(data)
                yield from self.parser.feed(data)
                if self._chunks is not None and self._chunks.done:
                    return
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"{self.url}: nothing received for {read_timeout}s") from None
            if not data:
                return

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
