"""PostgreSQL store (asyncpg, plain SQL migrations applied at start)."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from .errors import Conflict, NotFound, Unavailable

log = logging.getLogger(__name__)

# What a lost or refused connection raises: the store is down, not the request wrong.
_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
)
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_MIGRATION_LOCK = 0x7A5C_5EED  # advisory lock: instances starting together migrate once


@dataclass(frozen=True, slots=True)
class Tenant:
    id: uuid.UUID
    slug: str


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_slug: str
    kind: str
    scope_workflow_id: uuid.UUID | None
    scope_task_id: uuid.UUID | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None  # the token's, or else the revocation of its issuer
    issued_by: uuid.UUID | None = None  # stream tokens: the user token that minted them


@dataclass(frozen=True, slots=True)
class Execution:
    """A workflow or task execution; `parent_id` is the parent workflow (workflows) or the owning
    workflow (tasks), None at the root or for standalone tasks."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    parent_id: uuid.UUID | None
    kind: str
    status: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Store:
    """All SQL lives here. Methods raise `Unavailable` when PostgreSQL cannot be reached."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Store:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, command_timeout=5, timeout=5
        )
        store = cls(pool)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> None:
        files = sorted(
            (
                f
                for f in importlib.resources.files(__package__).joinpath("migrations").iterdir()
                if f.name.endswith(".sql")
            ),
            key=lambda f: f.name,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migration")}
            for f in files:
                if f.name not in done:
                    log.info("applying migration %s", f.name)
                    await conn.execute(f.read_text())
                    await conn.execute("INSERT INTO schema_migration(version) VALUES ($1)", f.name)

    async def ping(self) -> bool:
        try:
            async with self._pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1", timeout=2)
            return True
        except (*_DOWN, asyncpg.PostgresError):
            return False

    async def _fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        try:
            return await self._pool.fetchrow(query, *args, timeout=5)
        except _DOWN as e:
            raise Unavailable("the store is unavailable; retry shortly") from e

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            return await self._pool.fetch(query, *args, timeout=5)
        except _DOWN as e:
            raise Unavailable("the store is unavailable; retry shortly") from e

    # tenants

    async def create_tenant(self, slug: str) -> Tenant:
        try:
            row = await self._fetchrow(
                "INSERT INTO tenant(id, slug) VALUES ($1, $2) RETURNING id, slug",
                uuid.uuid4(),
                slug,
            )
        except asyncpg.UniqueViolationError as e:
            raise Conflict(f"tenant {slug!r} already exists") from e
        assert row is not None
        return Tenant(row["id"], row["slug"])

    async def tenant_by_slug(self, slug: str) -> Tenant | None:
        row = await self._fetchrow("SELECT id, slug FROM tenant WHERE slug = $1", slug)
        return Tenant(row["id"], row["slug"]) if row else None

    # tokens

    async def insert_token(
        self,
        *,
        tenant_id: uuid.UUID,
        kind: str,
        token_hash: bytes,
        expires_at: dt.datetime | None,
        scope_workflow_id: uuid.UUID | None = None,
        scope_task_id: uuid.UUID | None = None,
        issued_by: uuid.UUID | None = None,
    ) -> uuid.UUID:
        token_id = uuid.uuid4()
        await self._fetchrow(
            "INSERT INTO api_token(id, tenant_id, kind, token_hash, expires_at,"
            " scope_workflow_execution_id, scope_task_execution_id, issued_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            token_id, tenant_id, kind, token_hash, expires_at, scope_workflow_id, scope_task_id,
            issued_by,
        )  # fmt: skip
        return token_id

    async def token_by_hash(self, token_hash: bytes) -> TokenRecord | None:
        row = await self._fetchrow(
            "SELECT k.id, k.tenant_id, t.slug, k.kind, k.scope_workflow_execution_id,"
            " k.scope_task_execution_id, k.expires_at, coalesce(k.revoked_at, i.revoked_at),"
            " k.issued_by"
            " FROM api_token k JOIN tenant t ON t.id = k.tenant_id"
            " LEFT JOIN api_token i ON i.id = k.issued_by WHERE k.token_hash = $1",
            token_hash,
        )
        if row is None:
            return None
        return TokenRecord(*row.values())

    async def revoke_token(
        self, token_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None, kind: str | None = None
    ) -> bool:
        """Revoke one token (of `tenant_id` and `kind` when given); False when there is none."""
        row = await self._fetchrow(
            "UPDATE api_token SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1"
            " AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::text IS NULL OR kind = $3)"
            " RETURNING id",
            token_id,
            tenant_id,
            kind,
        )
        return row is not None

    async def revoked_since(self, since: dt.datetime) -> list[tuple[uuid.UUID, dt.datetime]]:
        rows = await self._fetch(
            "SELECT id, revoked_at FROM api_token WHERE revoked_at >= $1 ORDER BY revoked_at",
            since,
        )
        return [(r["id"], r["revoked_at"]) for r in rows]

    async def now(self) -> dt.datetime:
        row = await self._fetchrow("SELECT now() AS now")
        assert row is not None
        now: dt.datetime = row["now"]
        return now

    # executions

    async def create_workflow(
        self, tenant_id: uuid.UUID, kind: str, parent_id: uuid.UUID | None
    ) -> Execution:
        if parent_id is not None:
            parent = await self.workflow(parent_id)
            if parent is None or parent.tenant_id != tenant_id:
                raise NotFound(f"parent workflow execution {parent_id} not found")
        row = await self._fetchrow(
            "INSERT INTO workflow_execution(id, tenant_id, parent_workflow_execution_id, kind)"
            " VALUES ($1, $2, $3, $4)"
            " RETURNING id, tenant_id, parent_workflow_execution_id, kind, status",
            uuid.uuid4(), tenant_id, parent_id, kind,
        )  # fmt: skip
        assert row is not None
        return Execution(*row.values())

    async def workflow(self, workflow_id: uuid.UUID) -> Execution | None:
        row = await self._fetchrow(
            "SELECT id, tenant_id, parent_workflow_execution_id, kind, status"
            " FROM workflow_execution WHERE id = $1",
            workflow_id,
        )
        return Execution(*row.values()) if row else None

    async def children(self, workflow_id: uuid.UUID) -> list[Execution]:
        rows = await self._fetch(
            "SELECT id, tenant_id, parent_workflow_execution_id, kind, status"
            " FROM workflow_execution WHERE parent_workflow_execution_id = $1 ORDER BY created_at",
            workflow_id,
        )
        return [Execution(*r.values()) for r in rows]

    async def descendants(self, workflow_id: uuid.UUID) -> list[uuid.UUID]:
        """Every workflow below `workflow_id`, at any depth (not `workflow_id` itself)."""
        rows = await self._fetch(
            "WITH RECURSIVE tree(id) AS ("
            "  SELECT id FROM workflow_execution WHERE parent_workflow_execution_id = $1"
            "  UNION SELECT w.id FROM workflow_execution w JOIN tree ON"
            "  w.parent_workflow_execution_id = tree.id"
            ") SELECT id FROM tree",
            workflow_id,
        )
        return [r["id"] for r in rows]

    async def create_task(
        self, tenant_id: uuid.UUID, kind: str, workflow_id: uuid.UUID | None
    ) -> Execution:
        if workflow_id is not None:
            owner = await self.workflow(workflow_id)
            if owner is None or owner.tenant_id != tenant_id:
                raise NotFound(f"workflow execution {workflow_id} not found")
        row = await self._fetchrow(
            "INSERT INTO task_execution(id, tenant_id, workflow_execution_id, kind)"
            " VALUES ($1, $2, $3, $4) RETURNING id, tenant_id, workflow_execution_id, kind, status",
            uuid.uuid4(), tenant_id, workflow_id, kind,
        )  # fmt: skip
        assert row is not None
        return Execution(*row.values())

    async def task(self, task_id: uuid.UUID) -> Execution | None:
        row = await self._fetchrow(
            "SELECT id, tenant_id, workflow_execution_id, kind, status"
            " FROM task_execution WHERE id = $1",
            task_id,
        )
        return Execution(*row.values()) if row else None

    async def complete(self, table: str, execution_id: uuid.UUID, status: str) -> Execution | None:
        """Move a workflow or task to a terminal status (idempotent: the first status stays)."""
        if table not in {"workflow_execution", "task_execution"}:
            raise ValueError(table)
        parent_column = (
            "parent_workflow_execution_id"
            if table == "workflow_execution"
            else "workflow_execution_id"
        )
        row = await self._fetchrow(
            f"UPDATE {table} SET"  # noqa: S608 - table is one of two fixed names
            " status = CASE WHEN status = 'RUNNING' THEN $2 ELSE status END,"
            " completed_at = coalesce(completed_at, now())"
            f" WHERE id = $1 RETURNING id, tenant_id, {parent_column}, kind, status",
            execution_id,
            status,
        )
        return Execution(*row.values()) if row else None
