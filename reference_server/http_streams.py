"""The three SSE endpoints: authenticate, check ownership in the contract's order, subscribe,
then write replay, live events, keep-alives and control events until the stream ends."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass

from aiohttp import web

from .auth import Principal, bearer_token
from .bus import Delivery, End, SubscriberEvicted, SubscriptionClosed
from .context import CONTEXT, ServerContext
from .errors import (
    BusError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StreamingError,
    Unauthenticated,
    Unavailable,
)
from .events import StreamEventType, TaskStreamEvent, task_key, workflow_key
from .http_problems import HTTP_STATUS
from .sse import encode_comment, encode_event
from .streams import OpenStream, StreamStopped

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one request streams, once its checks have passed."""

    kind: str  # workflow | consolidated | task
    target_id: uuid.UUID
    tenant_id: uuid.UUID
    keys: list[str]
    task_filter: str | None = None  # a workflow's task: only its events
    tree: set[uuid.UUID] | None = None


async def stream_workflow(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "workflow")


async def stream_consolidated(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "consolidated")


async def stream_task(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "task")


async def _serve(request: web.Request, kind: str) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    try:
        return await _serve_checked(request, ctx, kind)
    except StreamingError as error:
        ctx.metrics.sse_responses.labels(str(HTTP_STATUS[error.code])).inc()
        raise


async def _serve_checked(request: web.Request, ctx: ServerContext, kind: str) -> web.StreamResponse:
    principal = await _authenticate(request, ctx)
    target_id = parse_uuid(request.match_info["id"], "id")
    tenant_slug = request.match_info["tenant"]
    _check_token(principal, tenant_slug, kind, target_id)
    plan = await _plan(ctx, principal, tenant_slug, kind, target_id)
    after, from_start = _cursor(request)
    ctx.streams.reserve(plan.tenant_id)
    try:
        return await _stream(request, ctx, principal, plan, after, from_start)
    finally:
        ctx.streams.release(plan.tenant_id)


async def _authenticate(request: web.Request, ctx: ServerContext) -> Principal:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        token = request.query.get("access_token")
        if token is not None and not token.startswith("fst_"):
            # Long-lived tokens in URLs end up in logs (RFC 9700); only stream tokens may.
            raise Unauthenticated("only short-lived stream tokens are accepted in the URL")
        if token is None:
            raise Unauthenticated("a bearer token is required")
        principal = await ctx.auth.authenticate(token)
        if principal.kind != "stream":
            raise Unauthenticated("only short-lived stream tokens are accepted in the URL")
        return principal
    return await ctx.auth.authenticate(token)


def parse_uuid(raw: str, name: str) -> uuid.UUID:
    try:
        value = uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a UUID") from None
    if len(raw) not in (32, 36):
        raise InvalidArgument(f"{name} must be a UUID")
    return value


def _check_token(principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID) -> None:
    """The contract's "token's tenant" step: kind, tenant and stream-token scope."""
    if principal.is_admin:
        return
    if principal.kind not in ("user", "stream"):
        raise PermissionDenied(f"a {principal.kind} token cannot open streams")
    if principal.tenant_slug != tenant_slug:
        raise PermissionDenied("the token belongs to another tenant")
    if principal.kind == "stream":
        scope = principal.scope_task_id if kind == "task" else principal.scope_workflow_id
        if scope != target_id:
            raise PermissionDenied("the stream token is scoped to another workflow or task")


async def _plan(
    ctx: ServerContext, principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
) -> _Plan:
    tenant_id = principal.tenant_id
    if tenant_id is None:  # admin: the path's tenant
        tenant = await ctx.store.tenant_by_slug(tenant_slug)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_slug!r}")
        tenant_id = tenant.id
    if kind == "task":
        task = await ctx.directory.task(target_id)
        if task is None:
            raise NotFound(f"task execution {target_id} not found")
        if task.tenant_id != tenant_id:
            raise PermissionDenied("the task belongs to another tenant")
        if task.workflow_id is None:
            return _Plan(kind, target_id, tenant_id, [task_key(str(target_id))])
        keys = [workflow_key(str(task.workflow_id))]
        return _Plan(kind, target_id, tenant_id, keys, task_filter=str(target_id))
    owner = await ctx.directory.workflow(target_id)
    if owner is None:
        raise NotFound(f"workflow execution {target_id} not found")
    if owner.tenant_id != tenant_id:
        raise PermissionDenied("the workflow belongs to another tenant")
    if kind == "workflow":
        return _Plan(kind, target_id, tenant_id, [workflow_key(str(target_id))])
    tree = {target_id, *await ctx.store.descendants(target_id)}
    keys = [workflow_key(str(w)) for w in tree]
    return _Plan(kind, target_id, tenant_id, keys, tree=tree)


def _cursor(request: web.Request) -> tuple[int | None, bool]:
    """(after, from_start). A cursor that is not ours becomes -1: the bus answers `gap`."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    start = request.query.get("from")
    if start is not None and start != "start":
        raise InvalidArgument("the only accepted value of 'from' is 'start'")
    if raw is None or raw == "":
        return None, start == "start"
    try:
        after = int(raw.strip())
    except ValueError:
        return -1, False
    return (after if after >= 0 else -1), False


async def _stream(
    request: web.Request,
    ctx: ServerContext,
    principal: Principal,
    plan: _Plan,
    after: int | None,
    from_start: bool,
) -> web.StreamResponse:
    # Subscribe before the headers go out: a client holding the headers misses nothing.
    try:
        sub = await ctx.bus.subscribe(plan.keys, after=after, from_start=from_start)
    except BusError as error:
        log.warning("subscribe failed", extra={"reason": str(error)})
        raise Unavailable("the event bus is unavailable; retry shortly") from error
    stream = OpenStream(plan.tenant_id, principal.token_id, sub, plan.tree)
    ctx.streams.add(stream)
    gauge = ctx.metrics.subscribers_active.labels(plan.kind)
    gauge.inc()

    def on_failure(error: Exception) -> None:
        if isinstance(error, SubscriberEvicted):
            # The client is too slow: drop the connection, even mid-write; it may resume.
            ctx.metrics.evictions.inc()
            if request.transport is not None:
                request.transport.abort()

    sub.on_failure = on_failure
    try:
        status = await _status(ctx, plan)
        response = web.StreamResponse(status=200, headers=SSE_HEADERS)
        await response.prepare(request)
        ctx.metrics.sse_responses.labels("200").inc()
        log.info(
            "stream opened",
            extra={"stream_id": stream.stream_id, "kind": plan.kind, "target": str(plan.target_id)},
        )
        try:
            reason = await _write_stream(
                ctx, principal, plan, stream, response, after, status, request.transport
            )
        except ConnectionError:
            reason = "client gone"
        return await _finish(response, stream, reason)
    finally:
        sub.close()
        ctx.streams.remove(stream)
        gauge.dec()


async def _write_stream(
    ctx: ServerContext,
    principal: Principal,
    plan: _Plan,
    stream: OpenStream,
    response: web.StreamResponse,
    after: int | None,
    status: str | None,
    transport: asyncio.Transport | None,
) -> str:
    """gap (if any), replay, then `end` or the live feed; returns why the stream ended."""
    sub = stream.subscription
    writer = _Writer(ctx, plan, response, transport)
    if sub.gap:
        requested = "" if after is None or after < 0 else str(after)
        await response.write(encode_event("gap", json.dumps({"requested": requested})))
    if await writer.write(sub.replay):
        return "replayed to the end"
    if status is not None:
        await response.write(_end_event(End(str(plan.target_id), status), None))
        return "already finished"
    sub.direct = writer.direct
    try:
        return await _pump(ctx, principal, stream, writer)
    finally:
        sub.direct = None


async def _status(ctx: ServerContext, plan: _Plan) -> str | None:
    """The terminal status of the stream's target, read after subscribing so an `end` marker
    published meanwhile is either in the feed or visible here."""
    record = await (
        ctx.store.task(plan.target_id)
        if plan.kind == "task"
        else ctx.store.workflow(plan.target_id)
    )
    return record.status if record is not None and record.terminal else None


async def _pump(
    ctx: ServerContext, principal: Principal, stream: OpenStream, writer: _Writer
) -> str:
    """Write live batches until the stream ends. One timer per stream wakes the loop for
    keep-alives, the idle timeout and token expiry; events only move the deadlines, so the hot
    path sets up no timeout per batch."""
    settings = ctx.settings
    loop = asyncio.get_running_loop()
    sub = stream.subscription
    now = last_write = loop.time()
    idle_at = now + settings.idle_timeout
    keepalive_at = now + settings.keepalive_interval
    left = principal.seconds_left()
    expires_at = now + left if left is not None else float("inf")
    check_at = min(idle_at, keepalive_at, expires_at)
    timer = loop.call_at(check_at, sub.poke)
    response = writer.response
    try:
        while True:
            try:
                batch = await sub.next_batch()
            except StreamStopped as stop:
                if stop.event is not None:
                    body = json.dumps({"reason": stop.reason})
                    await response.write(encode_event(stop.event, body))
                return stop.reason
            except SubscriberEvicted:
                return "evicted: too slow"
            except SubscriptionClosed as closed:
                return f"bus closed the subscription: {closed}"
            if batch and await writer.write(batch):
                return "finished"
            if writer.last_write > last_write:  # written here or straight from the bus
                last_write = writer.last_write
                idle_at = last_write + settings.idle_timeout
                keepalive_at = last_write + settings.keepalive_interval
            now = loop.time()
            if now < check_at:
                continue
            if now >= expires_at:
                await response.write(encode_event("auth-expired", '{"reason":"token expired"}'))
                return "token expired"
            if now >= idle_at:
                await response.write(b": idle-timeout\n\n")
                return "idle timeout"
            if now >= keepalive_at:
                await writer.write_raw(encode_comment("keep-alive"))
                keepalive_at = now + settings.keepalive_interval
            check_at = min(idle_at, keepalive_at, expires_at)
            timer = loop.call_at(check_at, sub.poke)
    finally:
        timer.cancel()


async def _finish(
    response: web.StreamResponse, stream: OpenStream, reason: str
) -> web.StreamResponse:
    log.info("stream closed", extra={"stream_id": stream.stream_id, "reason": reason})
    with contextlib.suppress(ConnectionError):
        if reason != "client gone":
            await response.write_eof()
    return response


# Above this many bytes waiting in the socket's buffer, the direct path steps aside and the
# stream's task takes over (it awaits drain, and a stalled client ends up evicted).
_DIRECT_HIGH_WATER = 64 * 1024


class _Writer:
    """Encodes deliveries for one stream: in batches from its task (`write`), or one at a time
    straight from the bus's fan-out while the socket is idle (`direct`)."""

    def __init__(
        self,
        ctx: ServerContext,
        plan: _Plan,
        response: web.StreamResponse,
        transport: asyncio.Transport | None,
    ) -> None:
        self.response = response
        self.count = 0
        self.last_write = asyncio.get_running_loop().time()
        self._busy = False
        self._transport = transport
        # Set by aiohttp when it prepared the response (HTTP/1.1 without a length).
        self._chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._plan = plan
        self._target = str(plan.target_id)
        self._consolidated = plan.kind == "consolidated"
        self._delivered = ctx.metrics.delivered_by_type
        self._latency = ctx.metrics.delivery_latency

    async def write(self, batch: list[Delivery]) -> bool:
        """Write what belongs to this stream; True once its `end` has been written."""
        chunks: list[bytes] = []
        ended = False
        oldest_ms = 0
        counts: dict[StreamEventType, int] = {}
        for delivery in batch:
            item = delivery.item
            if isinstance(item, End):
                if item.target_id == self._target:
                    chunks.append(_end_event(item, delivery.cursor))
                    ended = True
                    break
                continue
            if (
                self._plan.task_filter is not None
                and item.task_execution_id != self._plan.task_filter
            ):
                continue
            chunks.append(_encode(delivery, self._consolidated))
            counts[item.event_type] = counts.get(item.event_type, 0) + 1
            if item.published_at_ms and not oldest_ms:
                oldest_ms = item.published_at_ms
        if chunks:
            self.count += len(chunks)
            self._busy = True
            try:
                await self.response.write(b"".join(chunks))
            finally:
                self._busy = False
            self.last_write = asyncio.get_running_loop().time()
            # Per batch, not per event: fan-out multiplies every per-event cost by subscribers.
            for event_type, n in counts.items():
                self._delivered[event_type].inc(n)
            if oldest_ms:
                self._latency.observe(max(0.0, time.time() * 1000 - oldest_ms) / 1000)
        return ended

    async def write_raw(self, data: bytes) -> None:
        """A comment or control event, through the same path as batches."""
        self._busy = True
        try:
            await self.response.write(data)
        finally:
            self._busy = False

    def direct(self, delivery: Delivery) -> bool:
        """Write one delivery synchronously if the socket can take it now; False hands it to the
        stream's task (busy writer, full buffer, or an `end`, which closes the stream)."""
        transport = self._transport
        item = delivery.item
        if (
            self._busy
            or isinstance(item, End)
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > _DIRECT_HIGH_WATER
        ):
            return False
        if self._plan.task_filter is not None and item.task_execution_id != self._plan.task_filter:
            return True  # not this stream's: nothing to write
        data = _encode(delivery, self._consolidated)
        if self._chunked:  # HTTP/1.1: the framing aiohttp's writer would add
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            transport.write(data)
        self.count += 1
        self.last_write = asyncio.get_running_loop().time()
        self._delivered[item.event_type].inc()
        if item.published_at_ms:
            self._latency.observe(max(0.0, time.time() * 1000 - item.published_at_ms) / 1000)
        return True


@functools.lru_cache(maxsize=8192)
def _encode(delivery: Delivery, consolidated: bool) -> bytes:
    """Fan-out encodes each delivery once, not once per subscriber."""
    event = delivery.item
    assert isinstance(event, TaskStreamEvent)
    if consolidated:
        data = json.dumps(
            {
                "workflowExecutionId": event.workflow_execution_id,
                "taskExecutionId": event.task_execution_id,
                "sequence": event.sequence,
                "data": event.payload,
            }
        )
    else:
        data = event.payload
    return encode_event(event.event_type.sse_name, data, str(delivery.cursor))


def _end_event(end: End, cursor: int | None) -> bytes:
    return encode_event(
        "end", json.dumps({"status": end.status}), None if cursor is None else str(cursor)
    )
