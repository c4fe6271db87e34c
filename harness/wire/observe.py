"""Observation hooks: the one place through which everything the harness sends and receives can
be watched (an invariant monitor, a wire transcript in a report, a debugging print).

Every client adapter of the harness (the async SSE stream, the one-shot HTTP helpers, the
management client, the stalled reader, every gRPC channel) describes what it does as an
:class:`Exchange` and reports it to the observers installed with :func:`observing`::

    recorder = Recorder()
    with observing(recorder):
        await run_the_case()
    for exchange in recorder.exchanges:
        print(exchange.method, exchange.url, exchange.status, len(exchange.frames))

Observers are found through a :class:`contextvars.ContextVar`, so an observer installed around a
case sees the tasks that case starts (asyncio copies the context into every task) and nothing
from cases running beside it. An exchange keeps the observers that were current when it started,
so a stream read by a background task reports to the same observers until it ends.

Observers are called synchronously, in the adapter, and must not raise: an exception from an
observer propagates into whatever client call was running (often a background reader task,
where it would surface as a transport error far from its cause). An observer that judges what it
sees (the invariant monitor) should collect its findings and let the case or plugin ask for them
at the end.

Credentials never reach an observer: :func:`redact_headers` and :func:`redact_url` are applied
when an exchange is built, and they are the only place that knows which names are secret.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final, Literal
from typing import Protocol as TypingProtocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "EndHow",
    "Exchange",
    "Frame",
    "Observer",
    "Protocol",
    "Recorder",
    "Watch",
    "current_observers",
    "observing",
    "redact_headers",
    "redact_url",
    "truncate",
]

Protocol = Literal["http", "sse", "grpc"]
EndHow = Literal["eof", "terminating-chunk", "reset", "client-close", "timeout"]
"""How an exchange ended. ``terminating-chunk``: a chunked body's last chunk arrived (the server
ended the response); ``eof``: a body without chunked coding ended (its length reached, or the
connection closed); ``reset``: the transport failed (a reset, or a body cut short);
``client-close``: the harness closed it (or cancelled the call); ``timeout``: the harness gave up
waiting. gRPC calls that completed leave it None and set ``grpc_code``."""

BODY_LIMIT: Final = 64 * 1024
"""Characters of a non-SSE body kept in :attr:`Exchange.body`."""

REDACTED: Final = "<redacted>"
_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_QUERY: Final = frozenset({"access_token", "token"})


@dataclass(slots=True)
class Frame:
    """One SSE field block or comment, as parsed.

    An ``event`` frame is reported for every field block ended by a blank line, including
    blocks that set only ``id`` or ``retry`` and so dispatch nothing to an ``EventSource``:
    those have ``data=None``. ``retry`` is the value this block set (None when it set none).
    """

    at: float  # seconds since the exchange started (time.monotonic based)
    kind: Literal["event", "comment"]
    event: str | None = None  # event type ("message" when absent) for kind="event"
    id: str | None = None  # last event id after this event (None if no id field)
    data: str | None = None  # data for events, comment text for comments
    retry: int | None = None


@dataclass(slots=True)
class Exchange:
    """One HTTP request/response, SSE stream, or gRPC call."""

    protocol: Protocol
    method: str  # HTTP method, or the full gRPC method "/flovyn.v1.TaskExecution/..."
    url: str  # HTTP URL (query credentials redacted), or the gRPC target
    request_headers: list[tuple[str, str]]  # credentials redacted ("Bearer <redacted>")
    started: float  # time.monotonic() when the request was sent
    request_summary: str | None = None  # e.g. gRPC request message as text (payload truncated)
    status: int | None = None  # HTTP status
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None  # non-SSE response body (truncated to 64 KiB)
    frames: list[Frame] = field(default_factory=list)
    ended_at: float | None = None  # seconds since start
    end: EndHow | None = None
    grpc_code: str | None = None  # "OK", "UNAUTHENTICATED", ...
    grpc_details: str | None = None
    grpc_trailing: list[tuple[str, str]] = field(default_factory=list)
    label: str | None = None  # free text the caller may set ("stalled reader")


class Observer(TypingProtocol):
    """Something that watches exchanges; every method is called synchronously."""

    def on_start(self, exchange: Exchange) -> None:
        """The request was sent."""

    def on_response(self, exchange: Exchange) -> None:
        """Status and headers arrived (and the body, when the response is not an SSE stream)."""

    def on_frame(self, exchange: Exchange, frame: Frame) -> None:
        """An SSE frame arrived; it is already appended to ``exchange.frames``."""

    def on_end(self, exchange: Exchange) -> None:
        """The exchange is over: ``ended_at``/``end`` (or ``grpc_code``) are set."""


_OBSERVERS: ContextVar[tuple[Observer, ...]] = ContextVar("harness_wire_observers", default=())


@contextlib.contextmanager
def observing(*observers: Observer) -> Iterator[None]:
    """Report every exchange started inside the block to ``observers`` as well.

    Nests: an inner block adds to the observers of the outer one, and leaving it restores them.
    """
    token = _OBSERVERS.set(_OBSERVERS.get() + observers)
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


def current_observers() -> tuple[Observer, ...]:
    """The observers an exchange started now would report to."""
    return _OBSERVERS.get()


class Recorder:
    """An observer that keeps every exchange in the order it started: a transcript.

    The exchanges are the live objects, so an SSE stream still open shows the frames received
    so far; ``ended_at`` tells which have finished.
    """

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def on_start(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def on_response(self, exchange: Exchange) -> None:
        pass

    def on_frame(self, exchange: Exchange, frame: Frame) -> None:
        pass

    def on_end(self, exchange: Exchange) -> None:
        pass


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers (or gRPC metadata) with credential values replaced; an auth scheme is kept so a
    reader still sees "Bearer" versus "Basic"."""
    redacted: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() in _SECRET_HEADERS:
            scheme, space, _ = value.partition(" ")
            value = (
                f"{scheme} {REDACTED}"
                if space and name.lower().endswith("authorization")
                else REDACTED
            )
        redacted.append((name, value))
    return redacted


def redact_url(url: str) -> str:
    """``url`` with credential query parameters (``access_token``) replaced."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name in _SECRET_QUERY for name, _ in pairs):
        return url
    query = urlencode(
        [(name, REDACTED if name in _SECRET_QUERY else value) for name, value in pairs],
        safe="<>",
    )
    return urlunsplit(parts._replace(query=query))


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class Watch:
    """The adapter side: builds one exchange and tells its observers what happens to it.

    Adapters create one per request. With no observer installed every method returns at once,
    which keeps the load-test clients as fast as before; :attr:`active` lets an adapter skip
    building what nobody would see. The end is reported once, whatever ends first.
    """

    __slots__ = ("exchange", "observers")

    def __init__(
        self,
        protocol: Protocol,
        method: str,
        url: str,
        request_headers: Iterable[tuple[str, str]] = (),
        *,
        request_summary: str | None = None,
        label: str | None = None,
        started: float | None = None,
    ) -> None:
        self.observers = current_observers()
        self.exchange = Exchange(
            protocol=protocol,
            method=method,
            url=redact_url(url) if protocol != "grpc" else url,
            request_headers=redact_headers(request_headers) if self.observers else [],
            started=time.monotonic() if started is None else started,
            request_summary=request_summary,
            label=label,
        )
        for observer in self.observers:
            observer.on_start(self.exchange)

    @property
    def active(self) -> bool:
        """Whether anybody watches this exchange."""
        return bool(self.observers)

    @property
    def ended(self) -> bool:
        return self.exchange.ended_at is not None

    def response(
        self, status: int, headers: Iterable[tuple[str, str]], body: str | None = None
    ) -> None:
        """Status and headers arrived (with the whole body when it is not a stream)."""
        exchange = self.exchange
        exchange.status = status
        if not self.observers:
            return
        exchange.response_headers = redact_headers(headers)
        exchange.body = None if body is None else truncate(body)
        for observer in self.observers:
            observer.on_response(exchange)

    def frame(self, frame: Frame) -> None:
        """An SSE frame arrived (``frame.at`` already relative to the start)."""
        self.exchange.frames.append(frame)
        for observer in self.observers:
            observer.on_frame(self.exchange, frame)

    def end(self, how: EndHow | None = None, *, at: float | None = None) -> None:
        """The exchange is over (gRPC calls set ``grpc_code`` first and pass no ``how``)."""
        exchange = self.exchange
        if exchange.ended_at is not None:
            return
        exchange.ended_at = (time.monotonic() if at is None else at) - exchange.started
        exchange.end = how
        for observer in self.observers:
            observer.on_end(exchange)
