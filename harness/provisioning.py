"""Provisioners: how a test run creates tenants, tokens and executions on a target.

- `admin-api`: the management API of openapi.yaml (`/api/admin/...`; `ManagementClient`).
- `sql`: rows written straight into the schema of `reference_server/migrations/`, for servers
  that share it. Tokens are prefixed random strings stored as SHA-256 hashes. Completion only
  updates the row, so the server cannot push `end` to open streams (the `lifecycle` profile
  needs `admin-api`).
- `python:module:Class`: a team's own; `Class(target)` must satisfy `Provisioner`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import importlib.util
import secrets
import uuid
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .admin import ApiError, IssuedToken, ManagementClient, Tenant
from .targets import Target, TargetError

if TYPE_CHECKING:
    import asyncpg

TOKEN_PREFIXES = {"worker": "fwt_", "user": "fut_", "stream": "fst_"}


@runtime_checkable
class Provisioner(Protocol):
    async def create_tenant(self, slug: str | None = None) -> Tenant: ...

    async def create_token(
        self, slug: str, kind: str, ttl_seconds: int | None = None
    ) -> IssuedToken: ...

    async def revoke_token(self, token_id: str) -> None: ...

    async def create_workflow(
        self, slug: str, kind: str = "test", *, parent: str | None = None
    ) -> str: ...

    async def create_task(
        self, slug: str, kind: str = "test", *, workflow: str | None = None
    ) -> str: ...

    async def complete_workflow(self, slug: str, workflow_id: str, status: str = ...) -> None: ...

    async def complete_task(self, slug: str, task_id: str, status: str = ...) -> None: ...

    async def stream_token(
        self,
        slug: str,
        *,
        workflow: str | None = None,
        task: str | None = None,
        ttl_seconds: int | None = None,
    ) -> str: ...

    async def issue_stream_token(
        self,
        slug: str,
        *,
        workflow: str | None = None,
        task: str | None = None,
        ttl_seconds: int | None = None,
        minted_with: str | None = None,
    ) -> IssuedToken: ...

    async def close(self) -> None: ...


def provisioner_for(target: Target) -> Provisioner:
    kind = str(target.provisioner.get("kind", "admin-api"))
    if kind == "admin-api":
        token = target.secret("admin_token")
        if not token:
            raise TargetError(f"{target.name}: admin-api provisioner needs admin_token(_env)")
        return ManagementClient(target.http_url, token)
    if kind == "sql":
        url = target.secret("database_url")
        if not url:
            raise TargetError(f"{target.name}: sql provisioner needs database_url(_env)")
        if importlib.util.find_spec("asyncpg") is None:
            # asyncpg comes with the `server` extra, not with the suite-only base install.
            raise TargetError(
                f"{target.name}: the sql provisioner needs asyncpg: "
                "pip install 'task-streaming[server]' (or just asyncpg)"
            )
        return SqlProvisioner(url)
    if kind.startswith("python:"):
        try:
            _, module, cls = kind.split(":")
            factory = getattr(importlib.import_module(module), cls)
        except (ValueError, ImportError, AttributeError) as error:
            raise TargetError(f"{target.name}: cannot load provisioner {kind!r}: {error}") from None
        provisioner: Provisioner = factory(target)
        return provisioner
    raise TargetError(f"{target.name}: unknown provisioner kind {kind!r}")


class SqlProvisioner:
    """Writes the `reference_server/migrations/` schema directly (one connection pool per
    provisioner)."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._pool: asyncpg.Pool | None = None

    async def _db(self) -> asyncpg.Pool:
        import asyncpg  # the `server` extra; provisioner_for checked that it is installed

        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=4)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _tenant_id(self, slug: str) -> uuid.UUID:
        value = await (await self._db()).fetchval("SELECT id FROM tenant WHERE slug = $1", slug)
        if value is None:
            raise ApiError(404, {"detail": f"no tenant {slug}"}, "")
        return uuid.UUID(str(value))

    async def create_tenant(self, slug: str | None = None) -> Tenant:
        slug = slug or "t-" + secrets.token_hex(6)
        tenant_id = uuid.uuid4()
        import asyncpg

        try:
            await (await self._db()).execute(
                "INSERT INTO tenant(id, slug) VALUES ($1, $2)", tenant_id, slug
            )
        except asyncpg.UniqueViolationError:
            raise ApiError(409, {"detail": f"tenant {slug} exists"}, "") from None
        return Tenant(str(tenant_id), slug)

    async def _insert_token(
        self,
        slug: str,
        kind: str,
        ttl_seconds: int | None,
        workflow: str | None = None,
        task: str | None = None,
        minted_with: str | None = None,
    ) -> IssuedToken:
        token = TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)
        token_id = uuid.uuid4()
        expires = (
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl_seconds) if ttl_seconds else None
        )
        db = await self._db()
        values: list[object] = [
            token_id, await self._tenant_id(slug), kind, hashlib.sha256(token.encode()).digest(),
            expires, uuid.UUID(workflow) if workflow else None, uuid.UUID(task) if task else None,
        ]  # fmt: skip
        columns = "scope_workflow_execution_id, scope_task_execution_id"
        if minted_with is not None:
            # `issued_by` (migration 0002) only when asked for: schemas without it still work.
            columns += ", issued_by"
            values.append(
                await db.fetchval(
                    "SELECT id FROM api_token WHERE token_hash = $1",
                    hashlib.sha256(minted_with.encode()).digest(),
                )
            )
        placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
        await db.execute(
            f"INSERT INTO api_token(id, tenant_id, kind, token_hash, expires_at, {columns})"  # noqa: S608 - fixed column names
            f" VALUES ({placeholders})",
            *values,
        )
        return IssuedToken(str(token_id), token, kind, expires.isoformat() if expires else None)

    async def create_token(
        self, slug: str, kind: str, ttl_seconds: int | None = None
    ) -> IssuedToken:
        return await self._insert_token(slug, kind, ttl_seconds)

    async def revoke_token(self, token_id: str) -> None:
        await (await self._db()).execute(
            "UPDATE api_token SET revoked_at = now() WHERE id = $1", uuid.UUID(token_id)
        )

    async def create_workflow(
        self, slug: str, kind: str = "test", *, parent: str | None = None
    ) -> str:
        workflow_id = uuid.uuid4()
        await (await self._db()).execute(
            "INSERT INTO workflow_execution(id, tenant_id, parent_workflow_execution_id, kind)"
            " VALUES ($1, $2, $3, $4)",
            workflow_id, await self._tenant_id(slug), uuid.UUID(parent) if parent else None, kind,
        )  # fmt: skip
        return str(workflow_id)

    async def create_task(
        self, slug: str, kind: str = "test", *, workflow: str | None = None
    ) -> str:
        task_id = uuid.uuid4()
        await (await self._db()).execute(
            "INSERT INTO task_execution(id, tenant_id, workflow_execution_id, kind)"
            " VALUES ($1, $2, $3, $4)",
            task_id, await self._tenant_id(slug), uuid.UUID(workflow) if workflow else None, kind,
        )  # fmt: skip
        return str(task_id)

    async def complete_workflow(
        self, slug: str, workflow_id: str, status: str = "COMPLETED"
    ) -> None:
        await (await self._db()).execute(
            "UPDATE workflow_execution SET status = $2, completed_at = now() WHERE id = $1",
            uuid.UUID(workflow_id), status,
        )  # fmt: skip

    async def complete_task(self, slug: str, task_id: str, status: str = "COMPLETED") -> None:
        await (await self._db()).execute(
            "UPDATE task_execution SET status = $2, completed_at = now() WHERE id = $1",
            uuid.UUID(task_id), status,
        )  # fmt: skip

    async def stream_token(
        self,
        slug: str,
        *,
        workflow: str | None = None,
        task: str | None = None,
        ttl_seconds: int | None = None,
    ) -> str:
        issued = await self._insert_token(slug, "stream", ttl_seconds or 300, workflow, task)
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
        return await self._insert_token(
            slug, "stream", ttl_seconds or 300, workflow, task, minted_with
        )
