"""A tenant with its tokens on a running target, and shortcuts to make executions, subscribe and
publish: the objects a streaming test is written with.

    world = await TenantWorld.create(http_url, grpc_address, admin_token)
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await pub.token("hi", workflow_id=wf, task_id=await world.task(wf))
        assert (await stream.next_event()).data == "hi"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from .admin import IssuedToken, ManagementClient, Tenant, fetch_metrics
from .http_ingest import HttpIngest
from .provisioning import Provisioner, provisioner_for
from .publisher import Publisher
from .sse_client import SSEStream
from .targets import Target


@dataclass(slots=True)
class TenantWorld:
    api: Provisioner
    http_url: str
    grpc_address: str
    tenant: Tenant
    user: IssuedToken
    worker: IssuedToken

    @classmethod
    async def create(
        cls,
        http_url: str,
        grpc_address: str,
        admin_token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        slug: str | None = None,
    ) -> TenantWorld:
        """A fresh tenant with a user and a worker token (isolation: one per test)."""
        api = ManagementClient(http_url, admin_token, session=session)
        return await cls.provision(api, http_url, grpc_address, slug=slug)

    @classmethod
    async def for_target(cls, target: Target, *, slug: str | None = None) -> TenantWorld:
        """A fresh tenant on `target`, made by the target's provisioner."""
        return await cls.provision(
            provisioner_for(target), target.http_url, target.grpc_address, slug=slug
        )

    @classmethod
    async def provision(
        cls, api: Provisioner, http_url: str, grpc_address: str, *, slug: str | None = None
    ) -> TenantWorld:
        try:
            tenant = await api.create_tenant(slug)
            user = await api.create_token(tenant.slug, "user")
            worker = await api.create_token(tenant.slug, "worker")
        except BaseException:
            await api.close()
            raise
        return cls(api, http_url.rstrip("/"), grpc_address, tenant, user, worker)

    @property
    def slug(self) -> str:
        return self.tenant.slug

    async def close(self) -> None:
        await self.api.close()

    async def metrics(self, base: str | None = None) -> dict[str, float]:
        """The Prometheus samples of an instance (the first one by default)."""
        async with aiohttp.ClientSession() as session:
            return await fetch_metrics(session, base or self.http_url)

    async def workflow(self, parent: str | None = None, kind: str = "test") -> str:
        return await self.api.create_workflow(self.slug, kind, parent=parent)

    async def task(self, workflow: str | None = None, kind: str = "test") -> str:
        return await self.api.create_task(self.slug, kind, workflow=workflow)

    def url(
        self, path: str, query: Mapping[str, str] | None = None, *, base: str | None = None
    ) -> str:
        url = f"{(base or self.http_url).rstrip('/')}/api/tenants/{self.slug}/stream/{path}"
        return f"{url}?{urlencode(query)}" if query else url

    def workflow_url(
        self, workflow_id: str, *, consolidated: bool = False, base: str | None = None,
        query: Mapping[str, str] | None = None,
    ) -> str:  # fmt: skip
        suffix = "/consolidated" if consolidated else ""
        return self.url(f"workflows/{workflow_id}{suffix}", query, base=base)

    def task_url(
        self, task_id: str, *, base: str | None = None, query: Mapping[str, str] | None = None
    ) -> str:
        return self.url(f"tasks/{task_id}", query, base=base)

    async def subscribe(
        self,
        workflow_id: str,
        *,
        consolidated: bool = False,
        token: str | None = None,
        last_event_id: str | None = None,
        query: Mapping[str, str] | None = None,
        base: str | None = None,
    ) -> SSEStream:
        """Open a workflow stream with the tenant's user token (or `token`)."""
        url = self.workflow_url(workflow_id, consolidated=consolidated, base=base, query=query)
        return await SSEStream.open(
            url, token=token or self.user.token, last_event_id=last_event_id
        )

    async def subscribe_task(
        self, task_id: str, *, token: str | None = None, base: str | None = None
    ) -> SSEStream:
        return await SSEStream.open(
            self.task_url(task_id, base=base), token=token or self.user.token
        )

    def publisher(self, grpc_address: str | None = None, token: str | None = None) -> Publisher:
        return Publisher(grpc_address or self.grpc_address, token or self.worker.token)

    def http_ingest(self, token: str | None = None, base: str | None = None) -> HttpIngest:
        """NDJSON batches to the tenant's `task-data` endpoint with its worker token."""
        return HttpIngest(base or self.http_url, self.slug, token or self.worker.token)
