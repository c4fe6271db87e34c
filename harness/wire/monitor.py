"""The invariant monitor: an observer that checks the contract's invariants on every exchange
the suite provokes, in whatever case, and remembers each violation under the SPEC.md
requirement it breaks.

    monitor = Monitor(keepalive_interval=2.0)
    with observing(monitor):
        await run_the_case()
    for violation in monitor.finish():
        print(violation.requirement, violation.what, violation.transcript)

A dedicated case checks one behaviour once; the monitor checks the same rules on every response
and stream of every case (and of the explorer), which is where a defect that only shows in some
situation is seen. It does no I/O and never raises into the client (observers must not): the
conformance plugin asks for the violations when a case ends. Each bound is the requirement's own
(SPEC.md), never derived from another setting: the close after `end` is 1 s (sse/4.11/5),
whatever the idle timeout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .observe import Exchange, Frame

DATA_EVENTS = frozenset({"token", "progress", "data", "error"})
CLOSE_AFTER_END = 1.0  # sse/4.11/5
_ENDED_BY_SERVER = ("eof", "terminating-chunk", "reset")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant, with the exchange where it was seen."""

    requirement: str
    what: str
    expected: str
    actual: str
    transcript: str


@dataclass(slots=True)
class _Stream:
    ids: set[str] = field(default_factory=set)
    events: int = 0
    end_at: float | None = None  # when `end` arrived (seconds since the exchange started)
    last_at: float = 0.0  # the last frame, of any kind


class Monitor:
    """Checks every exchange it observes; `finish()` returns the violations seen."""

    def __init__(self, *, keepalive_interval: float | None = None) -> None:
        # sse/4.7/1's late bound: silence longer than 2·I + 0.5 s breaks the cadence.
        self.max_silence = None if keepalive_interval is None else 2 * keepalive_interval + 0.5
        self.violations: list[Violation] = []
        self._streams: dict[int, tuple[Exchange, _Stream]] = {}

    # -- Observer ------------------------------------------------------------------------------

    def on_start(self, exchange: Exchange) -> None:
        if exchange.protocol == "sse":
            self._streams[id(exchange)] = (exchange, _Stream())

    def on_response(self, exchange: Exchange) -> None:
        if exchange.protocol not in ("sse", "http") or exchange.status is None:
            return
        streaming = exchange.protocol == "sse" or "/stream/" in exchange.url
        if not streaming:
            return
        if exchange.status >= 400:
            self._error_response(exchange)
        elif exchange.status == 200 and exchange.protocol == "sse":
            self._stream_headers(exchange)

    def on_frame(self, exchange: Exchange, frame: Frame) -> None:
        entry = self._streams.get(id(exchange))
        if entry is None:
            return
        state = entry[1]
        self._silence(exchange, state, frame.at)
        if frame.kind != "event":
            return
        if state.end_at is not None:
            self._violate(
                "sse/4.11/1", exchange, "a frame after end", "nothing", f"{frame.event!r}"
            )
        if frame.event in DATA_EVENTS:
            state.events += 1
            if not frame.id:
                self._violate("sse/4.6/2", exchange, "id of an event", "an id", "none")
            elif frame.id in state.ids:
                self._violate(
                    "sse/4.6/2",
                    exchange,
                    "ids within the stream",
                    "distinct",
                    f"{frame.id!r} twice",
                )
            else:
                state.ids.add(frame.id)
        elif frame.event == "gap" and (state.events or len(state.ids)):
            self._violate(
                "sse/4.10/5", exchange, "position of gap", "the first event", "after events"
            )
        elif frame.event == "end":
            state.end_at = frame.at

    def on_end(self, exchange: Exchange) -> None:
        entry = self._streams.pop(id(exchange), None)
        if entry is None or exchange.status != 200 or exchange.ended_at is None:
            return
        state = entry[1]
        self._silence(exchange, state, exchange.ended_at)
        if state.end_at is not None:
            late = exchange.ended_at - state.end_at > CLOSE_AFTER_END
            if late:
                how = exchange.end or "?"
                self._violate(
                    "sse/4.11/5", exchange, "end of the response after end",
                    f"within {CLOSE_AFTER_END:g} s (terminating chunk or close)",
                    f"{how} {exchange.ended_at - state.end_at:.2f} s after end",
                )  # fmt: skip

    # -- checks --------------------------------------------------------------------------------

    def finish(self) -> list[Violation]:
        """The violations so far; streams still open are checked up to now."""
        return list(self.violations)

    def _silence(self, exchange: Exchange, state: _Stream, at: float) -> None:
        gap = at - state.last_at
        state.last_at = max(state.last_at, at)
        limit = self.max_silence
        if limit is None or gap <= limit or state.end_at is not None:
            return
        if exchange.label != "stalled reader":  # it reads late on purpose
            self._violate(
                "sse/4.7/1", exchange, "silence on an open stream",
                f"a keep-alive or event at least every {limit:.2f} s",
                f"{gap:.2f} s without either, {state.events} events into the stream",
            )  # fmt: skip

    def _error_response(self, exchange: Exchange) -> None:
        headers = {k.lower(): v for k, v in exchange.response_headers}
        status = exchange.status
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/problem+json":
            self._violate(
                "sse/4.4/7", exchange, f"media type of a {status}",
                "application/problem+json", media or "none",
            )  # fmt: skip
        elif exchange.body is not None:
            try:
                body = json.loads(exchange.body)
            except ValueError:
                body = None
            if not isinstance(body, dict) or body.get("status", status) != status:
                self._violate(
                    "sse/4.4/7", exchange, f"problem body of a {status}",
                    f"a JSON object with status {status}", (exchange.body or "")[:200],
                )  # fmt: skip
        if status == 401 and not headers.get("www-authenticate", "").lower().startswith("bearer"):
            self._violate(
                "sse/4.1/8", exchange, "WWW-Authenticate of a 401", "Bearer ...",
                headers.get("www-authenticate", "none"),
            )  # fmt: skip
        if status == 429 and "retry-after" not in headers:
            self._violate("sse/4.13/1", exchange, "Retry-After of a 429", "present", "absent")

    def _stream_headers(self, exchange: Exchange) -> None:
        headers = {k.lower(): v for k, v in exchange.response_headers}
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "text/event-stream":
            self._violate(
                "sse/4.5/1", exchange, "media type of a stream", "text/event-stream", media
            )
        cache = headers.get("cache-control", "").lower()
        if "no-cache" not in cache and "no-store" not in cache:
            self._violate("sse/4.5/2", exchange, "Cache-Control of a stream", "no-cache", cache)
        if headers.get("x-accel-buffering", "").lower() != "no":
            self._violate(
                "sse/4.5/3", exchange, "X-Accel-Buffering of a stream", "no",
                headers.get("x-accel-buffering", "absent"),
            )  # fmt: skip
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            self._violate("sse/4.5/4", exchange, "Content-Encoding of a stream", "none", encoding)

    def _violate(
        self, requirement: str, exchange: Exchange, what: str, expected: str, actual: str
    ) -> None:
        self.violations.append(Violation(requirement, what, expected, actual, transcript(exchange)))


def transcript(exchange: Exchange, frames: int = 12) -> str:
    """A short text of an exchange: request, status, headers, the last frames and its end."""
    lines = [f"{exchange.method} {exchange.url}"]
    if exchange.status is not None:
        lines.append(f"< {exchange.status}")
        lines += [f"< {k}: {v}" for k, v in exchange.response_headers]
    if exchange.body:
        lines.append(f"< body: {exchange.body[:300]}")
    shown = exchange.frames[-frames:]
    if len(exchange.frames) > len(shown):
        lines.append(f"  ... {len(exchange.frames) - len(shown)} earlier frames")
    for frame in shown:
        if frame.kind == "comment":
            lines.append(f"  {frame.at:7.3f}s : {frame.data}")
        else:
            data = (frame.data or "")[:80]
            lines.append(f"  {frame.at:7.3f}s event={frame.event} id={frame.id} data={data!r}")
    if exchange.ended_at is not None:
        lines.append(f"  {exchange.ended_at:7.3f}s ended: {exchange.end}")
    return "\n".join(lines)
