"""The public hook for building a server with some of its parts replaced.

`Server(settings, extension=...)` and `cli.main(argv, extension=...)` take an `Extension`. Its
methods are called once, while the server is assembled; the base class changes nothing:

    class NoKeepalive(Extension):
        def policies(self, policies: Policies) -> Policies:
            return dataclasses.replace(policies, framing=BlankComments())

What can be replaced, from the narrowest to the widest:

- one rule: `policies()` returns `Policies` with another access, cursor or publish policy, or
  another `sse.SseFraming` (headers, event and comment frames);
- one step of serving an SSE stream: `Policies.session`, a subclass of
  `http_streams.StreamSession` (`plan`, `write`, `pump`, the receiver's `take`, ...);
- what the bus does: `bus()` wraps it, e.g. in a `BusWrapper` subclass that overrides one method;
- token checking: `authenticator`, a subclass of `auth.Authenticator` (used by HTTP and gRPC);
- configuration: `settings()` returns changed `Settings`.

`broken_servers` builds each of its defective variants this way.
"""

from __future__ import annotations

from collections.abc import Sequence

from .auth import Authenticator
from .bus import Bus, End, Notice, NoticeListener, Subscription
from .events import TaskStreamEvent
from .policies import Policies
from .settings import Settings


class Extension:
    """A build of the reference server; override what it changes."""

    authenticator: type[Authenticator] = Authenticator

    def settings(self, settings: Settings) -> Settings:
        return settings

    def policies(self, policies: Policies) -> Policies:
        return policies

    def bus(self, bus: Bus) -> Bus:
        return bus


class BusWrapper:
    """A `Bus` that passes everything on to `inner`: subclass it and override one method."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def healthy(self) -> bool:
        return self.inner.healthy

    async def publish(self, event: TaskStreamEvent) -> None:
        await self.inner.publish(event)

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        await self.inner.publish_many(events)

    async def publish_end(self, stream_key: str, end: End) -> None:
        await self.inner.publish_end(stream_key, end)

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        return await self.inner.subscribe(keys, after=after, from_start=from_start)

    async def add_keys(self, subscription: Subscription, keys: Sequence[str]) -> None:
        await self.inner.add_keys(subscription, keys)

    async def announce(self, notice: Notice) -> None:
        await self.inner.announce(notice)

    def on_notice(self, listener: NoticeListener) -> None:
        self.inner.on_notice(listener)
