"""Incremental Server-Sent Events parser (WHATWG HTML "event stream interpretation").

The parser is pure and synchronous so that conformance checks do not depend on any
particular HTTP client: feed it the raw body bytes in whatever chunks the transport
delivers and it yields exactly the events a browser ``EventSource`` would dispatch.

Deliberate deviations from a browser, all of them additive:

* comment lines are recorded (with their arrival time) instead of being dropped, so
  tests can check heartbeats;
* ``SSEEvent.id`` is ``None`` (not ``""``) when the stream never set an id, so tests can
  tell "no id yet" from "id explicitly reset";
* ``SSEEvent.retry`` carries the latest ``retry`` value seen so far.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.wire.observe import Frame, Watch

__all__ = ["SSEComment", "SSEEvent", "SSEParser"]

_BOM = "\ufeff"
_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event, as an ``EventSource`` listener would see it."""

    event: str
    data: str
    id: str | None
    retry: int | None
    received_at: float

    def json(self) -> Any:
        """Decode ``data`` as JSON, because task events carry JSON payloads."""
        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class SSEComment:
    """A ``:`` comment line; kept because servers use comments as heartbeats."""

    text: str
    received_at: float


class SSEParser:
    """Turn an ``text/event-stream`` body, fed in arbitrary byte chunks, into events.

    ``last_event_id`` is the stream's *last event ID string*: like a browser, it is
    committed when a blank line is processed (even one that dispatches nothing), so it
    is the value to send as ``Last-Event-ID`` when reconnecting. ``retry`` is the latest
    valid reconnection time in milliseconds, or ``None``.

    ``on_frame``, when given, receives every field block and comment as an observation
    :class:`~harness.wire.observe.Frame`, in stream order, stamped ``now - origin``.
    """

    def __init__(
        self, on_frame: Callable[[Frame], None] | None = None, origin: float = 0.0
    ) -> None:
        self._on_frame = on_frame
        self._origin = origin
        self._block_fields = False  # the current block had a field line (observation only)
        self._block_retry: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._bom_checked = False
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF is its pair
        self._buffer = ""  # text of the current, not yet terminated line
        self._data: list[str] = []
        self._event_type = ""
        self._id_buffer: str | None = None
        self._closed = False
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments: list[SSEComment] = []

    @classmethod
    def watched(cls, watch: Watch) -> SSEParser:
        """A parser reporting its frames to ``watch`` (a plain one when nobody watches)."""
        return cls(watch.frame, watch.exchange.started) if watch.active else cls()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (no more input is accepted)."""
        return self._closed

    def feed(self, chunk: bytes, now: float | None = None) -> list[SSEEvent]:
        """Consume ``chunk`` and return the events completed by it, in order.

        ``now`` stamps events and comments (defaults to ``time.monotonic()``); it exists
        so that tests can be deterministic.
        """
        if self._closed:
            raise RuntimeError("SSEParser.feed() called after close()")
        if now is None:
            now = time.monotonic()
        return self._consume(self._decoder.decode(chunk, final=False), now)

    def close(self) -> list[SSEEvent]:
        """Signal end of stream; returns ``[]`` because an unterminated event is discarded.

        Per the specification, whatever follows the last blank line (a partial line, or
        fields of an event that never got its terminating blank line) is dropped.
        """
        if not self._closed:
            self._closed = True
            self._decoder.decode(b"", final=True)
            self._buffer = ""
            self._data = []
            self._event_type = ""
        return []

    # -- internals -------------------------------------------------------------------

    def _consume(self, text: str, now: float) -> list[SSEEvent]:
        if not text:
            return []
        if not self._bom_checked:
            self._bom_checked = True
            if text.startswith(_BOM):
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        search_from = len(self._buffer)
        buf = self._buffer + text
        events: list[SSEEvent] = []
        start = 0
        while (match := _EOL.search(buf, search_from)) is not None:
            event = self._process_line(buf[start : match.start()], now)
            if event is not None:
                events.append(event)
            start = search_from = match.end()
            if match.group() == "\r" and start == len(buf):
                self._skip_lf = True
        self._buffer = buf[start:]
        return events

    def _process_line(self, line: str, now: float) -> SSEEvent | None:
        if not line:
            return self._dispatch(now)
        if line.startswith(":"):
            text = line[1:]
            if text.startswith(" "):
                text = text[1:]
            self.comments.append(SSEComment(text=text, received_at=now))
            if self._on_frame is not None:
                self._on_frame(Frame(at=now - self._origin, kind="comment", data=text))
            return None
        self._block_fields = True
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)  # isascii(): not "²"
        return None

    def _dispatch(self, now: float) -> SSEEvent | None:
        self.last_event_id = self._id_buffer
        if self._on_frame is not None and self._block_fields:
            self._on_frame(
                Frame(
                    at=now - self._origin,
                    kind="event",
                    event=self._event_type or "message",
                    id=self.last_event_id,
                    data="\n".join(self._data) if self._data else None,
                    retry=self._block_retry,
                )
            )
        self._block_fields = False
        self._block_retry = None
        if not self._data:
            self._event_type = ""
            return None
        # Joining with "\n" is the spec's "append value + LF", minus the final LF.
        event = SSEEvent(
            event=self._event_type or "message",
            data="\n".join(self._data),
            id=self.last_event_id,
            retry=self.retry,
            received_at=now,
        )
        self._data = []
        self._event_type = ""
        return event
