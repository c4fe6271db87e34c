"""The WHATWG SSE parser, kept importable under its first name; it lives in
:mod:`harness.wire.sse` beside the rest of the wire core."""

from harness.wire.sse import SSEComment, SSEEvent, SSEParser

__all__ = ["SSEComment", "SSEEvent", "SSEParser"]
