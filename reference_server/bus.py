"""The bus between gRPC publishers and SSE subscribers: one small interface, two backends.

Every item on a stream carries a cursor: an integer that strictly increases within the stream
(in-memory: one counter per bus; NATS JetStream: the stream sequence). SSE ids are these cursors,
so a client resumes with `Last-Event-ID` on any instance that shares the bus.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .events import TaskStreamEvent


@dataclass(frozen=True, slots=True)
class End:
    """Lifecycle marker: the workflow or task `target_id` reached a terminal `status`."""

    target_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One item of a stream: a task event or an `End` marker, at `cursor`."""

    cursor: int
    stream_key: str
    item: TaskStreamEvent | End


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    token_id: str


@dataclass(frozen=True, slots=True)
class DescendantCreated:
    parent_id: str
    child_id: str


Notice = TokenRevoked | DescendantCreated
NoticeListener = Callable[[Notice], Awaitable[None]]


class SubscriberEvicted(Exception):
    """The subscriber fell `limit` items behind; it must reconnect (and may resume)."""


class SubscriptionClosed(Exception):
    """The bus closed the subscription (shutdown or broker loss); the client may resume."""


class Subscription:
    """A subscriber's bounded inbox over one or more streams.

    Backends call `_offer` from their fan-out; the consumer awaits `next_batch`, which hands over
    everything queued at once so the SSE writer can send it in one write.
    """

    def __init__(self, keys: Iterable[str], limit: int, start_cursor: int) -> None:
        self.keys: set[str] = set(keys)
        self.limit = limit
        self.gap = False
        self.replay: list[Delivery] = []
        self.last_cursor = start_cursor
        self._inbox: collections.deque[Delivery] = collections.deque()
        self._wakeup = asyncio.Event()
        self._failure: Exception | None = None
        self._detach: Callable[[Subscription], None] | None = None
        # Called once when the subscription fails (eviction, stop): lets the consumer abort a
        # write that is blocked on a stalled client.
        self.on_failure: Callable[[Exception], None] | None = None
        # Fast path for fan-out: a consumer that can take deliveries at once (its socket is
        # idle) returns True and no task is woken for it. Only used while nothing is queued,
        # so order is kept.
        self.direct: Callable[[Sequence[Delivery]], bool] | None = None

    def _offer(self, delivery: Delivery) -> None:
        if self._failure is not None or delivery.cursor <= self.last_cursor:
            return  # already failed, or replayed before the live feed caught up
        if self.direct is not None and not self._inbox and self.direct((delivery,)):
            self.last_cursor = delivery.cursor
            return
        self._enqueue(delivery)

    def _offer_many(self, deliveries: Sequence[Delivery]) -> None:
        """Several deliveries (cursor order) of one publish: an idle consumer takes them all in
        one write."""
        if self._failure is not None:
            return
        if deliveries[0].cursor <= self.last_cursor:
            deliveries = [d for d in deliveries if d.cursor > self.last_cursor]
            if not deliveries:
                return
        if self.direct is not None and not self._inbox and self.direct(deliveries):
            self.last_cursor = deliveries[-1].cursor
            return
        for delivery in deliveries:
            self._enqueue(delivery)

    def _enqueue(self, delivery: Delivery) -> None:
        if self._failure is not None:
            return
        if len(self._inbox) >= self.limit:
            self._fail(SubscriberEvicted(f"subscriber fell {self.limit} events behind"))
            return
        self.last_cursor = delivery.cursor
        self._inbox.append(delivery)
        self._wakeup.set()

    def _fail(self, error: Exception) -> None:
        if self._failure is None:
            self._failure = error
            self._inbox.clear()
            self._wakeup.set()
            self.close()
            if self.on_failure is not None:
                self.on_failure(error)

    async def next_batch(self) -> list[Delivery]:
        """Wait for deliveries (or a `poke`) and return all queued ones, maybe none."""
        if not self._inbox and self._failure is None:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._failure is not None:
            raise self._failure
        batch = list(self._inbox)
        self._inbox.clear()
        return batch

    def poke(self) -> None:
        """Wake the consumer with nothing to deliver (its timer: keep-alive, idle, expiry)."""
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._inbox)

    @property
    def failure(self) -> Exception | None:
        """Why the subscription ended, once it has."""
        return self._failure

    def close(self) -> None:
        """Stop receiving; idempotent."""
        detach, self._detach = self._detach, None
        if detach is not None:
            detach(self)


class Bus(Protocol):
    """What the server needs from a bus; see bus_memory and bus_nats."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool: ...

    async def publish(self, event: TaskStreamEvent) -> None:
        """Hand the event to the bus; raises BusError when it cannot."""

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        """Hand several events to the bus in one call, in order; returns once all of them are
        carried as `publish` would (raises BusError when it cannot carry them all)."""

    async def publish_end(self, stream_key: str, end: End) -> None: ...

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        """Live subscription to `keys`. With `after` (a cursor) or `from_start`, the retained
        items after it are in `subscription.replay` (oldest first) and the live feed continues
        after them, with no gap and no duplicate; `subscription.gap` says the cursor could not be
        placed (older than retention, unknown or from the future)."""

    async def add_keys(self, subscription: Subscription, keys: Sequence[str]) -> None:
        """Extend a live subscription (a descendant workflow created after it opened)."""

    async def announce(self, notice: Notice) -> None:
        """Tell every instance (this one included) about a revocation or a new descendant."""

    def on_notice(self, listener: NoticeListener) -> None: ...
