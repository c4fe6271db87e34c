"""HTTP/1.1 client framing without I/O: request bytes, the response head, the body's framing.

Every raw-socket client of the harness (the blocking Locust stream, the counting client of the
load generators, the stalled reader) builds its request and reads its response through this
module, so they agree on what a response is and on how it ended: a chunked body ends with its
terminating chunk, a ``Content-Length`` body with its last byte, any other body when the
connection closes (RFC 9112 §6.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from harness.wire.chunked import ChunkedDecoder
from harness.wire.observe import EndHow

__all__ = [
    "BodyDecoder",
    "Endpoint",
    "HeadError",
    "ResponseHead",
    "parse_head",
    "request_bytes",
    "sse_headers",
]

MAX_HEAD: Final = 64 * 1024


class HeadError(ValueError):
    """The bytes are not an HTTP/1.1 response head (or it is too long)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a URL points: what to connect to and what to put in the request line."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, target)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """The ``Host`` header value (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def sse_headers(
    token: str | None = None,
    last_event_id: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of an SSE request: what a browser ``EventSource`` sends, plus credentials.

    ``extra`` headers override the defaults; the token and ``Last-Event-ID`` override ``extra``.
    """
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if extra is not None:
        headers.update(extra)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


def request_bytes(method: str, endpoint: Endpoint, headers: Iterable[tuple[str, str]]) -> bytes:
    """A complete request without a body; ``Host`` comes first unless ``headers`` has one."""
    fields = list(headers)
    if not any(name.lower() == "host" for name, _ in fields):
        fields.insert(0, ("Host", endpoint.authority))
    lines = [f"{method} {endpoint.target} HTTP/1.1", *(f"{n}: {v}" for n, v in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """Status line and header fields of a response, in the order received."""

    status: int
    reason: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("Transfer-Encoding") or "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.header("Content-Length")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def media_type(self) -> str:
        """``Content-Type`` without parameters, lower-cased ("" when absent)."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()


def parse_head(buffer: bytes, limit: int = MAX_HEAD) -> tuple[ResponseHead, bytes] | None:
    """The head at the start of ``buffer`` and the bytes after it, or None if incomplete.

    Raises :class:`HeadError` when the status line is malformed or no head ends within
    ``limit`` bytes.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > limit:
            raise HeadError(f"no end of the response head within {limit} bytes")
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise HeadError(f"not an HTTP status line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HeadError(f"not a header field: {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return ResponseHead(int(code), reason, headers), buffer[end + 4 :]


class BodyDecoder:
    """The framing of one response body: it turns received bytes into payload and knows when
    the body is complete, and how it ended when the connection closes."""

    __slots__ = ("_chunks", "_left")

    def __init__(self, head: ResponseHead) -> None:
        self._chunks = ChunkedDecoder() if head.chunked else None
        self._left = None if self._chunks is not None else head.content_length

    @property
    def done(self) -> bool:
        """The whole body arrived (never true for a body delimited by the connection closing)."""
        if self._chunks is not None:
            return self._chunks.done
        return self._left == 0

    def feed(self, data: bytes) -> bytes:
        """The payload in ``data``; raises ``ChunkedError`` on broken chunked coding."""
        if self._chunks is not None:
            return self._chunks.feed(data)
        if self._left is None:
            return data
        data = data[: self._left]
        self._left -= len(data)
        return data

    def end(self) -> EndHow:
        """How the body ended, asked when the connection closed cleanly or the body is done:
        a chunked body or one with a length that closes before it is complete was cut short."""
        if self._chunks is not None:
            return "terminating-chunk" if self._chunks.done else "reset"
        return "reset" if self._left else "eof"
