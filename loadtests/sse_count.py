"""A bare HTTP/1.1 SSE client for the bench's load generators: it opens thousands of streams
cheaply and only counts events and their latency.

It does not parse events fully: at hundreds of thousands of deliveries per second a full parser
in the client would be the bottleneck. It cuts the body at blank lines and takes each event's
publish timestamp from the `"t":<time_ns>` of its payload; that is the event count and the
latency. (The Locust users, which are about realism rather than peak rate, parse with
`harness.sse`.)
"""

from __future__ import annotations

import array
import asyncio
import re
import resource
import socket
import time
from typing import Any
from urllib.parse import urlsplit

_STAMP = re.compile(rb'"t":(\d+)')


def percentiles(samples_ns: array.array[int] | list[int]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (nearest rank), plus the sample count."""
    ordered = sorted(samples_ns)
    if not ordered:
        return {"count": 0}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1] / 1e6,
    }


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (up to the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


class Receipts:
    """What every SSE connection of this process received."""

    def __init__(self, latencies: bool) -> None:
        self.keep_latencies = latencies
        self.reset()
        self.closed = 0

    def reset(self) -> None:
        self.cpu_at_reset = time.process_time()
        self.events = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: array.array[int] = array.array("q")

    def scan(self, frames: bytes) -> None:
        stamps = _STAMP.findall(frames)
        if not stamps:
            return
        now_ns = time.time_ns()
        now = time.monotonic()
        if not self.events:
            self.first = now
        self.last = now
        self.events += len(stamps)
        if self.keep_latencies:
            self.latencies.extend(now_ns - int(stamp) for stamp in stamps)

    def summary(self) -> dict[str, Any]:
        span = self.last - self.first
        return {
            "events": self.events,
            "seconds": span,
            "closed": self.closed,
            "per_second": self.events / span if span > 0 else 0.0,
            "cpu_seconds": time.process_time() - self.cpu_at_reset,
            "latency_ms": percentiles(self.latencies),
        }


class SSEConnection(asyncio.Protocol):
    """A bare HTTP/1.1 SSE client: checks the status line, then hands complete frames (up to
    the last blank line received) to `Receipts.scan`. Chunked-encoding size lines pass through
    harmlessly: an event is never split across chunks, and they contain no `"t":`."""

    def __init__(self, request: bytes, receipts: Receipts, *, paused: bool = False) -> None:
        self._request = request
        self._receipts = receipts
        self._paused = paused
        self._head: bytes | None = b""
        self._tail = b""
        self.transport: asyncio.Transport | None = None
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self._head is not None:
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self._head = head
                return
            self._head = None
            status = int(head.split(b" ", 2)[1])
            if not self.status.done():
                self.status.set_result(status)
            if status != 200:
                assert self.transport is not None
                self.transport.close()
                return
            if self._paused:
                assert self.transport is not None
                self.transport.pause_reading()  # a stalled subscriber: never reads again
            data = head[end + 4 :]
        tail = self._tail + data
        cut = tail.rfind(b"\n\n")
        if cut < 0:
            self._tail = tail
            return
        self._tail = tail[cut + 2 :]
        self._receipts.scan(tail[: cut + 2])

    def connection_lost(self, exc: Exception | None) -> None:
        self._receipts.closed += 1
        if not self.status.done():
            self.status.set_exception(ConnectionError(f"closed before the headers: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def sse_request(url: str, token: str | None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_sse(
    url: str, token: str | None, receipts: Receipts, *, paused: bool = False, timeout: float = 30
) -> SSEConnection:
    host, port, request = sse_request(url, token)
    loop = asyncio.get_running_loop()
    sock = None
    if paused:  # a small receive buffer, so that a stalled reader blocks the server soon
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
    conn = SSEConnection(request, receipts, paused=paused)
    if sock is not None:
        await loop.create_connection(lambda: conn, sock=sock)
    else:
        await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout)
    status = await asyncio.wait_for(conn.status, timeout)
    if status != 200:
        raise ConnectionError(f"{url}: HTTP {status}")
    return conn


async def open_many(
    urls: list[str], token: str | None, count: int, receipts: Receipts, open_concurrency: int = 64
) -> tuple[list[SSEConnection], list[str]]:
    """`count` streams over `urls` (round-robin), `open_concurrency` at a time; returns the
    open ones and the errors of the others."""
    raise_nofile(count + 256)
    gate = asyncio.Semaphore(open_concurrency)
    conns: list[SSEConnection] = []
    errors: list[str] = []

    async def one(url: str) -> None:
        async with gate:
            try:
                conns.append(await open_sse(url, token, receipts))
            except (OSError, TimeoutError) as error:
                errors.append(f"{type(error).__name__}: {error}")

    await asyncio.gather(*(one(urls[i % len(urls)]) for i in range(count)))
    return conns, errors
