"""Async client of the management API (openapi.yaml): tenants, tokens, executions, stream tokens.

async with ManagementClient(http_url, admin_token) as api:
    tenant = await api.create_tenant()
    worker = await api.create_token(tenant.slug, "worker")
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from harness.wire.aio import request

from .closing import AsyncClosing


class ApiError(Exception):
    """A non-2xx answer; `problem` is the RFC 9457 body when there is one."""

    def __init__(self, status: int, problem: dict[str, Any] | None, text: str) -> None:
        super().__init__(f"HTTP {status}: {problem.get('detail') if problem else text[:200]}")
        self.status = status
        self.problem = problem or {}
        self.text = text


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    slug: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    token: str
    kind: str
    expires_at: str | None


class ManagementClient(AsyncClosing):
    def __init__(
        self, http_url: str, token: str, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.http_url = http_url.rstrip("/")
        self.token = token
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        reply = await request(
            self.session, method, self.http_url + path, headers=headers, json=body
        )
        if reply.status >= 300:
            problem = None
            if reply.content_type in ("application/problem+json", "application/json"):
                problem = json.loads(reply.text)
            raise ApiError(reply.status, problem, reply.text)
        if reply.status == 204 or not reply.text:
            return None
        return json.loads(reply.text)

    async def create_tenant(self, slug: str | None = None) -> Tenant:
        slug = slug or "t-" + secrets.token_hex(6)
        body = await self.request("POST", "/api/admin/tenants", {"slug": slug})
        return Tenant(body["id"], body["slug"])

    async def create_token(
        self, slug: str, kind: str, ttl_seconds: int | None = None
    ) -> IssuedToken:
        payload: dict[str, Any] = {"kind": kind}
        if ttl_seconds is not None:
            payload["ttlSeconds"] = ttl_seconds
        body = await self.request("POST", f"/api/admin/tenants/{slug}/tokens", payload)
        return IssuedToken(body["id"], body["token"], body["kind"], body.get("expiresAt"))

    async def revoke_token(self, token_id: str) -> None:
        await self.request("POST", f"/api/admin/tokens/{token_id}/revoke")

    async def create_workflow(
        self, slug: str, kind: str = "test", *, parent: str | None = None, token: str | None = None
    ) -> str:
        payload: dict[str, Any] = {"kind": kind}
        if parent is not None:
            payload["parentWorkflowExecutionId"] = parent
        path = f"/api/tenants/{slug}/workflow-executions"
        body = await self.request("POST", path, payload, token=token)
        return str(body["id"])

    async def create_task(
        self,
        slug: str,
        kind: str = "test",
        *,
        workflow: str | None = None,
        token: str | None = None,
    ) -> str:
        payload: dict[str, Any] = {"kind": kind}
        if workflow is not None:
            payload["workflowExecutionId"] = workflow
        body = await self.request(
            "POST", f"/api/tenants/{slug}/task-executions", payload, token=token
        )
        return str(body["id"])

    async def get_workflow(self, slug: str, workflow_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.request(
            "GET", f"/api/tenants/{slug}/workflow-executions/{workflow_id}"
        )
        return body

    async def complete_workflow(
        self, slug: str, workflow_id: str, status: str = "COMPLETED"
    ) -> None:
        path = f"/api/tenants/{slug}/workflow-executions/{workflow_id}/complete"
        await self.request("POST", path, {"status": status})

    async def complete_task(self, slug: str, task_id: str, status: str = "COMPLETED") -> None:
        await self.request(
            "POST", f"/api/tenants/{slug}/task-executions/{task_id}/complete", {"status": status}
        )

    async def stream_token(
        self,
        slug: str,
        *,
        workflow: str | None = None,
        task: str | None = None,
        ttl_seconds: int | None = None,
    ) -> str:
        issued = await self.issue_stream_token(
            slug, workflow=workflow, task=task, ttl_seconds=ttl_seconds
        )
        return issued.token

    async def issue_stream_token(
        self,
        slug: str,
        *,
        workflow: str | None = None,
        task: str | None = None,
        ttl_seconds: int | None = None,
        minted_with: str | None = None,
    ) -> IssuedToken:
        """A stream token with its id; `minted_with` a user token of the tenant (it then dies
        with that token), else the admin token."""
        payload: dict[str, Any] = {}
        if workflow is not None:
            payload["workflowExecutionId"] = workflow
        if task is not None:
            payload["taskExecutionId"] = task
        if ttl_seconds is not None:
            payload["ttlSeconds"] = ttl_seconds
        path = f"/api/tenants/{slug}/stream-tokens"
        body = await self.request("POST", path, payload, token=minted_with)
        return IssuedToken(str(body["id"]), str(body["token"]), "stream", body.get("expiresAt"))

    async def revoke_stream_token(
        self, slug: str, token_id: str, *, token: str | None = None
    ) -> None:
        """Revoke a stream token of the tenant as its user (`token`) or the admin."""
        path = f"/api/tenants/{slug}/stream-tokens/{token_id}/revoke"
        await self.request("POST", path, token=token)

    async def discovery(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.request("GET", "/.well-known/task-streaming")
        return body

    async def metrics(self) -> dict[str, float]:
        return await fetch_metrics(self.session, self.http_url)


async def fetch_metrics(session: aiohttp.ClientSession, http_url: str) -> dict[str, float]:
    """Prometheus samples as `{'name{label="v"}': value}` (labels sorted), and bare names."""
    text = (await request(session, "GET", http_url.rstrip("/") + "/metrics")).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
