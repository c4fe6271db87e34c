"""The three SSE endpoints: authenticate, check ownership in the contract's order, subscribe,
then write replay, live events, keep-alives and control events until the stream ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
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
from .events import task_key, workflow_key
from .http_problems import HTTP_STATUS, request_id
from .sse import encode_comment, encode_event
from .sse_writer import StreamWriter, end_event
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

    receiver = _Receiver(ctx, request)
    sub.set_receiver(receiver)
    try:
        status = await _status(ctx, plan)
        response = web.StreamResponse(status=200, headers=SSE_HEADERS)
        await response.prepare(request)
        ctx.metrics.sse_responses.labels("200").inc()
        log.info(
            "stream opened",
            extra={
                "request_id": request_id(request),
                "stream_id": stream.stream_id,
                "kind": plan.kind,
                "target": str(plan.target_id),
            },
        )
        try:
            reason = await _write_stream(
                ctx, principal, plan, stream, response, after, status, receiver
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
    receiver: _Receiver,
) -> str:
    """gap (if any), replay, then `end` or the live feed; returns why the stream ended."""
    sub = stream.subscription
    writer = StreamWriter(
        ctx.metrics,
        target=str(plan.target_id),
        consolidated=plan.kind == "consolidated",
        task_filter=plan.task_filter,
        response=response,
        transport=receiver.transport,
    )
    if sub.gap:
        requested = "" if after is None or after < 0 else str(after)
        await response.write(encode_event("gap", json.dumps({"requested": requested})))
    if await writer.write(sub.replay):
        return "replayed to the end"
    if status is not None:
        await response.write(end_event(End(str(plan.target_id), status), None))
        return "already finished"
    receiver.writer = writer
    try:
        return await _pump(ctx, principal, stream, writer)
    finally:
        receiver.writer = None


class _Receiver:
    """What the subscription reports to: live deliveries straight to the writer while the
    socket is idle, and an eviction, which drops the connection even mid-write."""

    def __init__(self, ctx: ServerContext, request: web.Request) -> None:
        self.transport = request.transport
        self.writer: StreamWriter | None = None
        self._evictions = ctx.metrics.evictions

    def take(self, delivery: Delivery) -> bool:
        return self.writer is not None and self.writer.direct((delivery,))

    def take_many(self, deliveries: Sequence[Delivery]) -> bool:
        return self.writer is not None and self.writer.direct(deliveries)

    def failed(self, error: Exception) -> None:
        if isinstance(error, SubscriberEvicted):
            # The client is too slow: drop the connection, even mid-write; it may resume.
            self._evictions.inc()
            if self.transport is not None:
                self.transport.abort()


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
    ctx: ServerContext, principal: Principal, stream: OpenStream, writer: StreamWriter
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
