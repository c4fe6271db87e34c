"""Server-Sent Events framing: no payload can forge a field or an event. The functions are pure;
`SseFraming` is the server's one writer of frames, which `broken_servers` variants subclass."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable

from .bus import Delivery, End
from .events import TaskStreamEvent

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

# Only CRLF, CR and LF end lines in an event stream (WHATWG HTML §9.2.6); nothing else splits.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_event(event: str, data: str, event_id: str | None = None) -> bytes:
    """Frame one event. `data` is split into one `data:` line per line, so that a payload with
    CR/LF cannot start a new field or event; a trailing line break yields a trailing empty
    `data:` line, so a client reconstructs the payload byte for byte."""
    if _LINE_BREAK.search(event) or (event_id is not None and _LINE_BREAK.search(event_id)):
        raise ValueError("event name and id must be single-line")
    parts = []
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    parts.append(f"event: {event}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str) -> bytes:
    """A comment line (keep-alive); line breaks in `text` become separate comment lines."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


class SseFraming:
    """Everything a stream writes on the wire: the response headers (SPEC.md §4.5), events and
    their ids (§4.6), comments and keep-alives (§4.7). One instance per server, on
    `ServerContext.policies`; a subclass that changes one method changes every frame of it."""

    def __init__(self) -> None:
        # Fan-out encodes each delivery once, not once per subscriber.
        self.delivery: Callable[[Delivery, bool], bytes] = functools.lru_cache(maxsize=8192)(
            self._encode_delivery
        )

    @property
    def headers(self) -> dict[str, str]:
        return dict(SSE_HEADERS)

    def event(self, event: str, data: str, event_id: str | None = None) -> bytes:
        return encode_event(event, data, event_id)

    def comment(self, text: str) -> bytes:
        return encode_comment(text)

    def keepalive(self) -> bytes:
        return self.comment("keep-alive")

    def control(self, event: str, reason: str) -> bytes:
        """A control event that ends the stream (`auth-expired`, a stop) with its reason."""
        return self.event(event, json.dumps({"reason": reason}))

    def gap(self, requested: str) -> bytes:
        return self.event("gap", json.dumps({"requested": requested}))

    def end(self, end: End, cursor: int | None) -> bytes:
        return self.event(
            "end", json.dumps({"status": end.status}), None if cursor is None else str(cursor)
        )

    def _encode_delivery(self, delivery: Delivery, consolidated: bool) -> bytes:
        event = delivery.item
        assert isinstance(event, TaskStreamEvent)
        if consolidated:
            data = json.dumps(
                {
                    "workflowExecutionId": event.workflow_execution_id,
                    "taskExecutionId": event.task_execution_id,
                    "sequence": event.sequence,
                    "data": event.payload,
                }
            )
        else:
            data = event.payload
        return self.event(event.event_type.sse_name, data, str(delivery.cursor))
