"""gRPC channels whose calls are reported to the observation hooks.

Every channel the harness and the conformance suite open comes from :func:`aio_channel` or
:func:`sync_channel`; an interceptor on it turns each call into an
:class:`~harness.wire.observe.Exchange` with the method, a text summary of the request (long
strings cut), the status code, details and trailing metadata. With no observer installed the
interceptor passes the call straight through. Given a ``token``, the channel also sends it as a
bearer token with every call that brings no ``authorization`` metadata of its own, so that a
plain generated stub on it acts as a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar, cast

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from harness.wire.observe import Watch, current_observers

__all__ = ["aio_channel", "summarize", "sync_channel"]

T = TypeVar("T")

SUMMARY_STRING_LIMIT: Final = 200
"""Characters kept of each string field in a request summary (payloads can be megabytes)."""


def aio_channel(
    address: str, *, token: str | None = None, observed: bool = True, **kwargs: Any
) -> grpc.aio.Channel:
    """An insecure ``grpc.aio`` channel to ``address`` whose calls are observable (a bare one,
    without interceptor, with ``observed=False`` and no ``token``)."""
    if not observed and token is None:
        return grpc.aio.insecure_channel(address, **kwargs)
    interceptor = _AioInterceptor(address, token)
    return grpc.aio.insecure_channel(address, interceptors=[cast(Any, interceptor)], **kwargs)


def sync_channel(address: str, *, token: str | None = None, **kwargs: Any) -> grpc.Channel:
    """An insecure blocking channel to ``address`` whose calls are observable."""
    return grpc.intercept_channel(
        grpc.insecure_channel(address, **kwargs), _SyncInterceptor(address, token)
    )


def _with_token(details: Any, token: str | None, aio: bool) -> Any:
    """``details`` with ``token`` as bearer credentials, unless it brings its own."""
    pairs = list(details.metadata or ())
    if token is None or any(key == "authorization" for key, _ in pairs):
        return details
    pairs.append(("authorization", f"Bearer {token}"))
    return details._replace(metadata=grpc.aio.Metadata(*pairs) if aio else tuple(pairs))


def summarize(request: object) -> str:
    """A request message as one line of protobuf text, each string field cut to 200 chars."""
    if not isinstance(request, Message):
        return "<request stream>"
    copy = type(request)()
    copy.CopyFrom(request)
    _cut_strings(copy)
    return text_format.MessageToString(copy, as_one_line=True)


def _cut_strings(message: Message) -> None:
    for descriptor, value in message.ListFields():
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if descriptor.is_repeated else [value]:
                _cut_strings(item)
        elif (
            descriptor.type == FieldDescriptor.TYPE_STRING
            and not descriptor.is_repeated
            and len(value) > SUMMARY_STRING_LIMIT
        ):
            cut = len(value) - SUMMARY_STRING_LIMIT
            setattr(message, descriptor.name, f"{value[:SUMMARY_STRING_LIMIT]}… ({cut} more)")


def _metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[tuple[str, str]]:
    return [
        (key, value if isinstance(value, str) else value.hex()) for key, value in metadata or ()
    ]


def _method(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


def _settled(awaitable: Awaitable[T]) -> T:
    """The value of an awaitable that is already resolved, taken without an event-loop turn.

    A finished ``grpc.aio`` call keeps its status but offers it only through coroutines; done
    callbacks run synchronously, so this reads it there and the exchange ends before the caller
    resumes. Raises ``LookupError`` if the awaitable would have to wait.
    """
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    steps.close()
    raise LookupError("the call has no status yet")


def _end_aio(watch: Watch, call: grpc.aio.Call) -> None:
    try:
        code = _settled(call.code())
        details = _settled(call.details())
        trailing = _settled(call.trailing_metadata())
    except LookupError:
        asyncio.get_running_loop().create_task(_end_aio_later(watch, call))
        return
    _end(watch, code, details, trailing)


async def _end_aio_later(watch: Watch, call: grpc.aio.Call) -> None:
    _end(watch, await call.code(), await call.details(), await call.trailing_metadata())


def _end(watch: Watch, code: grpc.StatusCode, details: str | None, trailing: Any) -> None:
    exchange = watch.exchange
    exchange.grpc_code = code.name
    exchange.grpc_details = details or None
    exchange.grpc_trailing = _metadata(trailing)
    watch.end("client-close" if code is grpc.StatusCode.CANCELLED else None)


def _start(target: str, details: Any, request: object) -> Watch | None:
    if not current_observers():
        return None
    return Watch(
        "grpc",
        _method(details),
        target,
        _metadata(details.metadata),
        request_summary=summarize(request),
    )


class _AioInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
):
    """Observes every kind of call on a ``grpc.aio`` channel."""

    def __init__(self, target: str, token: str | None) -> None:
        self._target = target
        self._token = token

    async def _observe(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        details = _with_token(details, self._token, aio=True)
        watch = _start(self._target, details, request)
        if watch is None:
            return await continuation(details, request)
        try:
            call = await continuation(details, request)
        except BaseException:
            watch.end("reset")
            raise
        call.add_done_callback(lambda done: _end_aio(watch, done))
        return call

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._observe(continuation, details, request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._observe(continuation, details, request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._observe(continuation, details, requests)

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._observe(continuation, details, requests)


class _SyncInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]  # generic in the stubs only
):
    """Observes every kind of call on a blocking channel (Locust publishers)."""

    def __init__(self, target: str, token: str | None) -> None:
        self._target = target
        self._token = token

    def _observe(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        details = _with_token(details, self._token, aio=False)
        watch = _start(self._target, details, request)
        if watch is None:
            return continuation(details, request)
        try:
            outcome = continuation(details, request)
        except BaseException:
            watch.end("reset")
            raise
        outcome.add_done_callback(
            lambda done: _end(watch, done.code(), done.details(), done.trailing_metadata())
        )
        return outcome

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._observe(continuation, details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._observe(continuation, details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._observe(continuation, details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._observe(continuation, details, requests)
