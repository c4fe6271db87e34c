"""The defects, each a small monkeypatch of the reference server applied before it starts.

A variant *is* a server, launched as its own process; the suite talks to it only over the
wire. Each patch wraps the reference behaviour and breaks exactly one rule of SPEC.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from reference_server import http_streams, ingest, settings, sse_writer
from reference_server.auth import ADMIN, Authenticator, Principal
from reference_server.bus import DescendantCreated, End, Notice
from reference_server.bus_memory import InMemoryBus
from reference_server.context import ServerContext
from reference_server.errors import Unauthenticated
from reference_server.store import Store
from reference_server.streams import StreamRegistry


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
    # Every ingest path (unary, batch, stream, HTTP) checks the tenant through this function.
    ingest.check_tenant = lambda owner, principal, what: None


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
}


def apply(name: str) -> None:
    """Apply the defect `name` to the (not yet started) reference server."""
    PATCHES[name]()
