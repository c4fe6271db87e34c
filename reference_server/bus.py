"""The bus between gRPC publishers and SSE subscribers: one small interface, two backends.

Every item on a stream carries a cursor: an integer that strictly increases within the stream
(in-memory: one counter per bus; NATS JetStream: the stream sequence). SSE ids are these cursors,
so a client resumes with `Last-Event-ID` on any instance that shares the bus.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .events import TaskStreamEvent

log = logging.getLogger(__name__)


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


class Notices:
    """The listeners of one bus: every backend hands a notice to them through `dispatch`."""

    def __init__(self) -> None:
        self._listeners: list[NoticeListener] = []

    def listen(self, listener: NoticeListener) -> None:
        self._listeners.append(listener)

    async def dispatch(self, notice: Notice) -> None:
        """Each listener in turn; one that fails is logged and does not stop the others."""
        for listener in list(self._listeners):
            try:
                await listener(notice)
            except Exception:
                log.exception("notice listener failed")


class SubscriberEvicted(Exception):
    """The subscriber fell `limit` items behind; it must reconnect (and may resume)."""


class SubscriptionClosed(Exception):
    """The bus closed the subscription (shutdown or broker loss); the client may resume."""


class Receiver(Protocol):
    """The consumer a subscription reports to (the SSE stream session)."""

    def take(self, delivery: Delivery) -> bool:
        """Fast path for fan-out: write `delivery` at once (the socket is idle) and return True,
        or return False to have it queued for `next_batch`. Only asked while nothing is queued,
        so order is kept."""

    def take_many(self, deliveries: Sequence[Delivery]) -> bool:
        """`take` for the deliveries of one batch publish (cursor order): all of them in one
        write, or none (False: they are queued)."""

    def failed(self, error: Exception) -> None:
        """The subscription ended with `error`, called once: lets the consumer abort a write
        that is blocked on a stalled client."""


class Subscription:
    """A subscriber's bounded inbox over one or more streams.

    The bus feeds it through its producer side: `offer` a delivery, `fail` with the reason it
    ends, `start_with` the replay found when subscribing, `cover` more streams, `detach` when it
    lets go. The consumer awaits `next_batch`, which hands over everything queued at once so the
    SSE writer can send it in one write, and `close`s it when done.
    """

    def __init__(
        self,
        keys: Iterable[str],
        limit: int,
        start_cursor: int,
        *,
        gap: bool = False,
        release: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.keys: set[str] = set(keys)
        self.limit = limit
        self.gap = gap
        self.replay: list[Delivery] = []
        self.last_cursor = start_cursor
        self._inbox: collections.deque[Delivery] = collections.deque()
        self._wakeup = asyncio.Event()
        self._failure: Exception | None = None
        self._release = release
        self._receiver: Receiver | None = None

    # -- producer side (the bus) -----------------------------------------------------------------

    def offer(self, delivery: Delivery) -> None:
        """Queue `delivery` (or hand it to the receiver); evicts a subscriber `limit` behind."""
        if self._failure is not None or delivery.cursor <= self.last_cursor:
            return  # already failed, or replayed before the live feed caught up
        receiver = self._receiver
        if receiver is not None and not self._inbox and receiver.take(delivery):
            self.last_cursor = delivery.cursor
            return
        if len(self._inbox) >= self.limit:
            self.fail(SubscriberEvicted(f"subscriber fell {self.limit} events behind"))
            return
        self.last_cursor = delivery.cursor
        self._inbox.append(delivery)
        self._wakeup.set()

    def offer_many(self, deliveries: Sequence[Delivery]) -> None:
        """`offer` for several deliveries of one publish (cursor order): an idle receiver takes
        them all in one write."""
        if self._failure is not None:
            return
        if deliveries[0].cursor <= self.last_cursor:
            deliveries = [d for d in deliveries if d.cursor > self.last_cursor]
            if not deliveries:
                return
        receiver = self._receiver
        if receiver is not None and not self._inbox and receiver.take_many(deliveries):
            self.last_cursor = deliveries[-1].cursor
            return
        for delivery in deliveries:
            if len(self._inbox) >= self.limit:
                self.fail(SubscriberEvicted(f"subscriber fell {self.limit} events behind"))
                return
            self.last_cursor = delivery.cursor
            self._inbox.append(delivery)
        self._wakeup.set()

    def fail(self, error: Exception) -> None:
        """End the subscription with `error` (raised by `next_batch`); idempotent."""
        if self._failure is None:
            self._failure = error
            self._inbox.clear()
            self._wakeup.set()
            self.detach()
            if self._receiver is not None:
                self._receiver.failed(error)

    def start_with(self, replay: list[Delivery]) -> None:
        """The retained items the consumer gets before the live feed (oldest first)."""
        self.replay = replay
        if replay:
            self.last_cursor = max(self.last_cursor, replay[-1].cursor)

    def cover(self, keys: Iterable[str]) -> None:
        """Count `keys` among the subscription's streams (the bus feeds them from now on)."""
        self.keys.update(keys)

    def detach(self) -> None:
        """Unhook from the bus, which offers nothing more; idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release(self)

    @property
    def attached(self) -> bool:
        return self._release is not None

    # -- consumer side ---------------------------------------------------------------------------

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Report to `receiver` (fast path and failure) from now on; None stops it."""
        self._receiver = receiver

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
        """The consumer is done: stop receiving; idempotent."""
        self.detach()


class Fanout:
    """Subscriptions fed together: a delivery or failure given once reaches every member. Each
    backend fans out through it (per stream in memory, per subject or shared consumer on NATS)."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self.members)

    def add(self, sub: Subscription) -> None:
        self.members.add(sub)

    def discard(self, sub: Subscription) -> None:
        self.members.discard(sub)

    def offer(self, delivery: Delivery) -> None:
        for member in list(self.members):
            member.offer(delivery)

    def offer_many(self, deliveries: Sequence[Delivery]) -> None:
        for member in list(self.members):
            member.offer_many(deliveries)

    def fail(self, error: Exception) -> None:
        members, self.members = self.members, set()
        for member in members:
            member.fail(error)


class Bus(Protocol):
    """What the server needs from a bus: `bus_memory.InMemoryBus`, `bus_jetstream.JetStreamBus`
    or `bus_core.CoreNatsBus` (the last two share `bus_nats.NatsLink`)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool: ...

    async def publish(self, event: TaskStreamEvent) -> None:
        """Hand the event to the bus; raises BusError when it cannot."""

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        """Hand several events to the bus in one call, in order; returns once all of them are
        carried as `publish` would carry one (raises BusError when it cannot carry them all)."""

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
