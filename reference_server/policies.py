"""The rules a request is held to, as objects on `ServerContext.policies`.

Each rule the contract states once lives in one method here, so that a build of the server can
replace exactly one of them (see `extensions.Extension.policies`; `broken_servers` builds its
defective variants that way) without patching private names:

- `AccessPolicy`: who may open which SSE stream (SPEC.md §4.1, §4.2, §4.4).
- `CursorPolicy`: where a stream resumes (`Last-Event-ID`, `lastEventId`, `from`; SPEC.md §4.10).
- `PublishPolicy`: whose executions a worker may publish to (SPEC.md §3.4, §3.5).
- `sse.SseFraming`: how events, comments and the response headers are written (SPEC.md §4.5-4.7).
- `session`: the class that serves one SSE stream (`http_streams.StreamSession`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .auth import PREFIXES, Authenticator, Principal, bearer_token, well_formed
from .directory import Owner
from .errors import InvalidArgument, PermissionDenied, Unauthenticated
from .sse import SseFraming

if TYPE_CHECKING:
    from .http_streams import StreamSession

STREAM_PREFIX = PREFIXES["stream"]


def check_same_tenant(owner_tenant: uuid.UUID, tenant_id: uuid.UUID | None, noun: str) -> None:
    """The ownership step: an execution of another tenant is refused as PERMISSION_DENIED."""
    if owner_tenant != tenant_id:
        raise PermissionDenied(f"the {noun} belongs to another tenant")


class AccessPolicy:
    """Who may open which SSE stream, in the contract's order of checks (SPEC.md §4.4)."""

    async def principal(self, request: web.Request, auth: Authenticator) -> Principal:
        """Authenticate the request: the Authorization header, or a stream token in the URL.

        Long-lived tokens in URLs end up in logs (RFC 9700), so a URL token that is not a
        stream token is refused whatever else the request carries, and a request carries one
        credential (RFC 6750 §2): a valid header does not excuse a user token in the URL
        (SPEC.md §4.2)."""
        header = bearer_token(request.headers.get("Authorization"))
        in_url = request.query.getall("access_token", [])
        if in_url:
            if len(in_url) > 1 or not in_url[0].startswith(STREAM_PREFIX):
                raise Unauthenticated("only short-lived stream tokens are accepted in the URL")
            if header is not None:
                raise Unauthenticated("send one credential: the header or access_token, not both")
            if not well_formed(in_url[0]):
                raise Unauthenticated("the access_token parameter is not a well-formed token")
            principal = await auth.authenticate(in_url[0])
            if principal.kind != "stream":
                raise Unauthenticated("only short-lived stream tokens are accepted in the URL")
            return principal
        if header is None:
            raise Unauthenticated("a bearer token is required")
        return await auth.authenticate(header)

    def check_token(
        self, principal: Principal, tenant_slug: str, kind: str, target_id: uuid.UUID
    ) -> None:
        """The contract's "token's tenant" step: kind, tenant and stream-token scope. The admin
        token is a management credential: it provisions tenants but reads no tenant's events
        (SPEC.md sse/4.1/10)."""
        if principal.is_admin:
            raise PermissionDenied(
                "the admin token is a management credential; it opens no streams"
            )
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

    def check_task_label(self, task: Owner | None, workflow_id: uuid.UUID) -> None:
        """A task id on a workflow's event that names a task of this server (`task`, None for
        an id of no task) must name one of that workflow's tasks: a worker cannot label its
        events with another workflow's (or tenant's) task (SPEC.md grpc/3.4/4). Ids of no task
        are labels the server does not interpret: workers need not register their tasks."""
        if task is not None and task.workflow_id != workflow_id:
            raise PermissionDenied("the task belongs to another workflow")


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
