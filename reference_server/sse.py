"""Server-Sent Events framing (pure functions): no payload can forge a field or an event."""

from __future__ import annotations

import re

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
