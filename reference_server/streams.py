"""Open SSE streams of this instance: per-tenant limits, and stopping them on revocation,
shutdown, or growing them when a descendant workflow appears."""

from __future__ import annotations

import collections
import logging
import uuid
from dataclasses import dataclass, field

from .bus import Bus, DescendantCreated, Notice, Subscription, TokenRevoked
from .errors import TooManyStreams
from .events import workflow_key

log = logging.getLogger(__name__)


class StreamStopped(Exception):
    """The server ends this stream; `event` is the in-band control event to send first, if any."""

    def __init__(self, reason: str, event: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


@dataclass(eq=False, slots=True)
class OpenStream:
    tenant_id: uuid.UUID
    token_id: uuid.UUID | None
    subscription: Subscription
    tree: set[uuid.UUID] | None = None  # consolidated streams: the workflows they cover
    issued_by: uuid.UUID | None = None  # stream tokens: the user token that minted them
    stream_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def credentials(self) -> tuple[uuid.UUID, ...]:
        """The token ids whose revocation ends this stream."""
        return tuple(t for t in (self.token_id, self.issued_by) if t is not None)

    def stop(self, error: StreamStopped) -> None:
        self.subscription.fail(error)


class StreamRegistry:
    def __init__(self, bus: Bus, max_per_tenant: int) -> None:
        self._bus = bus
        self._max = max_per_tenant
        self._per_tenant: collections.Counter[uuid.UUID] = collections.Counter()
        self._open: set[OpenStream] = set()
        self._by_token: dict[uuid.UUID, set[OpenStream]] = collections.defaultdict(set)
        # Consolidated streams by each workflow of their tree: a new child finds its streams
        # without scanning every open stream.
        self._by_member: dict[uuid.UUID, set[OpenStream]] = collections.defaultdict(set)

    def __len__(self) -> int:
        return len(self._open)

    def reserve(self, tenant_id: uuid.UUID) -> None:
        """Count a stream against its tenant's limit before subscribing; `release` undoes it."""
        if self._per_tenant[tenant_id] >= self._max:
            raise TooManyStreams(f"this tenant already has {self._max} open streams", retry_after=5)
        self._per_tenant[tenant_id] += 1

    def release(self, tenant_id: uuid.UUID) -> None:
        self._per_tenant[tenant_id] -= 1
        if self._per_tenant[tenant_id] <= 0:
            del self._per_tenant[tenant_id]

    def add(self, stream: OpenStream) -> None:
        self._open.add(stream)
        for token_id in stream.credentials:
            self._by_token[token_id].add(stream)
        for member in stream.tree or ():
            self._by_member[member].add(stream)

    def remove(self, stream: OpenStream) -> None:
        self._open.discard(stream)
        for token_id in stream.credentials:
            _discard(self._by_token, token_id, stream)
        for member in stream.tree or ():
            _discard(self._by_member, member, stream)

    def revoke(self, token_id: uuid.UUID) -> int:
        streams = list(self._by_token.get(token_id, ()))
        for stream in streams:
            stream.stop(StreamStopped("token revoked", "auth-expired"))
        return len(streams)

    def stop_all(self, reason: str) -> None:
        for stream in list(self._open):
            stream.stop(StreamStopped(reason))

    async def on_notice(self, notice: Notice) -> None:
        if isinstance(notice, TokenRevoked):
            self.revoke(uuid.UUID(notice.token_id))
        elif isinstance(notice, DescendantCreated):
            parent, child = uuid.UUID(notice.parent_id), uuid.UUID(notice.child_id)
            for stream in list(self._by_member.get(parent, ())):
                if stream.tree is not None and child not in stream.tree and stream in self._open:
                    stream.tree.add(child)
                    self._by_member[child].add(stream)
                    await self._bus.add_keys(stream.subscription, [workflow_key(str(child))])


def _discard(index: dict[uuid.UUID, set[OpenStream]], key: uuid.UUID, stream: OpenStream) -> None:
    peers = index.get(key)
    if peers is not None:
        peers.discard(stream)
        if not peers:
            del index[key]
