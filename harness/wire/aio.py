"""The asyncio adapter over aiohttp: one-shot requests and the opening of SSE streams, both
reported to the observation hooks.

Every plain request of the harness goes through :func:`request` (the management client, metrics
scrapes, the conformance helpers); :class:`harness.sse_client.SSEStream` opens its streams with
:func:`open_stream` and reports the frames itself as it reads them. aiohttp does the HTTP/1.1
framing here; the raw-socket adapters use :mod:`harness.wire.http1`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from harness.wire.observe import EndHow, Watch

__all__ = ["Opened", "Opening", "Reply", "body_end", "failure_end", "open_stream", "request"]

S = TypeVar("S", bound="Closable")


class Closable(Protocol):
    async def close(self) -> None: ...


class Opening(Generic[S]):
    """What an ``open()`` returns: await it, or use it as ``async with`` (closed on exit).

    The coroutine is created lazily so that an unused opener never triggers a "coroutine was
    never awaited" warning.
    """

    __slots__ = ("_open", "_opened")

    def __init__(self, open_: Callable[[], Awaitable[S]]) -> None:
        self._open = open_
        self._opened: S | None = None

    def __await__(self) -> Generator[Any, None, S]:
        return self._open().__await__()

    async def __aenter__(self) -> S:
        self._opened = await self._open()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            await self._opened.close()


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole response: status, headers, media type (without parameters) and body text."""

    status: int
    headers: CIMultiDictProxy[str]
    content_type: str
    text: str


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream request answered: the response (body unread if 200), when its head arrived,
    the body of any other status, and the exchange watching it."""

    response: aiohttp.ClientResponse
    opened_at: float
    body_text: str | None
    watch: Watch


def body_end(response: aiohttp.ClientResponse) -> EndHow:
    """How a body that ended normally ended: a chunked one by its terminating chunk."""
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    return "terminating-chunk" if chunked else "eof"


def failure_end(exc: BaseException) -> EndHow:
    """How an exchange ended when the request raised ``exc``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):
        return "client-close"
    return "reset"


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    data: bytes | None = None,
    label: str | None = None,
) -> Reply:
    """Send one request (a `json` or raw `data` body) and read the whole answer, whatever its
    status."""
    sent = dict(headers or {})
    if json is not None:
        sent.setdefault("Content-Type", "application/json")
    watch = Watch("http", method, url, sent.items(), label=label)
    try:
        async with session.request(method, url, json=json, data=data, headers=headers) as response:
            text = await response.text()
            reply = Reply(response.status, response.headers, response.content_type, text)
            how = body_end(response)
    except BaseException as exc:
        watch.end(failure_end(exc))
        raise
    watch.response(reply.status, reply.headers.items(), text)
    watch.end(how)
    return reply


async def open_stream(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout: float
) -> Opened:
    """GET ``url`` and wait at most ``timeout`` for the head (and, unless 200, the body)."""
    watch = Watch("sse", "GET", url, headers.items())
    response: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(timeout):
            # total=None: the session default (5 min) would cut long-lived streams.
            response = await session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout),
            )
            opened_at = time.monotonic()
            body_text: str | None = None
            if response.status != 200:
                body = await response.read()
                body_text = body.decode(response.get_encoding(), errors="replace")
    except BaseException as exc:
        watch.end(failure_end(exc))
        if response is not None:
            response.close()
        raise
    watch.response(response.status, response.headers.items(), body_text)
    if body_text is not None:
        watch.end(body_end(response))
    return Opened(response, opened_at, body_text, watch)
