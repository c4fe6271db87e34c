"""What the explorer keeps between steps: its setup, the streams it watches, the cursors it
can resume from, and the bounds it checks them with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from harness.admin import IssuedToken
from harness.sse import SSEEvent
from harness.sse_client import SSEStream
from harness.targets import Target

from ..wire import payload_of
from .model import Expectation, Finding, Sent

T = TypeVar("T")
DATA_EVENTS = frozenset({"token", "progress", "data", "error"})
MAX_OPEN = 4  # well under any per-tenant stream limit the cases accept
MAX_WORKFLOWS = 4  # enough for trees and isolation; more only dilutes the other rules
LARGE = 2048  # bytes of a large event
EXPIRING = 2  # seconds a short-lived stream token lives
MAX_RETENTION_WAIT = 15.0  # longest retention the explorer waits out
SETTLE = 5.0  # seconds an event may take to reach a stream (as the revocation bound)
PROMPT_CLOSE = 1.0  # SPEC sse/4.11/5
RETENTION_MARGIN = 1.0


class AlreadyEnded(Exception):
    """The stream had ended before the step that would end it."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What the machine explores: the target and the facts about it the model needs."""

    target: Target
    loop: asyncio.AbstractEventLoop
    retention_seconds: float | None
    notifies_server: bool
    subscriber_buffer: int
    long_run: bool  # a budget long enough for the rules that wait (expiry, retention)
    record: Callable[[Finding, list[str]], None]
    started: Callable[[], None]  # called as each sequence starts: raises when time is up

    def has(self, profile: str) -> bool:
        return self.target.has(profile)


@dataclass(slots=True)
class Watch:
    """One open stream and what it must receive."""

    stream: SSEStream
    root: str
    consolidated: bool
    instance: int
    token: IssuedToken | None  # None: opened with a stream token (no id to revoke)
    expectation: Expectation
    opened_at: float
    closed_at: asyncio.Future[float]
    bursts: int = 0  # deep bursts while open: the server may evict a reader that lags
    gap_allowed_before: float = float("-inf")
    retained_since: float = float("-inf")
    ended: bool = False  # ended by the server (and checked as such)

    def events(self) -> list[SSEEvent]:
        return list(self.stream.events_received)


@dataclass(slots=True)
class Cursor:
    """A closed stream's last event (None when it had none): where a resume starts."""

    root: str
    consolidated: bool
    event: Sent | None
    id: str
    received_at: float
    seen: set[str] = field(default_factory=set)


def name_of(event: SSEEvent) -> str:
    """The published name of an event (its payload up to the padding of a large one)."""
    return payload_of(event).split(" ", 1)[0]
