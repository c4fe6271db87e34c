"""Small wire-level helpers for the cases: gRPC status names, one-shot HTTP answers, metrics,
and a raw-socket subscriber that never reads (a stalled client)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import grpc
from multidict import CIMultiDict, CIMultiDictProxy

from harness.admin import fetch_metrics
from harness.sse import SSEEvent, SSEParser
from harness.sse_client import SSEStream, StreamClosed
from harness.wire.chunked import ChunkedDecoder, ChunkedError
from harness.wire.http_client import request
from harness.wire.observe import Watch

from .checks import Band, Mismatch, expect

T = TypeVar("T")


def new_id() -> str:
    """A fresh random UUID string (unknown to the target)."""
    return str(uuid.uuid4())


async def eventually(
    probe: Callable[[], Awaitable[T]], wanted: T, within: float, interval: float = 0.2
) -> T:
    """The probe's answer, asked again until it is `wanted` or `within` seconds have passed
    (`within=0`: asked once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        answer = await probe()
        if answer == wanted or loop.time() >= deadline:
            return answer
        await asyncio.sleep(interval)


async def rpc_status(call: Awaitable[object]) -> str:
    """The gRPC status name of a call: `OK`, `UNAUTHENTICATED`, ..."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


@dataclass(frozen=True, slots=True)
class Answer:
    """Status and headers of an SSE request (and the body of an error response)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: str | None
    content_type: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


async def sse_answer(
    url: str, *, token: str | None = None, headers: Mapping[str, str] | None = None
) -> Answer:
    """Open an SSE URL, keep the status line and headers, and close at once."""
    async with SSEStream.open(url, token=token, headers=headers) as stream:
        return Answer(stream.status, stream.headers, stream.body_text, stream.content_type)


async def http_get(url: str) -> tuple[int, str, str]:
    """(status, media type, body) of a plain GET."""
    async with aiohttp.ClientSession() as session:
        reply = await request(session, "GET", url)
    return reply.status, reply.content_type, reply.text


async def metric_samples(base_url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        return await fetch_metrics(session, base_url)


def metric_sum(samples: Mapping[str, float], name: str) -> float | None:
    """The sum of a sample name over its labels; None when absent."""
    values = [v for k, v in samples.items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else None


@dataclass(frozen=True, slots=True)
class Drained:
    """What a stalled subscriber finally read: how many data events, and how it ended."""

    events: int
    ended: bool  # the server ended the connection (end of body or reset)
    how: str


class StalledSubscriber:
    """An SSE request on a raw socket with a tiny receive buffer, then no reading at all: the
    server's writes back up as they would behind a frozen browser tab."""

    def __init__(
        self, sock: socket.socket, status: int, leftover: bytes, chunked: bool, watch: Watch
    ) -> None:
        self._sock = sock
        self.status = status
        self._watch = watch
        self._received = len(leftover)
        self._dechunk = ChunkedDecoder() if chunked else None
        self._parser = (
            SSEParser(watch.frame, watch.exchange.started) if watch.active else SSEParser()
        )
        self._events = 0
        self._bad_chunking = False
        self._take(leftover)

    @classmethod
    async def open(cls, url: str, token: str, *, receive_buffer: int = 4096) -> StalledSubscriber:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"a stalled subscriber needs a plain http:// URL, not {url}")
        port = parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sock = socket.socket(socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        sent = [
            ("Host", parts.netloc),
            ("Authorization", f"Bearer {token}"),
            ("Accept", "text/event-stream"),
        ]
        watch = Watch("sse", "GET", url, sent, label="stalled reader")
        try:
            await loop.sock_connect(sock, (parts.hostname, port))
            request = f"GET {path} HTTP/1.1\r\n"
            request += "".join(f"{name}: {value}\r\n" for name, value in sent) + "\r\n"
            await loop.sock_sendall(sock, request.encode())
            head = b""
            async with asyncio.timeout(10):
                while b"\r\n\r\n" not in head:
                    chunk = await loop.sock_recv(sock, 4096)
                    if not chunk:
                        break
                    head += chunk
        except BaseException as exc:
            watch.end("timeout" if isinstance(exc, TimeoutError) else "reset")
            sock.close()
            raise
        raw_headers, _, leftover = head.partition(b"\r\n\r\n")
        lines = raw_headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        watch.response(status, headers.items())
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        return cls(sock, status, leftover, chunked, watch)

    async def drain(self, *, events: int, event_size: int, timeout: float) -> Drained:
        """Read until the server ends the connection, all `events` (of about `event_size` bytes
        each) arrived, or `timeout` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ended, how = False, f"still open after {timeout:.0f} s"
        while True:
            if self._received >= events * event_size and self._events >= events:
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
                done = self._dechunk is not None and self._dechunk.done
                self._watch.end("terminating-chunk" if done else "eof")
                break
            self._received += len(chunk)
            self._take(chunk)
        return Drained(self._events, ended, how)

    def _take(self, chunk: bytes) -> None:
        if self._bad_chunking:
            return
        if self._dechunk is not None:
            try:
                chunk = self._dechunk.feed(chunk)
            except ChunkedError:  # events are counted up to the first bad chunk
                self._bad_chunking = True
                return
        kinds = ("token", "progress", "data", "error")
        self._events += sum(1 for e in self._parser.feed(chunk) if e.event in kinds)

    def close(self) -> None:
        self._watch.end("client-close")
        with contextlib.suppress(OSError):
            self._sock.close()


def describe(value: Any) -> str:
    """A short description of an exception or value for reports."""
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)


async def events_until(stream: SSEStream, marker: str, timeout: float = 5.0) -> list[SSEEvent]:
    """Events up to and including the first whose payload is `marker` (plain or consolidated
    data); a `Mismatch` listing what came instead when it does not arrive."""
    events: list[SSEEvent] = []
    try:
        while not events or payload_of(events[-1]) != marker:
            events.append(await stream.next_event(timeout=timeout))
    except (TimeoutError, StreamClosed) as error:
        seen = [(e.event, payload_of(e)) for e in events]
        raise Mismatch(
            f"events up to {marker!r}",
            f"{marker!r} to arrive",
            f"{seen} then {type(error).__name__}",
        ) from None
    return events


async def events_upto(stream: SSEStream, n: int, timeout: float = 5.0) -> list[SSEEvent]:
    """Up to `n` events, as many as arrive within `timeout` (fewer when some never come), so a
    case can report what it received instead of a bare timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    events: list[SSEEvent] = []
    with contextlib.suppress(TimeoutError, StreamClosed):
        while len(events) < n and (remaining := deadline - loop.time()) > 0:
            events.append(await stream.next_event(timeout=remaining))
    return events


async def events_within(stream: SSEStream, seconds: float) -> list[SSEEvent]:
    """Whatever arrives within `seconds` (a bounded wait proving that nothing else comes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    events: list[SSEEvent] = []
    with contextlib.suppress(TimeoutError, StreamClosed):
        while (remaining := deadline - loop.time()) > 0:
            events.append(await stream.next_event(timeout=remaining))
    return events


def payload_of(event: SSEEvent) -> str:
    """The payload an event carries: `data` of a consolidated JSON object, else the data."""
    try:
        value = json.loads(event.data)
    except ValueError:
        return event.data
    data = value.get("data") if isinstance(value, dict) else None
    return data if isinstance(data, str) else event.data


def source_of(event: SSEEvent) -> str | None:
    """The `workflowExecutionId` of a consolidated event, if it has one."""
    try:
        value = json.loads(event.data)
    except ValueError:
        return None
    source = value.get("workflowExecutionId") if isinstance(value, dict) else None
    return source if isinstance(source, str) else None


async def auth_expired_then_closed(stream: SSEStream, since: float, band: Band) -> None:
    """The next event is `auth-expired` and the server then closes, `band` after `since`."""
    loop = asyncio.get_running_loop()
    try:
        event = await stream.next_event(timeout=max(0.1, since + band.late - loop.time()))
    except TimeoutError:
        raise Mismatch(
            "in-band event", "auth-expired", f"nothing within {band.late:.0f} s"
        ) from None
    except StreamClosed:
        raise Mismatch(
            "in-band event", "auth-expired, then close", "closed with no event"
        ) from None
    expect("in-band event", event.event, "auth-expired")
    try:
        await stream.wait_closed(max(0.1, since + band.late - loop.time()))
    except TimeoutError:
        raise Mismatch(
            "stream end", f"closed within {band.high:.0f} s", f"still open after {band.late:.0f} s"
        ) from None
    band.check("stream closed", loop.time() - since)
