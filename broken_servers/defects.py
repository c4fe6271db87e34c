"""The defects, each an `Extension` of the reference server that breaks one rule of SPEC.md.

A variant *is* a server, launched as its own process; the suite talks to it only over the wire.
Each defect replaces one public part through `reference_server.extensions` — a policy on
`ServerContext.policies`, the stream session class, a bus wrapper, the authenticator or a
setting — and reuses the reference behaviour for everything else. How to write a new one:

- a rule (who may stream, cursors, publish ownership, SSE frames and headers): subclass
  `AccessPolicy`, `CursorPolicy`, `PublishPolicy` or `SseFraming`, override one method, and pass
  an instance as `Defect(policies={"access" | "cursor" | "publish" | "framing": ...})`;
- how a stream is served: subclass `StreamSession`, override one step and pass
  `Defect(policies={"session": ...})`. Its steps: `plan` (keys and tree), `write_gap` (e.g. an
  expired cursor replayed without `gap`), `write_batch` (the replay and each live batch: reorder
  a burst, drop what arrived during the replay), `take` (single live deliveries straight from
  the fan-out; return False to send everything through `write_batch`), `pump` (the live loop),
  `finish` (e.g. keep the connection open after `end`);
- what the bus does (e.g. drop end markers): subclass `BusWrapper`, override the method, then
  `Defect(bus=...)`;
- a setting: `Defect(settings={...})`.

Then add the name to `DEFECTS` below and to `conformance.variants` with the requirements that
must catch it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from aiohttp import web

from reference_server.auth import ADMIN, Authenticator, Principal
from reference_server.bus import Bus, Delivery, End, SubscriberEvicted, Subscription
from reference_server.context import ServerContext
from reference_server.errors import Unauthenticated
from reference_server.events import TaskStreamEvent, workflow_key
from reference_server.extensions import BusWrapper, Extension
from reference_server.http_streams import StreamPlan, StreamSession
from reference_server.policies import AccessPolicy, CursorPolicy, Policies, PublishPolicy
from reference_server.settings import Settings
from reference_server.sse import SseFraming
from reference_server.sse_writer import StreamWriter
from reference_server.streams import OpenStream, StreamStopped


class Defect(Extension):
    """An extension built from the parts it replaces; everything else is the reference's."""

    def __init__(
        self,
        *,
        settings: dict[str, Any] | None = None,
        policies: dict[str, Any] | None = None,
        bus: Callable[[Bus], Bus] | None = None,
        authenticator: type[Authenticator] | None = None,
    ) -> None:
        self._settings = settings or {}
        self._policies = policies or {}
        self._bus = bus
        if authenticator is not None:
            self.authenticator = authenticator

    def settings(self, settings: Settings) -> Settings:
        return settings.with_changes(**self._settings) if self._settings else settings

    def policies(self, policies: Policies) -> Policies:
        return dataclasses.replace(policies, **self._policies)

    def bus(self, bus: Bus) -> Bus:
        return self._bus(bus) if self._bus is not None else bus


class TenantBlindAccess(AccessPolicy):
    """tenant-check-skipped: neither the token's tenant nor the execution's owner is checked."""

    def check_token(
        self, principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
    ) -> None:
        principal = dataclasses.replace(principal, tenant_slug=tenant_slug)
        super().check_token(principal, tenant_slug, kind, target_id)

    def check_owner(self, owner_tenant: uuid.UUID, tenant_id: uuid.UUID, noun: str) -> None:
        return None


class AnyTokenAuthenticator(Authenticator):
    """any-token-accepted: a token that fails authentication counts as the admin's."""

    async def authenticate(self, token: str | None) -> Principal:
        try:
            return await super().authenticate(token)
        except Unauthenticated:
            return ADMIN


class BlankKeepalive(SseFraming):
    """no-keepalive: a blank line dispatches nothing and is no comment."""

    def keepalive(self) -> bytes:
        return b"\n"


class RootOnlySession(StreamSession):
    """consolidated-without-children: a consolidated stream covers its root workflow only and
    does not grow when a descendant appears."""

    async def plan(
        self, principal: Principal, tenant_slug: str, target_id: uuid.UUID
    ) -> StreamPlan:
        plan = await super().plan(principal, tenant_slug, target_id)
        if plan.tree is None:
            return plan
        return dataclasses.replace(plan, keys=[workflow_key(str(plan.target_id))], tree=None)


class RawNewlineFraming(SseFraming):
    """payload-newlines-raw: data goes out on one `data:` line, line breaks and all."""

    def event(self, event: str, data: str, event_id: str | None = None) -> bytes:
        head = f"id: {event_id}\n" if event_id is not None else ""
        return f"{head}event: {event}\ndata: {data}\n\n".encode()


class PlainTextFraming(SseFraming):
    """wrong-content-type: the stream is labelled text/plain."""

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "Content-Type": "text/plain; charset=utf-8"}


class AnyTenantPublish(PublishPolicy):
    """cross-tenant-publish: a worker publishes to any tenant's executions."""

    def check_owner(self, principal: Principal, owner_tenant: uuid.UUID, noun: str) -> None:
        return None


class OffByOneCursor(CursorPolicy):
    """cursor-off-by-one: resuming repeats the event the client already has."""

    def parse(self, request: web.Request) -> tuple[int | None, bool]:
        after, from_start = super().parse(request)
        return (after - 1 if after is not None and after > 0 else after), from_start


class UserTokenInUrl(AccessPolicy):
    """user-token-in-url: any token is accepted in `access_token`."""

    async def principal(self, request: web.Request, auth: Authenticator) -> Principal:
        token = request.query.get("access_token")
        if request.headers.get("Authorization") is None and token:
            return await auth.authenticate(token)
        return await super().principal(request, auth)


class UnscopedStreamToken(AccessPolicy):
    """stream-token-unscoped: a stream token opens any stream of its tenant."""

    def check_token(
        self, principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
    ) -> None:
        if principal.kind == "stream":
            principal = dataclasses.replace(
                principal, scope_workflow_id=target_id, scope_task_id=target_id
            )
        super().check_token(principal, tenant_slug, kind, target_id)


class NoEndBus(BusWrapper):
    """no-end-event: completing an execution publishes no end marker."""

    async def publish_end(self, stream_key: str, end: End) -> None:
        return None


# -- defects of issue 15: realistic, subtle bugs that show only in some situations ---------------


class ReplayRaceSession(StreamSession):
    """replay-race: a resumed stream writes its replay event by event and only then joins the
    live feed; what arrives meanwhile is taken and forgotten."""

    replaying = False

    async def write(
        self,
        principal: Principal,
        sub: Subscription,
        writer: StreamWriter,
        after: int | None,
        status: str | None,
    ) -> str:
        if not sub.replay or sub.gap or status is not None:
            return await super().write(principal, sub, writer, after, status)
        self.replaying = True
        try:
            for delivery in sub.replay:
                if await writer.write([delivery]):
                    return "replayed to the end"
                await asyncio.sleep(0.005)
        finally:
            self.replaying = False
        sub.replay = []
        return await super().write(principal, sub, writer, after, status)

    def take(self, delivery: Delivery) -> bool:
        return True if self.replaying else super().take(delivery)


class EarlyAckBus(BusWrapper):
    """burst-reorder: a publish is acknowledged before the bus has it (a task of its own hands
    it over a moment later), so a producer's burst can overtake itself."""

    def __init__(self, inner: Bus) -> None:
        super().__init__(inner)
        self._pending: set[asyncio.Task[None]] = set()
        self._jitter = random.Random(15)

    async def publish(self, event: TaskStreamEvent) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        batch = list(events)

        async def later() -> None:
            await asyncio.sleep(self._jitter.random() * 0.02)
            await self.inner.publish_many(batch)

        task = asyncio.get_running_loop().create_task(later())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


class NoGapForExpiredBus(BusWrapper):
    """expired-cursor-without-gap: a cursor older than what is retained is replayed from what
    is left, without `gap` (unparseable and future cursors still get it)."""

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        sub = await self.inner.subscribe(keys, after=after, from_start=from_start)
        first = sub.replay[0].cursor if sub.replay else None
        if sub.gap and after is not None and after >= 0 and first is not None and after < first:
            sub.gap = False
        return sub


class LingeringSession(StreamSession):
    """end-without-close: after `end` the response is ended 3 s later, not at once."""

    async def finish(
        self, response: web.StreamResponse, stream: OpenStream, reason: str
    ) -> web.StreamResponse:
        if reason == "finished":
            await asyncio.sleep(3.0)
        return await super().finish(response, stream, reason)


class SeamDuplicateBus(BusWrapper):
    """duplicate-at-seam: the last replayed event is sent again where the live feed starts."""

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        sub = await self.inner.subscribe(keys, after=after, from_start=from_start)
        sub.replay = sub.replay + sub.replay[-1:]
        return sub


class TenantWideRevocationSession(StreamSession):
    """revocation-ends-tenant: revoking one token ends every open stream of its tenant."""

    open_by_tenant: ClassVar[dict[uuid.UUID, set[Subscription]]] = {}

    async def run(
        self, principal: Principal, plan: StreamPlan, after: int | None, from_start: bool
    ) -> web.StreamResponse:
        self.tenant = plan.tenant_id
        return await super().run(principal, plan, after, from_start)

    async def write(
        self,
        principal: Principal,
        sub: Subscription,
        writer: StreamWriter,
        after: int | None,
        status: str | None,
    ) -> str:
        peers = self.open_by_tenant.setdefault(self.tenant, set())
        peers.add(sub)
        try:
            return await super().write(principal, sub, writer, after, status)
        finally:
            peers.discard(sub)

    def failed(self, error: Exception) -> None:
        super().failed(error)
        if isinstance(error, StreamStopped) and error.reason == "token revoked":
            for peer in list(self.open_by_tenant.get(self.tenant, ())):
                peer.fail(StreamStopped("token revoked", "auth-expired"))


class ErrorWithoutIdFraming(SseFraming):
    """error-events-without-id: `error` events go out without their `id` line."""

    def event(self, event: str, data: str, event_id: str | None = None) -> bytes:
        return super().event(event, data, None if event == "error" else event_id)


class QuietAfterEventsFraming(SseFraming):
    """One stream's framing whose keep-alive timer dies with the first event it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote_event = False

    def event(self, event: str, data: str, event_id: str | None = None) -> bytes:
        self.wrote_event = self.wrote_event or event_id is not None
        return super().event(event, data, event_id)

    def keepalive(self) -> bytes:
        return b"" if self.wrote_event else super().keepalive()


class KeepaliveUntilEventSession(StreamSession):
    """keepalive-stops-after-events: keep-alives flow on an idle stream only until its first
    event; after that a quiet stream gets none."""

    def __init__(self, ctx: ServerContext, request: web.Request, kind: str) -> None:
        super().__init__(ctx, request, kind)
        self.framing = QuietAfterEventsFraming()


class EndBodyOnEvictionSession(StreamSession):
    """eviction-ends-body (conformant): a subscriber that lags is not cut off mid-write; its
    response is ended with the terminating chunk once what was written drains, and the HTTP/1.1
    connection stays open. A suite that only counts a closed socket as "ended" misreads it."""

    def failed(self, error: Exception) -> None:
        if isinstance(error, SubscriberEvicted):
            self.ctx.metrics.evictions.inc()
            return  # the pump sees the eviction and `finish` ends the body
        super().failed(error)


DEFECTS: dict[str, Defect] = {
    "tenant-check-skipped": Defect(policies={"access": TenantBlindAccess()}),
    "any-token-accepted": Defect(authenticator=AnyTokenAuthenticator),
    "no-keepalive": Defect(policies={"framing": BlankKeepalive()}),
    "idle-timeout-ignored": Defect(settings={"idle_timeout": 1e9}),
    "consolidated-without-children": Defect(policies={"session": RootOnlySession}),
    "payload-newlines-raw": Defect(policies={"framing": RawNewlineFraming()}),
    "wrong-content-type": Defect(policies={"framing": PlainTextFraming()}),
    "cross-tenant-publish": Defect(policies={"publish": AnyTenantPublish()}),
    "cursor-off-by-one": Defect(policies={"cursor": OffByOneCursor()}),
    "user-token-in-url": Defect(policies={"access": UserTokenInUrl()}),
    "stream-token-unscoped": Defect(policies={"access": UnscopedStreamToken()}),
    "no-end-event": Defect(bus=NoEndBus),
    "no-eviction": Defect(settings={"subscriber_buffer": 10**9}),
    "replay-race": Defect(policies={"session": ReplayRaceSession}),
    "burst-reorder": Defect(bus=EarlyAckBus),
    "expired-cursor-without-gap": Defect(bus=NoGapForExpiredBus),
    "end-without-close": Defect(policies={"session": LingeringSession}),
    "duplicate-at-seam": Defect(bus=SeamDuplicateBus),
    "revocation-ends-tenant": Defect(policies={"session": TenantWideRevocationSession}),
    "error-events-without-id": Defect(policies={"framing": ErrorWithoutIdFraming()}),
    "keepalive-stops-after-events": Defect(policies={"session": KeepaliveUntilEventSession}),
    "eviction-ends-body": Defect(policies={"session": EndBodyOnEvictionSession}),
}


def extension(name: str) -> Extension:
    """The reference server with the defect `name`, to pass to `reference_server.cli.main`."""
    return DEFECTS[name]
