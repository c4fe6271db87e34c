"""The defects, each a small monkeypatch of the reference server applied before it starts.

A variant *is* a server, launched as its own process; the suite talks to it only over the
wire. Each patch wraps the reference behaviour and breaks exactly one rule of SPEC.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from reference_server import http_streams, settings, sse_writer
from reference_server.auth import ADMIN, Authenticator, Principal
from reference_server.bus import Delivery, DescendantCreated, End, Notice, Subscription
from reference_server.bus_memory import InMemoryBus
from reference_server.context import ServerContext
from reference_server.errors import PermissionDenied, Unauthenticated
from reference_server.events import StreamEventType, TaskStreamEvent
from reference_server.grpc_service import TaskExecutionService
from reference_server.sse_writer import StreamWriter
from reference_server.store import Store
from reference_server.streams import OpenStream, StreamRegistry, StreamStopped


def _settings_override(**changes: Any) -> None:
    original = settings.from_sources

    def from_sources(args: argparse.Namespace, environ: Mapping[str, str]) -> settings.Settings:
        return original(args, environ).with_changes(**changes)

    settings.from_sources = from_sources


def tenant_check_skipped() -> None:
    check_token, plan = http_streams._check_token, http_streams._plan

    def _check_token(
        principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
    ) -> None:
        principal = dataclasses.replace(principal, tenant_slug=tenant_slug)
        check_token(principal, tenant_slug, kind, target_id)

    async def _plan(
        ctx: ServerContext,
        principal: Principal,
        tenant_slug: str,
        kind: str,
        target_id: uuid.UUID,
    ) -> http_streams._Plan:
        owner = await (
            ctx.directory.task(target_id) if kind == "task" else ctx.directory.workflow(target_id)
        )
        if owner is not None and principal.tenant_id is not None:
            principal = dataclasses.replace(principal, tenant_id=owner.tenant_id)
        return await plan(ctx, principal, tenant_slug, kind, target_id)

    http_streams._check_token = _check_token
    http_streams._plan = _plan


def any_token_accepted() -> None:
    authenticate = Authenticator.authenticate

    async def accept_anything(self: Authenticator, token: str | None) -> Principal:
        try:
            return await authenticate(self, token)
        except Unauthenticated:
            return ADMIN

    Authenticator.authenticate = accept_anything  # type: ignore[method-assign]


def no_keepalive() -> None:
    # A blank line dispatches nothing and is no comment: the connection carries no keep-alive.
    http_streams.encode_comment = lambda text: b"\n"  # type: ignore[attr-defined]


def idle_timeout_ignored() -> None:
    _settings_override(idle_timeout=1e9)


def consolidated_without_children() -> None:
    on_notice = StreamRegistry.on_notice

    async def descendants(self: Store, workflow_id: uuid.UUID) -> list[uuid.UUID]:
        return []

    async def ignore_descendants(self: StreamRegistry, notice: Notice) -> None:
        if not isinstance(notice, DescendantCreated):
            await on_notice(self, notice)

    Store.descendants = descendants  # type: ignore[method-assign]
    StreamRegistry.on_notice = ignore_descendants  # type: ignore[method-assign]


def payload_newlines_raw() -> None:
    def encode_event(event: str, data: str, event_id: str | None = None) -> bytes:
        head = f"id: {event_id}\n" if event_id is not None else ""
        return f"{head}event: {event}\ndata: {data}\n\n".encode()

    http_streams.encode_event = encode_event  # type: ignore[attr-defined]
    sse_writer.encode_event = encode_event  # type: ignore[attr-defined]  # event frames


def wrong_content_type() -> None:
    http_streams.SSE_HEADERS["Content-Type"] = "text/plain; charset=utf-8"


def cross_tenant_publish() -> None:
    accept = TaskExecutionService._accept

    async def accept_any_tenant(self: TaskExecutionService, request: Any, context: Any) -> Any:
        try:
            return await accept(self, request, context)
        except PermissionDenied as error:
            if "another tenant" not in error.detail:
                raise
            return TaskStreamEvent(
                task_execution_id=request.task_execution_id,
                workflow_execution_id=request.workflow_execution_id,
                sequence=request.sequence,
                event_type=StreamEventType(request.type),
                payload=request.payload,
                timestamp_ms=request.timestamp_ms,
                published_at_ms=int(time.time() * 1000),
            )

    TaskExecutionService._accept = accept_any_tenant  # type: ignore[method-assign]


def cursor_off_by_one() -> None:
    cursor = http_streams._cursor

    def _cursor(request: web.Request) -> tuple[int | None, bool]:
        after, from_start = cursor(request)
        return (after - 1 if after is not None and after > 0 else after), from_start

    http_streams._cursor = _cursor


def user_token_in_url() -> None:
    authenticate = http_streams._authenticate

    async def _authenticate(request: web.Request, ctx: ServerContext) -> Principal:
        token = request.query.get("access_token")
        if request.headers.get("Authorization") is None and token:
            return await ctx.auth.authenticate(token)
        return await authenticate(request, ctx)

    http_streams._authenticate = _authenticate


def stream_token_unscoped() -> None:
    check_token = http_streams._check_token

    def _check_token(
        principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
    ) -> None:
        if principal.kind == "stream":
            principal = dataclasses.replace(
                principal, scope_workflow_id=target_id, scope_task_id=target_id
            )
        check_token(principal, tenant_slug, kind, target_id)

    http_streams._check_token = _check_token


def no_end_event() -> None:
    async def publish_end(self: object, stream_key: str, end: End) -> None:
        return None

    InMemoryBus.publish_end = publish_end  # type: ignore[method-assign]
    from reference_server.bus_core import CoreNatsBus
    from reference_server.bus_jetstream import JetStreamBus

    JetStreamBus.publish_end = publish_end  # type: ignore[method-assign]
    CoreNatsBus.publish_end = publish_end  # type: ignore[method-assign]


def no_eviction() -> None:
    _settings_override(subscriber_buffer=10**9)


# -- defects of issue 15: each a realistic, subtle bug that only shows in some situations. They
# wrap public methods (the subscription's producer/consumer sides, the bus's subscribe, the SSE
# writer), so each reads as the bug it plants.


def replay_race() -> None:
    """Live events that arrive while a resumed stream's replay is being written are lost (the
    replay is written first, event by event, and the live feed only joined afterwards)."""
    start_with, offer = Subscription.start_with, Subscription.offer

    def replaying_start(self: Subscription, replay: list[Delivery]) -> None:
        start_with(self, replay)
        if replay:
            self.replaying = True  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()
            loop.call_later(0.2 + 0.01 * len(replay), setattr, self, "replaying", False)

    def lossy_offer(self: Subscription, delivery: Delivery) -> None:
        if getattr(self, "replaying", False):
            self.last_cursor = max(self.last_cursor, delivery.cursor)
            return
        offer(self, delivery)

    Subscription.start_with = replaying_start  # type: ignore[method-assign]
    Subscription.offer = lossy_offer  # type: ignore[method-assign]


def burst_reorder() -> None:
    """A publish is acknowledged before it reaches the bus, which gets it a moment later from a
    task of its own: a producer's burst can overtake itself."""
    from reference_server.bus_jetstream import JetStreamBus

    pending: set[asyncio.Task[None]] = set()
    jitter = random.Random(15)

    def deferred(publish: Any) -> Any:
        async def wrapped(self: Any, event: TaskStreamEvent) -> None:
            async def later() -> None:
                await asyncio.sleep(jitter.random() * 0.02)
                await publish(self, event)

            task = asyncio.get_running_loop().create_task(later())
            pending.add(task)
            task.add_done_callback(pending.discard)

        return wrapped

    InMemoryBus.publish = deferred(InMemoryBus.publish)  # type: ignore[method-assign]
    JetStreamBus.publish = deferred(JetStreamBus.publish)  # type: ignore[method-assign]


def revocation_ends_tenant() -> None:
    """Revoking one token ends every open stream of its tenant, not only that token's."""
    add, remove, revoke = StreamRegistry.add, StreamRegistry.remove, StreamRegistry.revoke
    tenants: dict[uuid.UUID, set[OpenStream]] = {}

    def tracked_add(self: StreamRegistry, stream: OpenStream) -> None:
        add(self, stream)
        tenants.setdefault(stream.tenant_id, set()).add(stream)

    def tracked_remove(self: StreamRegistry, stream: OpenStream) -> None:
        remove(self, stream)
        tenants.get(stream.tenant_id, set()).discard(stream)

    def revoke_tenant(self: StreamRegistry, token_id: uuid.UUID) -> int:
        hit = {
            s.tenant_id for streams in tenants.values() for s in streams if s.token_id == token_id
        }
        count = revoke(self, token_id)
        for tenant in hit:
            for stream in list(tenants.get(tenant, ())):
                stream.stop(StreamStopped("token revoked", "auth-expired"))
        return count

    StreamRegistry.add = tracked_add  # type: ignore[method-assign]
    StreamRegistry.remove = tracked_remove  # type: ignore[method-assign]
    StreamRegistry.revoke = revoke_tenant  # type: ignore[method-assign]


def expired_cursor_without_gap() -> None:
    """A cursor older than what is retained is replayed from what is left, without `gap`."""
    from reference_server.bus_jetstream import JetStreamBus

    def quiet(subscribe: Any) -> Any:
        async def wrapped(
            self: Any, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
        ) -> Subscription:
            sub: Subscription = await subscribe(self, keys, after=after, from_start=from_start)
            first = sub.replay[0].cursor if sub.replay else None
            if sub.gap and after is not None and after >= 0 and first is not None and after < first:
                sub.gap = False
            return sub

        return wrapped

    InMemoryBus.subscribe = quiet(InMemoryBus.subscribe)  # type: ignore[method-assign]
    JetStreamBus.subscribe = quiet(JetStreamBus.subscribe)  # type: ignore[method-assign]


def end_without_close() -> None:
    """`end` is written, but the response is only ended 3 s later (as at a short idle timeout)."""
    write = StreamWriter.write

    async def lingering(self: StreamWriter, batch: list[Delivery]) -> bool:
        ended = await write(self, batch)
        if ended:
            await asyncio.sleep(3.0)
        return ended

    StreamWriter.write = lingering  # type: ignore[method-assign]


def duplicate_at_seam() -> None:
    """The last replayed event is sent again where the live feed takes over."""
    start_with = Subscription.start_with

    def seam(self: Subscription, replay: list[Delivery]) -> None:
        start_with(self, replay + replay[-1:])

    Subscription.start_with = seam  # type: ignore[method-assign]


def error_events_without_id() -> None:
    """`error` events are written without their `id` line (so they cannot be resumed after)."""
    encode = sse_writer.encode_delivery

    def without_id(delivery: Delivery, consolidated: bool) -> bytes:
        data = encode(delivery, consolidated)
        item = delivery.item
        if isinstance(item, TaskStreamEvent) and item.event_type is StreamEventType.ERROR:
            data = b"".join(
                line for line in data.splitlines(keepends=True) if not line.startswith(b"id:")
            )
        return data

    sse_writer.encode_delivery = without_id  # type: ignore[assignment]


PATCHES: dict[str, Callable[[], None]] = {
    "tenant-check-skipped": tenant_check_skipped,
    "any-token-accepted": any_token_accepted,
    "no-keepalive": no_keepalive,
    "idle-timeout-ignored": idle_timeout_ignored,
    "consolidated-without-children": consolidated_without_children,
    "payload-newlines-raw": payload_newlines_raw,
    "wrong-content-type": wrong_content_type,
    "cross-tenant-publish": cross_tenant_publish,
    "cursor-off-by-one": cursor_off_by_one,
    "user-token-in-url": user_token_in_url,
    "stream-token-unscoped": stream_token_unscoped,
    "no-end-event": no_end_event,
    "no-eviction": no_eviction,
    "replay-race": replay_race,
    "burst-reorder": burst_reorder,
    "revocation-ends-tenant": revocation_ends_tenant,
    "expired-cursor-without-gap": expired_cursor_without_gap,
    "end-without-close": end_without_close,
    "duplicate-at-seam": duplicate_at_seam,
    "error-events-without-id": error_events_without_id,
}


def apply(name: str) -> None:
    """Apply the defect `name` to the (not yet started) reference server."""
    PATCHES[name]()
