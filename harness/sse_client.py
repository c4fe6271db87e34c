"""Async SSE client for tests and tools, built on aiohttp and :mod:`harness.wire.sse`.

Unlike a browser ``EventSource`` it never reconnects on its own and never hides a
failed response: tests need to see exactly what the server did (status, headers,
problem+json body, when each event and heartbeat arrived, when the stream ended).
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from multidict import CIMultiDictProxy

from harness.closing import AsyncClosing
from harness.wire.aio import Opened, Opening, body_end, open_stream
from harness.wire.http1 import sse_headers
from harness.wire.sse import SSEComment, SSEEvent, SSEParser

__all__ = ["SSEStream", "StreamClosed"]

_RECONNECT_OVERRIDES: Final = frozenset(
    {"url", "token", "last_event_id", "headers", "session", "timeout"}
)


class StreamClosed(Exception):
    """The stream has ended (EOF, transport error, non-200 or ``close()``) and is drained."""


class _Sentinel(enum.Enum):
    CLOSED = enum.auto()


_CLOSED: Final = _Sentinel.CLOSED


class SSEStream(AsyncClosing):
    """One SSE connection: status/headers up front, then queued events and comments.

    Create it with :meth:`open`. For a 200 response a background task reads the body and
    queues events; any other status is exposed via :attr:`status`, :attr:`body_text` and
    :meth:`problem`, and the stream is closed right away.
    """

    def __init__(
        self,
        *,
        url: str,
        request_headers: Mapping[str, str],
        opened: Opened,
        session: aiohttp.ClientSession,
        owns_session: bool,
        token: str | None,
        extra_headers: Mapping[str, str] | None,
        timeout: float,
        sent_last_event_id: str | None,
    ) -> None:
        response = opened.response
        self.url = url
        self.request_headers: Mapping[str, str] = dict(request_headers)
        self.status: int = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.body_text = opened.body_text
        self.opened_at = opened.opened_at
        self.sent_last_event_id = sent_last_event_id
        self.events_received: list[SSEEvent] = []
        self.closed_event = asyncio.Event()
        self.error: BaseException | None = None
        self._response = response
        self._session = session
        self._owns_session = owns_session
        self._token = token
        self._extra_headers = dict(extra_headers) if extra_headers is not None else None
        self._timeout = timeout
        self._watch = watch = opened.watch
        self._parser = SSEParser.watched(watch)
        self._queue: asyncio.Queue[SSEEvent | _Sentinel] = asyncio.Queue()
        self._changed = asyncio.Event()  # replaced on every change; see _notify()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        if self.status == 200:
            self._reader = asyncio.get_running_loop().create_task(
                self._read_body(), name=f"sse-reader {url}"
            )
        else:
            self._mark_closed()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        token: str | None = None,
        last_event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> Opening[SSEStream]:
        """Connect to ``url``; ``await`` the result or use it in ``async with``.

        Never raises for an HTTP error status, because asserting on the error response
        is part of what tests do. ``timeout`` bounds connecting and receiving the
        response headers (and, for non-200, the body), not the life of the stream. The
        session is closed on :meth:`close` only if this call created it.
        """
        kwargs: dict[str, Any] = {
            "token": token,
            "last_event_id": last_event_id,
            "headers": headers,
            "session": session,
            "timeout": timeout,
        }
        return Opening(lambda: cls._open(url, **kwargs))

    @classmethod
    async def _open(
        cls,
        url: str,
        *,
        token: str | None,
        last_event_id: str | None,
        headers: Mapping[str, str] | None,
        session: aiohttp.ClientSession | None,
        timeout: float,
    ) -> SSEStream:
        request_headers = sse_headers(token, last_event_id, headers)
        owns_session = session is None
        http = aiohttp.ClientSession() if session is None else session
        try:
            opened = await open_stream(http, url, request_headers, timeout)
        except BaseException as exc:
            if owns_session:
                await http.close()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(
                    f"SSE open {url}: no response headers within {timeout}s"
                ) from None
            raise
        return cls(
            url=url,
            request_headers=request_headers,
            opened=opened,
            session=http,
            owns_session=owns_session,
            token=token,
            extra_headers=headers,
            timeout=timeout,
            sent_last_event_id=last_event_id,
        )

    async def reconnect(self, **overrides: Any) -> SSEStream:
        """Open the same URL again, resuming from the last event id seen.

        Keyword overrides are those of :meth:`open` plus ``url``. The session is reused
        only if it was supplied by the caller (an owned one dies with this stream).
        """
        unknown = set(overrides) - _RECONNECT_OVERRIDES
        if unknown:
            raise TypeError(f"reconnect() got unexpected overrides: {sorted(unknown)}")
        url: str = overrides.pop("url", self.url)
        kwargs: dict[str, Any] = {
            "token": self._token,
            # A browser omits Last-Event-ID when the last event id string is empty.
            "last_event_id": self.last_event_id or None,
            "headers": self._extra_headers,
            "session": None if self._owns_session else self._session,
            "timeout": self._timeout,
        }
        kwargs.update(overrides)
        return await SSEStream._open(url, **kwargs)

    # -- state -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the stream ended (EOF, error, non-200 status or :meth:`close`)."""
        return self.closed_event.is_set()

    @property
    def last_event_id(self) -> str | None:
        """The last event id string, falling back to the one sent when opening.

        The fallback makes chained reconnects resume correctly even if a connection
        delivered no event carrying an id.
        """
        parsed = self._parser.last_event_id
        return parsed if parsed is not None else self.sent_last_event_id

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session in use (created by :meth:`open` unless one was passed)."""
        return self._session

    @property
    def retry(self) -> int | None:
        """Latest ``retry:`` value (milliseconds) sent by the server, if any."""
        return self._parser.retry

    @property
    def comments(self) -> list[SSEComment]:
        """All comments received so far, with their arrival times."""
        return self._parser.comments

    @property
    def content_type(self) -> str:
        """Response media type without parameters (e.g. ``text/event-stream``)."""
        return self._response.content_type

    async def problem(self) -> dict[str, Any]:
        """Parse the body of a non-200 response (RFC 9457 problem+json is an object)."""
        if self.body_text is None:
            raise ValueError(f"SSE {self.url}: status {self.status} has no error body")
        value = json.loads(self.body_text)
        if not isinstance(value, dict):
            raise ValueError(f"SSE {self.url}: error body is not a JSON object: {value!r}")
        return value

    # -- consuming ---------------------------------------------------------------------

    async def next_event(self, timeout: float = 5.0) -> SSEEvent:
        """Return the next queued event, waiting at most ``timeout`` seconds.

        Raises ``TimeoutError`` if nothing arrives in time and :class:`StreamClosed` once
        the stream has ended and every queued event was consumed.
        """
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            raise TimeoutError(
                f"SSE {self.url}: no event within {timeout}s "
                f"({len(self.events_received)} received so far, "
                f"last id {self.last_event_id!r})"
            ) from None
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # keep later calls failing the same way
            raise StreamClosed(self._closed_reason())
        return item

    async def next_events(self, n: int, timeout: float = 5.0) -> list[SSEEvent]:
        """Return the next ``n`` events; ``timeout`` bounds the whole batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        events: list[SSEEvent] = []
        for _ in range(n):
            remaining = max(0.0, deadline - loop.time())
            try:
                events.append(await self.next_event(timeout=remaining))
            except TimeoutError:
                raise TimeoutError(
                    f"SSE {self.url}: got {len(events)} of {n} events within {timeout}s: {events!r}"
                ) from None
            except StreamClosed as exc:
                raise StreamClosed(f"got {len(events)} of {n} events: {exc}") from None
        return events

    async def assert_no_event(self, within: float) -> None:
        """Fail if an event is queued or arrives within ``within`` seconds.

        Returns early if the stream ends first, since no event can follow.
        """
        try:
            event = await self.next_event(timeout=within)
        except (TimeoutError, StreamClosed):
            return
        raise AssertionError(
            f"SSE {self.url}: unexpected event within {within}s: "
            f"event={event.event!r} id={event.id!r} data={event.data!r}"
        )

    async def wait_comment(self, timeout: float) -> SSEComment:
        """Return the first comment received after this call (e.g. a heartbeat)."""
        start = len(self.comments)
        try:
            async with asyncio.timeout(timeout):
                while len(self.comments) <= start:
                    if self.closed:
                        raise StreamClosed(self._closed_reason())
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"SSE {self.url}: no comment within {timeout}s") from None
        return self.comments[start]

    async def wait_closed(self, timeout: float) -> None:
        """Wait until the server ends the stream (or it fails / is closed)."""
        try:
            async with asyncio.timeout(timeout):
                await self.closed_event.wait()
        except TimeoutError:
            raise TimeoutError(f"SSE {self.url}: stream still open after {timeout}s") from None

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading, drop the connection, and close the session if we created it.

        Idempotent, and waits for the reader task so no pending task outlives it.
        """
        if self._closing:
            return
        self._closing = True
        try:
            reader = self._reader
            if reader is not None and not reader.done():
                reader.cancel()
                await asyncio.wait([reader])
        finally:
            self._watch.end("client-close")
            self._response.close()
            self._mark_closed()
            if self._owns_session:
                await self._session.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<SSEStream {self.url} status={self.status} {state} "
            f"events={len(self.events_received)} last_id={self.last_event_id!r}>"
        )

    # -- internals ---------------------------------------------------------------------

    async def _read_body(self) -> None:
        try:
            async for chunk in self._response.content.iter_any():
                comments_before = len(self._parser.comments)
                events = self._parser.feed(chunk, now=time.monotonic())
                for event in events:
                    self.events_received.append(event)
                    self._queue.put_nowait(event)
                if events or len(self._parser.comments) != comments_before:
                    self._notify()
            self._parser.close()
            self._watch.end(body_end(self._response))
            self._response.release()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transport errors end the stream; keep them for messages
            self.error = exc
            self._watch.end("reset")
        finally:
            self._mark_closed()

    def _notify(self) -> None:
        # A fresh Event per change lets any number of waiters wake without races.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _mark_closed(self) -> None:
        if not self.closed_event.is_set():
            self.closed_event.set()
            self._queue.put_nowait(_CLOSED)
            self._notify()

    def _closed_reason(self) -> str:
        if self.status != 200:
            why = f"status {self.status}"
        elif self.error is not None:
            why = f"error {self.error!r}"
        elif self._closing:
            why = "closed by client"
        else:
            why = "ended by server"
        return f"SSE {self.url}: stream closed ({why}) after {len(self.events_received)} events"
