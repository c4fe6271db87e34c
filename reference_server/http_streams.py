"""The three SSE endpoints. Each request is served by one `StreamSession` (the class on
`ServerContext.policies.session`): authenticate and check in the contract's order (SPEC.md §4.4),
subscribe, then write the gap, the replay, live events, keep-alives and control events until the
stream ends. A subclass changes one step by overriding its method."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from .auth import Principal
from .bus import Delivery, End, SubscriberEvicted, Subscription, SubscriptionClosed
from .context import CONTEXT, ServerContext
from .errors import BusError, NotFound, StreamingError, Unavailable
from .events import task_key, workflow_key
from .http_guard import mark_authenticated
from .http_problems import HTTP_STATUS, request_id
from .ids import parse_uuid
from .sse_writer import StreamWriter
from .streams import OpenStream, StreamStopped

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What one request streams, once its checks have passed."""

    kind: str  # workflow | consolidated | task
    target_id: uuid.UUID
    tenant_id: uuid.UUID
    keys: list[str]
    task_filter: str | None = None  # a workflow's task: only its events
    tree: set[uuid.UUID] | None = None  # consolidated: the workflows it covers, and grows by


async def stream_workflow(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "workflow")


async def stream_consolidated(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "consolidated")


async def stream_task(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "task")


async def _serve(request: web.Request, kind: str) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    try:
        return await ctx.policies.session(ctx, request, kind).serve()
    except StreamingError as error:
        ctx.metrics.sse_responses.labels(str(HTTP_STATUS[error.code])).inc()
        raise


class StreamSession:
    """One SSE stream, from the request to its last byte.

    It is also the subscription's `Receiver`: while the stream is live, deliveries go straight to
    its writer when the socket is idle, and an eviction drops the connection even mid-write."""

    def __init__(self, ctx: ServerContext, request: web.Request, kind: str) -> None:
        self.ctx = ctx
        self.request = request
        self.kind = kind
        self.framing = ctx.policies.framing
        self.writer: StreamWriter | None = None  # set while the live feed runs
        self._transport = request.transport

    async def serve(self) -> web.StreamResponse:
        """The checks (each refusal an HTTP problem), then the stream, counted against its
        tenant's limit while it is open."""
        policies = self.ctx.policies
        principal = await policies.access.principal(self.request, self.ctx.auth)
        mark_authenticated(self.request)
        target_id = parse_uuid(self.request.match_info["id"], "id")
        tenant_slug = self.request.match_info["tenant"]
        policies.access.check_token(principal, tenant_slug, self.kind, target_id)
        plan = await self.plan(principal, tenant_slug, target_id)
        after, from_start = policies.cursor.parse(self.request)
        self.ctx.streams.reserve(plan.tenant_id)
        try:
            return await self.run(principal, plan, after, from_start)
        finally:
            self.ctx.streams.release(plan.tenant_id)

    async def plan(
        self, principal: Principal, tenant_slug: str, target_id: uuid.UUID
    ) -> StreamPlan:
        """The stream's keys, after the 404 and owner checks (SPEC.md §4.4)."""
        ctx, kind, access = self.ctx, self.kind, self.ctx.policies.access
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
            access.check_owner(task.tenant_id, tenant_id, "task")
            if task.workflow_id is None:
                return StreamPlan(kind, target_id, tenant_id, [task_key(str(target_id))])
            keys = [workflow_key(str(task.workflow_id))]
            return StreamPlan(kind, target_id, tenant_id, keys, task_filter=str(target_id))
        owner = await ctx.directory.workflow(target_id)
        if owner is None:
            raise NotFound(f"workflow execution {target_id} not found")
        access.check_owner(owner.tenant_id, tenant_id, "workflow")
        if kind == "workflow":
            return StreamPlan(kind, target_id, tenant_id, [workflow_key(str(target_id))])
        tree = {target_id, *await ctx.store.descendants(target_id)}
        keys = [workflow_key(str(w)) for w in tree]
        return StreamPlan(kind, target_id, tenant_id, keys, tree=tree)

    async def run(
        self, principal: Principal, plan: StreamPlan, after: int | None, from_start: bool
    ) -> web.StreamResponse:
        """Subscribe, send the headers, write until the stream ends, then let go."""
        ctx = self.ctx
        # Subscribe before the headers go out: a client holding the headers misses nothing.
        try:
            sub = await ctx.bus.subscribe(plan.keys, after=after, from_start=from_start)
        except BusError as error:
            log.warning("subscribe failed", extra={"reason": str(error)})
            raise Unavailable("the event bus is unavailable; retry shortly") from error
        stream = OpenStream(
            plan.tenant_id, principal.token_id, sub, plan.tree, issued_by=principal.issued_by
        )
        ctx.streams.add(stream)
        gauge = ctx.metrics.subscribers_active.labels(plan.kind)
        gauge.inc()
        sub.set_receiver(self)
        try:
            status = await self.terminal_status(plan)
            response = web.StreamResponse(status=200, headers=self.framing.headers)
            await response.prepare(self.request)
            ctx.metrics.sse_responses.labels("200").inc()
            log.info(
                "stream opened",
                extra={
                    "request_id": request_id(self.request),
                    "stream_id": stream.stream_id,
                    "kind": plan.kind,
                    "target": str(plan.target_id),
                },
            )
            writer = StreamWriter(
                ctx.metrics, self.framing, target=str(plan.target_id),
                consolidated=plan.kind == "consolidated", task_filter=plan.task_filter,
                response=response, transport=self._transport,
            )  # fmt: skip
            try:
                reason = await self.write(principal, sub, writer, after, status)
            except ConnectionError:
                reason = "client gone"
            return await self.finish(response, stream, reason)
        finally:
            sub.close()
            ctx.streams.remove(stream)
            gauge.dec()

    async def terminal_status(self, plan: StreamPlan) -> str | None:
        """The terminal status of the stream's target, read after subscribing so an `end` marker
        published meanwhile is either in the feed or visible here."""
        store = self.ctx.store
        record = await (
            store.task(plan.target_id) if plan.kind == "task" else store.workflow(plan.target_id)
        )
        return record.status if record is not None and record.terminal else None

    async def write(
        self,
        principal: Principal,
        sub: Subscription,
        writer: StreamWriter,
        after: int | None,
        status: str | None,
    ) -> str:
        """gap (if any), replay, then `end` or the live feed; returns why the stream ended."""
        if sub.gap:
            await self.write_gap(writer, after)
        if await self.write_batch(writer, sub.replay):
            return "replayed to the end"
        if status is not None:
            target = writer.target
            await writer.response.write(self.framing.end(End(target, status), None))
            return "already finished"
        self.writer = writer
        try:
            return await self.pump(principal, sub, writer)
        finally:
            self.writer = None

    async def write_gap(self, writer: StreamWriter, after: int | None) -> None:
        """The `gap` event: the cursor could not be placed (SPEC.md §4.10)."""
        requested = "" if after is None or after < 0 else str(after)
        await writer.response.write(self.framing.gap(requested))

    async def write_batch(self, writer: StreamWriter, batch: list[Delivery]) -> bool:
        """Write the replay or one live batch; True once the stream's `end` is written. (Single
        live deliveries may go straight out through `take` instead.)"""
        return await writer.write(batch)

    async def pump(self, principal: Principal, sub: Subscription, writer: StreamWriter) -> str:
        """Write live batches until the stream ends. One timer per stream wakes the loop for
        keep-alives, the idle timeout and token expiry; events only move the deadlines, so the hot
        path sets up no timeout per batch."""
        settings, framing, response = self.ctx.settings, self.framing, writer.response
        loop = asyncio.get_running_loop()
        now = last_write = loop.time()
        idle_at = now + settings.idle_timeout
        keepalive_at = now + settings.keepalive_interval
        left = principal.seconds_left()
        expires_at = now + left if left is not None else float("inf")
        check_at = min(idle_at, keepalive_at, expires_at)
        timer = loop.call_at(check_at, sub.poke)
        try:
            while True:
                try:
                    batch = await sub.next_batch()
                except StreamStopped as stop:
                    if stop.event is not None:
                        await response.write(framing.control(stop.event, stop.reason))
                    return stop.reason
                except SubscriberEvicted:
                    return "evicted: too slow"
                except SubscriptionClosed as closed:
                    return f"bus closed the subscription: {closed}"
                if batch and await self.write_batch(writer, batch):
                    return "finished"
                if writer.last_write > last_write:  # written here or straight from the bus
                    last_write = writer.last_write
                    idle_at = last_write + settings.idle_timeout
                    keepalive_at = last_write + settings.keepalive_interval
                now = loop.time()
                if now < check_at:
                    continue
                if now >= expires_at:
                    await response.write(framing.control("auth-expired", "token expired"))
                    return "token expired"
                if now >= idle_at:
                    await response.write(framing.comment("idle-timeout"))
                    return "idle timeout"
                if now >= keepalive_at:
                    await writer.write_raw(framing.keepalive())
                    keepalive_at = now + settings.keepalive_interval
                check_at = min(idle_at, keepalive_at, expires_at)
                timer = loop.call_at(check_at, sub.poke)
        finally:
            timer.cancel()

    async def finish(
        self, response: web.StreamResponse, stream: OpenStream, reason: str
    ) -> web.StreamResponse:
        log.info("stream closed", extra={"stream_id": stream.stream_id, "reason": reason})
        with contextlib.suppress(ConnectionError):
            if reason != "client gone":
                await response.write_eof()
        return response

    # -- the subscription's Receiver -------------------------------------------------------------

    def take(self, delivery: Delivery) -> bool:
        return self.writer is not None and self.writer.direct(delivery)

    def take_many(self, deliveries: Sequence[Delivery]) -> bool:
        return self.writer is not None and self.writer.direct_many(deliveries)

    def failed(self, error: Exception) -> None:
        if isinstance(error, SubscriberEvicted):
            # The client is too slow: drop the connection, even mid-write; it may resume.
            self.ctx.metrics.evictions.inc()
            if self._transport is not None:
                self._transport.abort()
