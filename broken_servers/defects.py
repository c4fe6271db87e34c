"""The defects, each an `Extension` of the reference server that breaks one rule of SPEC.md.

A variant *is* a server, launched as its own process; the suite talks to it only over the wire.
Each defect replaces one public part through `reference_server.extensions` — a policy on
`ServerContext.policies`, the stream session class, a bus wrapper, the authenticator or a
setting — and reuses the reference behaviour for everything else. How to write a new one:

- a rule (who may stream, cursors, publish ownership, SSE frames and headers): subclass
  `AccessPolicy`, `CursorPolicy`, `PublishPolicy` or `SseFraming`, override one method, and pass
  an instance to `Defect(...)`;
- how a stream is served (e.g. keep the connection open after `end`, drop what arrives during the
  replay, replay an expired cursor without `gap`): subclass `StreamSession` and override `write`,
  `pump`, `take` or `plan`, then `Defect(session=...)`;
- what the bus delivers (e.g. reorder a burst, drop end markers): subclass `BusWrapper`, override
  the method, then `Defect(bus=...)`;
- a setting: `Defect(settings={...})`.

Then add the name to `DEFECTS` below and to `conformance.variants` with the requirements that
must catch it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from reference_server.auth import ADMIN, Authenticator, Principal
from reference_server.bus import Bus, End
from reference_server.errors import Unauthenticated
from reference_server.events import workflow_key
from reference_server.extensions import BusWrapper, Extension
from reference_server.http_streams import StreamPlan, StreamSession
from reference_server.policies import AccessPolicy, CursorPolicy, Policies, PublishPolicy
from reference_server.settings import Settings
from reference_server.sse import SseFraming


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
}


def extension(name: str) -> Extension:
    """The reference server with the defect `name`, to pass to `reference_server.cli.main`."""
    return DEFECTS[name]
