"""The seed's live-only NATS bus (`nats_mode="core"`): core pub/sub, nothing retained.

One core subscription per subject, shared by this instance's subscribers. Cursors are a
per-instance counter, so `after` or `from_start` give `gap` and no replay. A publish returns once
the broker has processed it (the connection's shared barrier, see `NatsLink.barrier`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from .bus import Fanout, Subscription, SubscriptionClosed
from .bus_nats import NATS_ERRORS, NatsBus, NatsLink, decode_msg, subject_of
from .errors import BusError
from .events import TaskStreamEvent
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Channel:
    """One core subscription per subject, shared by this instance's subscribers."""

    subs: Fanout = field(default_factory=Fanout)
    nsub: NatsSubscription | None = None


class CoreNatsBus(NatsBus):
    """The Bus protocol on core NATS; `start()` connects, `close()` releases everything."""

    def __init__(self, settings: Settings) -> None:
        self._link = NatsLink(settings, on_lost=self._on_lost, on_back=_nothing)
        self._buffer = settings.subscriber_buffer
        self._subs: set[Subscription] = set()
        self._channels: dict[str, _Channel] = {}
        self._counter = 0

    async def start(self) -> None:
        await self._link.start()

    async def close(self) -> None:
        self._end_all("bus closed")
        await self._link.close()

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        """All the messages, then one flush barrier for the lot."""
        self._link.check_up()
        try:
            for event in events:
                await self._link.nc.publish(subject_of(event.stream_key), event.to_json())
            await self._link.barrier()
        except NATS_ERRORS as error:
            raise BusError(f"publish failed: {error!r}") from error

    async def send(self, subject: str, body: bytes) -> None:
        self._link.check_up()
        try:
            await self._link.nc.publish(subject, body)
            await self._link.barrier()
        except NATS_ERRORS as error:
            raise BusError(f"publish failed: {error!r}") from error

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        self._link.check_up()
        # Nothing is retained: a cursor or `from` only earns the client a `gap`.
        gap = after is not None or from_start
        sub = Subscription(keys, self._buffer, self._counter, gap=gap, release=self._detach)
        self._subs.add(sub)
        try:
            await self._join(sub, keys)
        except BaseException as error:
            sub.fail(SubscriptionClosed(f"subscribe failed: {error!r}"))
            if isinstance(error, NATS_ERRORS):
                raise BusError(f"subscribe failed: {error!r}") from error
            raise
        return sub

    async def add_keys(self, subscription: Subscription, keys: Sequence[str]) -> None:
        new = [k for k in dict.fromkeys(keys) if k not in subscription.keys]
        if not new or not subscription.attached:
            return
        subscription.cover(new)
        try:
            await self._join(subscription, new)
        except (BusError, *NATS_ERRORS) as error:
            subscription.fail(SubscriptionClosed(f"could not add streams: {error!r}"))

    async def _join(self, sub: Subscription, keys: Sequence[str]) -> None:
        for key in keys:
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = _Channel()
                cb = functools.partial(self._on_msg, channel)
                channel.nsub = await self._link.nc.subscribe(subject_of(key), cb=cb)
            channel.subs.add(sub)
        await self._link.barrier()  # the broker has our SUBs: the subscription is live

    async def _on_msg(self, channel: _Channel, msg: Msg) -> None:
        self._counter += 1
        delivery = decode_msg(msg, self._counter)
        if delivery is not None:
            channel.subs.offer(delivery)

    def _detach(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        for key in sub.keys:
            channel = self._channels.get(key)
            if channel is not None:
                channel.subs.discard(sub)
                if not channel.subs:
                    del self._channels[key]
                    self._link.spawn(_unsubscribe(channel.nsub))

    def _on_lost(self) -> None:
        if self._subs:
            log.warning("lost the NATS connection; ending %d subscriptions", len(self._subs))
        self._end_all("lost the NATS connection")

    def _end_all(self, reason: str) -> None:
        for sub in list(self._subs):
            sub.fail(SubscriptionClosed(reason))


async def _unsubscribe(nsub: NatsSubscription | None) -> None:
    with contextlib.suppress(*NATS_ERRORS):
        if nsub is not None:
            await nsub.unsubscribe()


async def _nothing() -> None:
    """Core NATS keeps nothing the broker could have lost."""
