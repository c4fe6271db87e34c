"""The JetStream bus's bookkeeping: a push consumer, the feed it fills (one subscription, or the
members of a shared consumer) and the shared consumer itself. `bus_jetstream` drives them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nats.aio.subscription import Subscription as NatsSubscription

from .bus import Delivery, Fanout, Subscription


@dataclass(eq=False, slots=True)
class Consumer:
    """One JetStream push consumer and the core subscription on its deliver subject."""

    seen: float  # loop time of its last message or heartbeat
    replay: list[Delivery] | None  # collecting the replay while not None
    inbox: NatsSubscription | None = None
    name: str = ""
    delivered: int = 0  # consumer sequence of the last data message
    replay_target: int = -1
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)


class SharedFeed:
    """Live-only subscribers of exactly `keys` share one consumer: an event crosses the connection
    once per instance, not once per browser. It stands in the consumer's feed for its members."""

    def __init__(
        self, keys: frozenset[str], start_cursor: int, release: Callable[[SharedFeed], None]
    ) -> None:
        self.keys = keys
        self.last_cursor = start_cursor
        self.members = Fanout()
        self.failure: Exception | None = None
        self.ready = asyncio.Event()  # its consumer exists (or it failed)
        self._release: Callable[[SharedFeed], None] | None = release

    def offer(self, delivery: Delivery) -> None:
        self.offer_many((delivery,))

    def offer_many(self, deliveries: Sequence[Delivery]) -> None:
        if self.failure is None and deliveries[-1].cursor > self.last_cursor:
            fresh = [d for d in deliveries if d.cursor > self.last_cursor]
            self.last_cursor = deliveries[-1].cursor
            self.members.offer_many(fresh)

    def fail(self, error: Exception) -> None:
        if self.failure is None:
            self.failure = error
            self.close()
            self.ready.set()
            self.members.fail(error)

    def close(self) -> None:
        """Release the consumer; idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release(self)


@dataclass(eq=False, slots=True)
class Feed:
    """A consumer and what it feeds: one subscription, or the members of a `SharedFeed`."""

    sink: Subscription | SharedFeed
    consumer: Consumer | None = None  # the current one
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Live deliveries read in this turn of the loop, offered together at its end: a burst of
    # messages reaches a subscriber's socket in one write.
    pending: list[Delivery] = field(default_factory=list)

    def flush(self) -> None:
        if self.pending:
            deliveries, self.pending = self.pending, []
            self.sink.offer_many(deliveries)
