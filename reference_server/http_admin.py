"""Management API (openapi.yaml, `/api/admin/...`): tenants, tokens, executions, completion
and stream tokens."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from aiohttp import web

from .auth import Principal, bearer_token, require_tenant_access
from .bus import DescendantCreated, End, TokenRevoked
from .context import CONTEXT, ServerContext
from .errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from .events import task_key, workflow_key
from .http_guard import mark_authenticated
from .ids import parse_uuid
from .store import TERMINAL_STATUSES, Execution, Tenant

# Patterns are applied with fullmatch: `$` would let a trailing newline through.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600  # tokens that should never expire: omit ttlSeconds
_KIND = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
MAX_JSON_DEPTH = 8  # management bodies are flat objects


async def _principal(request: web.Request) -> Principal:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthenticated("a bearer token is required")
    principal = await request.app[CONTEXT].auth.authenticate(token)
    mark_authenticated(request)
    return principal


async def _admin(request: web.Request) -> None:
    if not (await _principal(request)).is_admin:
        raise PermissionDenied("this endpoint needs the admin token")


async def _tenant(request: web.Request) -> Tenant:
    """The path's tenant, for a user token of that tenant or the admin token."""
    return (await _caller_and_tenant(request))[1]


async def _caller_and_tenant(request: web.Request) -> tuple[Principal, Tenant]:
    principal = await _principal(request)
    slug = request.match_info["tenant"]
    require_tenant_access(principal, slug)
    tenant = await request.app[CONTEXT].store.tenant_by_slug(slug)
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return principal, tenant


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the body must be a JSON object") from None
    except RecursionError:
        raise InvalidArgument(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise InvalidArgument(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def _depth(value: object) -> int:
    """Nesting depth, iteratively: a body that parsed can still be too deep to recurse over."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                stack.extend(
                    (child, level + 1)
                    for child in (item.values() if isinstance(item, dict) else item)
                )
    return deepest


def _string(body: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
        raise InvalidArgument(f"{name} is required and must be a valid string")
    return value


def _optional_uuid(body: dict[str, Any], name: str) -> uuid.UUID | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a UUID string")
    return parse_uuid(value, name)


def _optional_ttl(body: dict[str, Any]) -> int | None:
    ttl = body.get("ttlSeconds")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_SECONDS:
        raise InvalidArgument(f"ttlSeconds must be an integer from 1 to {MAX_TTL_SECONDS}")
    return ttl


def _execution_json(execution: Execution, slug: str, parent_name: str) -> dict[str, Any]:
    return {
        "id": str(execution.id),
        "tenant": slug,
        "kind": execution.kind,
        "status": execution.status,
        parent_name: str(execution.parent_id) if execution.parent_id else None,
    }


async def create_tenant(request: web.Request) -> web.Response:
    await _admin(request)
    slug = _string(await _body(request), "slug")
    if not _SLUG.fullmatch(slug):
        raise InvalidArgument("slug: lower-case letters, digits and '-', at most 63 characters")
    tenant = await request.app[CONTEXT].store.create_tenant(slug)
    return web.json_response({"id": str(tenant.id), "slug": tenant.slug}, status=201)


async def create_token(request: web.Request) -> web.Response:
    await _admin(request)
    ctx = request.app[CONTEXT]
    body = await _body(request)
    kind = _string(body, "kind")
    if kind not in ("user", "worker"):
        raise InvalidArgument("kind must be 'user' or 'worker' (stream tokens: POST stream-tokens)")
    ttl = _optional_ttl(body)
    tenant = await ctx.store.tenant_by_slug(request.match_info["tenant"])
    if tenant is None:
        raise NotFound(f"no tenant {request.match_info['tenant']!r}")
    token_id, token, expires_at = await ctx.auth.issue(tenant.id, kind, ttl)
    return web.json_response(
        {
            "id": str(token_id),
            "token": token,
            "kind": kind,
            "expiresAt": expires_at.isoformat() if expires_at else None,
        },
        status=201,
    )


async def revoke_token(request: web.Request) -> web.Response:
    await _admin(request)
    ctx = request.app[CONTEXT]
    token_id = parse_uuid(request.match_info["id"], "token id")
    if not await ctx.store.revoke_token(token_id):
        raise NotFound(f"no token {token_id}")
    return await _revoked(ctx, token_id)


async def _revoked(ctx: ServerContext, token_id: uuid.UUID) -> web.Response:
    """Tell this instance at once and the others through the bus (their store poll is the
    fallback); streams opened with the token, or with stream tokens it minted, end."""
    ctx.auth.revoked(token_id)
    await ctx.bus.announce(TokenRevoked(str(token_id)))
    return web.Response(status=204)


async def create_workflow(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    ctx = request.app[CONTEXT]
    body = await _body(request)
    kind = _string(body, "kind", _KIND)
    parent = _optional_uuid(body, "parentWorkflowExecutionId")
    workflow = await ctx.store.create_workflow(tenant.id, kind, parent)
    ctx.directory.remember_workflow(workflow.id, tenant.id)
    if parent is not None:
        await ctx.bus.announce(DescendantCreated(str(parent), str(workflow.id)))
    payload = _execution_json(workflow, tenant.slug, "parentWorkflowExecutionId")
    return web.json_response(payload, status=201)


async def get_workflow(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    store = request.app[CONTEXT].store
    workflow = await store.workflow(parse_uuid(request.match_info["id"], "id"))
    if workflow is None or workflow.tenant_id != tenant.id:
        raise NotFound("workflow execution not found")
    payload = _execution_json(workflow, tenant.slug, "parentWorkflowExecutionId")
    payload["children"] = [
        _execution_json(c, tenant.slug, "parentWorkflowExecutionId")
        for c in await store.children(workflow.id)
    ]
    return web.json_response(payload)


async def create_task(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    ctx = request.app[CONTEXT]
    body = await _body(request)
    kind = _string(body, "kind", _KIND)
    workflow_id = _optional_uuid(body, "workflowExecutionId")
    task = await ctx.store.create_task(tenant.id, kind, workflow_id)
    ctx.directory.remember_task(task.id, tenant.id, workflow_id)
    return web.json_response(_execution_json(task, tenant.slug, "workflowExecutionId"), status=201)


async def get_task(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    task = await request.app[CONTEXT].store.task(parse_uuid(request.match_info["id"], "id"))
    if task is None or task.tenant_id != tenant.id:
        raise NotFound("task execution not found")
    return web.json_response(_execution_json(task, tenant.slug, "workflowExecutionId"))


async def complete_workflow(request: web.Request) -> web.Response:
    return await _complete(request, "workflow_execution")


async def complete_task(request: web.Request) -> web.Response:
    return await _complete(request, "task_execution")


async def _complete(request: web.Request, table: str) -> web.Response:
    tenant = await _tenant(request)
    ctx: ServerContext = request.app[CONTEXT]
    status = _string(await _body(request), "status")
    if status not in TERMINAL_STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(sorted(TERMINAL_STATUSES))}")
    execution_id = parse_uuid(request.match_info["id"], "id")
    current = await (
        ctx.store.workflow(execution_id)
        if table == "workflow_execution"
        else ctx.store.task(execution_id)
    )
    if current is None or current.tenant_id != tenant.id:
        raise NotFound("execution not found")
    done = await ctx.store.complete(table, execution_id, status)
    assert done is not None
    if table == "workflow_execution":
        key = workflow_key(str(done.id))
        parent_name = "parentWorkflowExecutionId"
    else:
        key = workflow_key(str(done.parent_id)) if done.parent_id else task_key(str(done.id))
        parent_name = "workflowExecutionId"
    await ctx.bus.publish_end(key, End(str(done.id), done.status))
    return web.json_response(_execution_json(done, tenant.slug, parent_name))


async def create_stream_token(request: web.Request) -> web.Response:
    caller, tenant = await _caller_and_tenant(request)
    ctx = request.app[CONTEXT]
    body = await _body(request)
    workflow_id = _optional_uuid(body, "workflowExecutionId")
    task_id = _optional_uuid(body, "taskExecutionId")
    if (workflow_id is None) == (task_id is None):
        raise InvalidArgument("give exactly one of workflowExecutionId and taskExecutionId")
    if workflow_id is not None:
        owner = await ctx.directory.workflow(workflow_id)
    else:
        assert task_id is not None  # exactly one was given, checked above
        owner = await ctx.directory.task(task_id)
    if owner is None or owner.tenant_id != tenant.id:
        raise NotFound("execution not found")
    token_id, token, expires_at = await ctx.auth.issue(
        tenant.id,
        "stream",
        _optional_ttl(body),
        scope_workflow_id=workflow_id,
        scope_task_id=task_id,
        issuer=None if caller.is_admin else caller,
    )
    assert expires_at is not None
    return web.json_response(
        {"id": str(token_id), "token": token, "expiresAt": expires_at.isoformat()}, status=201
    )


async def revoke_stream_token(request: web.Request) -> web.Response:
    """A tenant's user (or the admin) revokes one of the tenant's stream tokens."""
    tenant = await _tenant(request)
    ctx = request.app[CONTEXT]
    token_id = parse_uuid(request.match_info["id"], "id")
    if not await ctx.store.revoke_token(token_id, tenant_id=tenant.id, kind="stream"):
        raise NotFound(f"no stream token {token_id}")
    return await _revoked(ctx, token_id)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/admin/tenants", create_tenant)
    app.router.add_post("/api/admin/tenants/{tenant}/tokens", create_token)
    app.router.add_post("/api/admin/tokens/{id}/revoke", revoke_token)
    base = "/api/tenants/{tenant}"
    app.router.add_post(f"{base}/workflow-executions", create_workflow)
    app.router.add_get(f"{base}/workflow-executions/{{id}}", get_workflow, allow_head=False)
    app.router.add_post(f"{base}/workflow-executions/{{id}}/complete", complete_workflow)
    app.router.add_post(f"{base}/task-executions", create_task)
    app.router.add_get(f"{base}/task-executions/{{id}}", get_task, allow_head=False)
    app.router.add_post(f"{base}/task-executions/{{id}}/complete", complete_task)
    app.router.add_post(f"{base}/stream-tokens", create_stream_token)
    app.router.add_post(f"{base}/stream-tokens/{{id}}/revoke", revoke_stream_token)
