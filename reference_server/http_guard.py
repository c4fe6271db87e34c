"""Connection-level limits aiohttp does not have: a deadline for the request head (slowloris) and
a cap on connections that have not authenticated.

aiohttp reads request heads with no deadline of their own: an idle socket, a half-sent request
line or one header every few seconds hold a connection (and a file descriptor) until the
keep-alive timeout, and nothing bounds how many such connections pile up. Here:

- a connection must complete a request head within `request_head_timeout` seconds of opening,
  and of the first byte of each later request; otherwise it is closed (counted, logged at INFO);
- at most `max_unauthenticated_connections` connections may be open on which no request has
  authenticated yet; beyond that a new connection gets `503` with `Retry-After` and is closed.
  A connection counts as authenticated once any request on it presented a valid token.

`GuardedRunner` installs this through `AppRunner`'s server factory; the protocol class is the
one aiohttp would use, extended, so everything else about request handling stays aiohttp's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from .metrics import Metrics

log = logging.getLogger(__name__)
_BUSY_BODY = json.dumps(
    {"type": "about:blank", "title": "Service unavailable", "status": 503,
     "detail": "too many connections have not authenticated; retry shortly"}
).encode()  # fmt: skip
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class ConnectionGuard:
    """The limits and the connections they track, shared by every connection of one app."""

    def __init__(self, head_timeout: float, max_unauthenticated: int, metrics: Metrics) -> None:
        self.head_timeout = head_timeout
        self.max_unauthenticated = max_unauthenticated
        self.unauthenticated: set[GuardedRequestHandler] = set()
        self._closed = {
            reason: metrics.connections_closed.labels(reason)
            for reason in ("head-timeout", "unauthenticated-limit")
        }

    def closed(self, reason: str, handler: GuardedRequestHandler) -> None:
        self._closed[reason].inc()
        log.info("connection closed", extra={"reason": reason, "peer": handler.peer})


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with a request-head deadline and unauthenticated-connection counting."""

    __slots__ = ("_guard", "_head_timer", "_heads_at_arm")  # one per connection, as aiohttp's

    def __init__(self, manager: Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0

    @property
    def peer(self) -> str:
        name = self.peername
        return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = self._guard
        if len(guard.unauthenticated) >= guard.max_unauthenticated:
            guard.closed("unauthenticated-limit", self)
            if self.transport is not None:
                self.transport.write(_BUSY)
            self.force_close()
            return
        guard.unauthenticated.add(self)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._guard.unauthenticated.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._disarm()  # a complete head arrived
        elif self._head_timer is None and self._current_request is None and not self._messages:
            self._arm()  # the first bytes of a new request

    def authenticated(self) -> None:
        self._guard.unauthenticated.discard(self)

    def _arm(self) -> None:
        self._heads_at_arm = self._request_count
        self._head_timer = self._loop.call_later(self._guard.head_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._request_count == self._heads_at_arm and self._current_request is None:
            self._guard.closed("head-timeout", self)
            self.force_close()


class _GuardedServer(Server):
    def __init__(self, guard: ConnectionGuard, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self._guard, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `GuardedRequestHandler`s."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> Server:
        plain = await super()._make_server()
        return _GuardedServer(
            self._guard,
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


def mark_authenticated(request: web.Request) -> None:
    """The request presented a valid token: its connection no longer counts as unauthenticated."""
    protocol = request.protocol
    if isinstance(protocol, GuardedRequestHandler):
        protocol.authenticated()
