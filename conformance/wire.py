"""Small helpers for the cases: gRPC status names, one-shot HTTP answers, metrics, waiting for
events. How bytes are framed on the wire is :mod:`harness.wire`'s business, not this module's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import grpc
from multidict import CIMultiDictProxy

from harness.admin import fetch_metrics
from harness.sse_client import SSEStream, StreamClosed
from harness.wire.aio import request
from harness.wire.sse import SSEEvent

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
