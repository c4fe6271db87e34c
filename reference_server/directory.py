"""Who owns what: workflow→tenant and task→(tenant, workflow), cached because they never change."""

from __future__ import annotations

import collections
import uuid
from dataclasses import dataclass

from .store import Store


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: uuid.UUID
    workflow_id: uuid.UUID | None  # for tasks: the owning workflow (None when standalone)


class Directory:
    """Positive answers are cached (an LRU of `size` entries); misses are not, since the
    execution may be created a moment later."""

    def __init__(self, store: Store, size: int = 100_000) -> None:
        self._store = store
        self._size = size
        self._workflows: collections.OrderedDict[uuid.UUID, Owner] = collections.OrderedDict()
        self._tasks: collections.OrderedDict[uuid.UUID, Owner] = collections.OrderedDict()
        self._unknown_tasks: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()

    async def workflow(self, workflow_id: uuid.UUID) -> Owner | None:
        owner = self._hit(self._workflows, workflow_id)
        if owner is None:
            record = await self._store.workflow(workflow_id)
            if record is None:
                return None
            owner = self._put(self._workflows, workflow_id, Owner(record.tenant_id, None))
        return owner

    async def task(self, task_id: uuid.UUID) -> Owner | None:
        owner = self._hit(self._tasks, task_id)
        if owner is None:
            record = await self._store.task(task_id)
            if record is None:
                return None
            owner = self._put(self._tasks, task_id, Owner(record.tenant_id, record.parent_id))
        return owner

    async def task_label(self, task_id: uuid.UUID) -> Owner | None:
        """`task`, for the task id a worker puts on a workflow's event. Misses are cached too:
        such ids are often labels of no task, looked up on every event; and the server mints
        task ids itself (random UUIDs), so an id unknown now cannot name a task created later
        unless it is created through this directory (`remember_task` drops the miss)."""
        if task_id in self._unknown_tasks:
            self._unknown_tasks.move_to_end(task_id)
            return None
        owner = await self.task(task_id)
        if owner is None:
            self._unknown_tasks[task_id] = None
            if len(self._unknown_tasks) > self._size:
                self._unknown_tasks.popitem(last=False)
        return owner

    def remember_workflow(self, workflow_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
        self._put(self._workflows, workflow_id, Owner(tenant_id, None))

    def remember_task(
        self, task_id: uuid.UUID, tenant_id: uuid.UUID, workflow_id: uuid.UUID | None
    ) -> None:
        self._unknown_tasks.pop(task_id, None)
        self._put(self._tasks, task_id, Owner(tenant_id, workflow_id))

    @staticmethod
    def _hit(cache: collections.OrderedDict[uuid.UUID, Owner], key: uuid.UUID) -> Owner | None:
        owner = cache.get(key)
        if owner is not None:
            cache.move_to_end(key)
        return owner

    def _put(
        self, cache: collections.OrderedDict[uuid.UUID, Owner], key: uuid.UUID, owner: Owner
    ) -> Owner:
        cache[key] = owner
        if len(cache) > self._size:
            cache.popitem(last=False)
        return owner
