"""The rules a request is held to, as objects on `ServerContext.policies`.

Each rule the contract states once lives in one method here, so that a build of the server can
replace exactly one of them (see `extensions.Extension.policies`; `broken_servers` builds its
defective variants that way) without patching private names:

- `AccessPolicy`: who may open which SSE stream (SPEC.md §4.1, §4.2, §4.4).
- `CursorPolicy`: where a stream resumes (`Last-Event-ID`, `lastEventId`, `from`; SPEC.md §4.9).
- `PublishPolicy`: whose executions a worker may publish to (SPEC.md §3.4, §3.5).
- `sse.SseFraming`: how events, comments and the response headers are written (SPEC.md §4.5-4.7).
- `session`: the class that serves one SSE stream (`http_streams.StreamSession`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .auth import Authenticator, Principal, bearer_token
from .errors import InvalidArgument, PermissionDenied, Unauthenticated
from .sse import SseFraming

if TYPE_CHECKING:
    from .http_streams import StreamSession


def check_same_tenant(owner_tenant: uuid.UUID, tenant_id: uuid.UUID | None, noun: str) -> None:
    """The ownership step: an execution of another tenant is refused as PERMISSION_DENIED."""
    if owner_tenant != tenant_id:
        raise PermissionDenied(f"the {noun} belongs to another tenant")


class AccessPolicy:
    """Who may open which SSE stream, in the contract's order of checks (SPEC.md §4.4)."""

    async def principal(self, request: web.Request, auth: Authenticator) -> Principal:
        """Authenticate the request: the Authorization header, else a stream token in the URL
        (SPEC.md §4.2: long-lived tokens in URLs end up in logs, RFC 9700)."""
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            return await auth.authenticate(token)
        token = request.query.get("access_token")
        if token is None:
            raise Unauthenticated("a bearer token is required")
        if not token.startswith("fst_"):
            raise Unauthenticated("only short-lived stream tokens are accepted in the URL")
        principal = await auth.authenticate(token)
        if principal.kind != "stream":
            raise Unauthenticated("only short-lived stream tokens are accepted in the URL")
        return principal

    def check_token(
        self, principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
    ) -> None:
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

    def check_owner(self, owner_tenant: uuid.UUID, tenant_id: uuid.UUID, noun: str) -> None:
        """The stream's execution (`noun`: workflow or task) belongs to the caller's tenant."""
        check_same_tenant(owner_tenant, tenant_id, noun)


class CursorPolicy:
    """Where a stream starts: after a cursor, from the start of what is retained, or live."""

    def parse(self, request: web.Request) -> tuple[int | None, bool]:
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


class PublishPolicy:
    """Whose executions a worker token may publish to."""

    def check_owner(self, principal: Principal, owner_tenant: uuid.UUID, noun: str) -> None:
        check_same_tenant(owner_tenant, principal.tenant_id, noun)


def _stream_session() -> type[StreamSession]:
    from .http_streams import StreamSession

    return StreamSession


@dataclass(frozen=True, slots=True)
class Policies:
    """The replaceable rules of one server; `dataclasses.replace` swaps one of them."""

    access: AccessPolicy = field(default_factory=AccessPolicy)
    cursor: CursorPolicy = field(default_factory=CursorPolicy)
    publish: PublishPolicy = field(default_factory=PublishPolicy)
    framing: SseFraming = field(default_factory=SseFraming)
    session: type[StreamSession] = field(default_factory=_stream_session)
